"""GloVe trainer: co-occurrence counting and AdaGrad fitting from :mod:`glove_core`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from embedsearch.errors import InvalidArgument
from embedsearch.trainers.base import FitResult, Trainer, WordParams, param, torch_device
from embedsearch.trainers.prepare import PreparedCorpus
from embedsearch.trainers.progress import Bar


@dataclass
class GloveParams(WordParams):
    window: int = param(10, "context window: words on each side, weighted 1/distance", min=1)
    epochs: int = param(15, "AdaGrad passes over the co-occurrence entries", min=1)
    x_max: float = param(10.0, "co-occurrence count at which the weight f(x) reaches 1", min=1e-9)
    alpha: float = param(0.75, "exponent of the weighting function f(x) = min(1, (x/x_max)^alpha)", min=0)
    # the reference C code uses 0.05; with 15 epochs 0.1 gets further (benchmarks/bench_trainers.py)
    lr: float = param(0.1, "AdaGrad initial learning rate", min=1e-9)
    memory_mb: int = param(1024, "memory for counting co-occurrences (dense block + hash tables), MiB", min=64)
    device: str = param("auto", "cpu (compiled threads), cuda (PyTorch), or auto: cuda when available",
                        choices=("auto", "cpu", "cuda"))  # fmt: skip


class GloveTrainer(Trainer):
    name = "glove"
    summary = "GloVe (Pennington et al. 2014), implemented here: compiled CPU threads or PyTorch on CUDA"
    Params = GloveParams
    libraries = ("numba",)
    examples = (
        "embedsearch train glove corpus.txt -o models/glove --dim 100 --window 10 --x-max 10 --alpha 0.75 --epochs 15",
        "embedsearch train glove corpus.txt -o models/glove-repro --deterministic --seed 7",
    )

    def fit(self, corpus: PreparedCorpus, params: GloveParams, out_dir: Path, *, progress: bool) -> FitResult:
        from embedsearch.models import save_word_vectors
        from embedsearch.trainers import glove_core as G

        threads = params.worker_threads()
        device = torch_device(params.device)
        vocab = corpus.vocabulary(params.min_count, params.max_vocab or None)
        ids, ends = corpus.encoded(vocab)
        t0 = time.perf_counter()
        cooc = G.cooccurrence(ids, ends, len(vocab), params.window, threads=threads, memory_mb=params.memory_mb)
        count_seconds = time.perf_counter() - t0
        if cooc.nnz == 0:
            raise InvalidArgument("no two vocabulary words ever share a window: the corpus is too small for GloVe")
        model = G.GloveModel(len(vocab), params.dim, seed=params.seed)
        targets = G.prepare_targets(cooc, params.x_max, params.alpha, model.rng)
        del cooc
        runner = G.TorchGlove(model, targets, device) if device != "cpu" else None
        bar = Bar(f"glove ({device})", progress)
        curve = []
        try:
            for epoch in range(params.epochs):
                start = time.perf_counter()
                if runner is None:
                    cost = G.epoch_cpu(model, targets, params.lr, threads)
                else:
                    cost = runner.epoch(params.lr)
                seconds = time.perf_counter() - start
                curve.append({"epoch": epoch + 1, "loss": cost, "seconds": round(seconds, 3)})
                bar.update_to((epoch + 1) * 100.0 / params.epochs, loss=f"{cost:.5f}",
                              entries_s=f"{targets[0].shape[0] / max(seconds, 1e-9):,.0f}")  # fmt: skip
        finally:
            bar.close()
        if runner is not None:
            runner.sync()
        save_word_vectors(out_dir, vocab.words, model.vectors(), vocab.counts)
        return FitResult(
            kind="word-vectors",
            vocab_size=len(vocab),
            loss_curve=curve,
            extra={
                "backend": "numba" if device == "cpu" else "torch",
                "device": device,
                "cooccurrence": {"nonzeros": int(targets[0].shape[0]), "count_seconds": round(count_seconds, 3)},
            },
        )
