"""GloVe trainer: co-occurrence counting and AdaGrad fitting from :mod:`glove_core`."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    memory_mb: int = param(512, "memory budget, MiB: the counting structures are sized to the corpus within it, and "
                                "co-occurrence entries taking over a quarter of it are streamed from disk", min=64)
    device: str = param("auto", "cpu (compiled threads), cuda (PyTorch), or auto: cuda when available",
                        choices=("auto", "cpu", "cuda"))  # fmt: skip


def _device(requested: str) -> str:
    """``auto`` without importing PyTorch (about 190 MB resident) where no GPU can be present: a
    Linux machine without NVIDIA or ROCm device nodes. Elsewhere, :func:`torch_device` decides."""
    if requested == "auto" and sys.platform.startswith("linux") and "torch" not in sys.modules:
        if not any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")):
            return "cpu"
    return torch_device(requested)


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
        device = _device(params.device)
        vocab = corpus.vocabulary(params.min_count, params.max_vocab or None)
        ids, ends = corpus.encoded(vocab)
        t0, c0 = time.perf_counter(), time.process_time()
        cooc = G.cooccurrence(ids, ends, len(vocab), params.window, threads=threads, memory_mb=params.memory_mb)
        del ids, ends
        count_seconds, count_cpu = time.perf_counter() - t0, time.process_time() - c0
        if cooc.nnz == 0:
            raise InvalidArgument("no two vocabulary words ever share a window: the corpus is too small for GloVe")
        nonzeros, drains = cooc.nnz, cooc.drains
        c0 = time.process_time()
        # the entries are shuffled in place and, beyond a quarter of the memory budget, streamed from the
        # training's work directory
        shuffle_seed = int(np.random.default_rng((params.seed, 18)).integers(2**31))
        entries = G.prepare_entries(cooc, shuffle_seed, memory_mb=params.memory_mb,
                                    spill_dir=out_dir.parent / "glove-entries")  # fmt: skip
        shuffle_cpu = time.process_time() - c0
        del cooc
        model = G.GloveModel(len(vocab), params.dim, seed=params.seed)
        runner = None
        if device != "cpu":
            runner = G.TorchGlove(model, entries, device, x_max=params.x_max, alpha=params.alpha)
        bar = Bar(f"glove ({device})", progress)
        curve = []
        try:
            for epoch in range(params.epochs):
                start, cpu = time.perf_counter(), time.process_time()
                if runner is None:
                    cost = G.epoch_cpu(model, entries, params.lr, threads, x_max=params.x_max, alpha=params.alpha)
                else:
                    cost = runner.epoch(params.lr)
                seconds = time.perf_counter() - start
                curve.append({"epoch": epoch + 1, "loss": cost, "seconds": round(seconds, 3),
                              "cpu_seconds": round(time.process_time() - cpu, 3)})  # fmt: skip
                bar.update_to((epoch + 1) * 100.0 / params.epochs, loss=f"{cost:.5f}",
                              entries_s=f"{entries.n / max(seconds, 1e-9):,.0f}")  # fmt: skip
        finally:
            bar.close()
            entries.remove_files()
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
                "cooccurrence": {
                    "nonzeros": int(nonzeros),
                    "drains": int(drains),
                    "count_seconds": round(count_seconds, 3),
                    "count_cpu_seconds": round(count_cpu, 3),
                    "shuffle_cpu_seconds": round(shuffle_cpu, 3),
                    "entries": "streamed from disk" if entries.streamed else "in memory",
                },
            },
        )
