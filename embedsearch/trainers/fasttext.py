"""FastText: word vectors from character n-grams, so every word has a vector.

Two backends train the same model: the ``fasttext`` library (Facebook's C++ code) and
gensim's FastText. ``benchmarks/bench_trainers.py`` measured gensim's faster on the same
corpus and threads (5.7M tokens, 2 threads, 5 epochs: 70 s against 108 s, and 66 s against
123 s in an earlier run), so it is the default; the manifest records which one ran and why.
Both write fastText's own ``.bin``, which the fasttext library loads (no pickle).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedsearch.errors import CorpusError, InvalidArgument
from embedsearch.trainers.base import FitResult, Trainer, WordParams, param
from embedsearch.trainers.prepare import PreparedCorpus
from embedsearch.trainers.progress import Bar, GensimProgress, capture_fd2, parse_fasttext_progress
from embedsearch.wordvectors import EOS

BACKENDS = ("fasttext", "gensim")
#: measured faster by benchmarks/bench_trainers.py (see the README's benchmark section)
DEFAULT_BACKEND = "gensim"


@dataclass
class FastTextParams(WordParams):
    sg: bool = param(True, "skip-gram (default) or CBOW", flag="--sg/--cbow")
    minn: int = param(3, "shortest character n-gram", min=0)
    maxn: int = param(6, "longest character n-gram (0: no subwords)", min=0)
    bucket: int = param(2_000_000, "hash buckets for n-grams (memory: bucket x dim floats)", min=1)
    negative: int = param(5, "noise words per positive example", min=1)
    lr: float = param(0.05, "initial learning rate", min=0)
    sample: float = param(1e-4, "down-sampling threshold for frequent words", min=0)
    backend: str = param("auto", f"fasttext or gensim (auto: {DEFAULT_BACKEND}, measured faster)",
                         choices=("auto", *BACKENDS))  # fmt: skip

    def validate(self) -> None:
        super().validate()
        if self.maxn and self.minn > self.maxn:
            raise InvalidArgument(f"--minn ({self.minn}) must not exceed --maxn ({self.maxn})")

    def resolved_backend(self) -> str:
        return DEFAULT_BACKEND if self.backend == "auto" else self.backend


def fasttext_library_kwargs(params: FastTextParams, threads: int) -> dict[str, Any]:
    """Arguments of ``fasttext.train_unsupervised`` for our parameters (the benchmark's raw call too)."""
    return {
        "model": "skipgram" if params.sg else "cbow",
        "dim": params.dim,
        "ws": params.window,
        "epoch": params.epochs,
        "minCount": params.min_count,
        "minn": params.minn,
        "maxn": params.maxn,
        "neg": params.negative,
        "loss": "ns",
        "bucket": params.bucket,
        "thread": threads,
        "lr": params.lr,
        "t": params.sample,
        # the fasttext wheel has no seed argument: its generator is fixed, so one thread is reproducible
    }


def gensim_fasttext_kwargs(params: FastTextParams, threads: int) -> dict[str, Any]:
    """gensim FastText arguments for our parameters (the benchmark's raw call too)."""
    from embedsearch.trainers.word2vec import gensim_common_kwargs

    return {
        **gensim_common_kwargs(params, threads),
        "sg": int(params.sg),
        "negative": params.negative,
        "min_n": params.minn,
        "max_n": params.maxn,
        "bucket": params.bucket,
        "alpha": params.lr,
        "sample": params.sample,
    }


class FastTextTrainer(Trainer):
    name = "fasttext"
    summary = "FastText with character n-grams (fasttext library or gensim): vectors for unseen words too"
    Params = FastTextParams
    libraries = ("gensim", "fasttext")
    examples = (
        "embedsearch train fasttext corpus.txt -o models/ft --dim 100 --minn 3 --maxn 6",
        "embedsearch train fasttext corpus.txt -o models/ft-gensim --backend gensim --bucket 200000",
    )

    def fit(self, corpus: PreparedCorpus, params: FastTextParams, out_dir: Path, *, progress: bool) -> FitResult:
        corpus.require_words(params.min_count)  # a clear error when no word qualifies
        backend = params.resolved_backend()
        if backend == "fasttext":
            if params.max_vocab:
                raise InvalidArgument("--max-vocab is not supported by the fasttext backend; use --backend gensim")
            result = self._fit_library(corpus, params, out_dir, progress)
        else:
            result = self._fit_gensim(corpus, params, out_dir, progress)
        result.extra["backend"] = backend
        result.extra["backend_choice"] = "default (measured faster)" if params.backend == "auto" else "requested"
        return result

    def _fit_library(self, corpus: PreparedCorpus, params: FastTextParams, out_dir: Path, progress: bool) -> FitResult:
        import fasttext

        threads = params.worker_threads()
        points: list[dict[str, Any]] = []
        state: dict[str, Any] = {"pct": -1, "buffer": "", "bar": None}

        def on_text(text: str) -> None:
            state["buffer"] = (state["buffer"] + text)[-4096:]
            found = parse_fasttext_progress(state["buffer"])
            if not found:
                return
            state["buffer"] = state["buffer"][state["buffer"].rfind("Progress:") + 1 :]
            pct, wps, lr, loss = found[-1]
            pct = min(pct, 100.0)
            if state["bar"] is not None:
                state["bar"].update_to(pct, words_s=f"{wps * threads:,}", lr=f"{lr:.5f}", loss=f"{loss:.4f}")
            if int(pct) > state["pct"]:
                state["pct"] = int(pct)
                points.append({"progress": pct, "epoch": round(pct / 100 * params.epochs, 3), "loss": loss, "lr": lr,
                               "words_per_second": wps * threads})  # fmt: skip

        started = time.perf_counter()
        with capture_fd2(on_text) as real_stderr:
            bar = state["bar"] = Bar("fasttext", progress, file=real_stderr)
            try:
                model = fasttext.train_unsupervised(
                    input=str(corpus.tokens_path), verbose=2, **fasttext_library_kwargs(params, threads)
                )
            except (ValueError, RuntimeError) as exc:
                raise CorpusError(f"fasttext could not train: {exc}") from None
            finally:
                bar.close()
        seconds = time.perf_counter() - started
        model.save_model(str(out_dir / "model.bin"))
        words = [w for w in model.get_words() if w != EOS]
        return FitResult(
            kind="fasttext",
            vocab_size=len(words),
            loss_curve=points,
            extra={"train_words_per_second": round(corpus.n_tokens * params.epochs / seconds)},
        )

    def _fit_gensim(self, corpus: PreparedCorpus, params: FastTextParams, out_dir: Path, progress: bool) -> FitResult:
        from gensim.models import FastText
        from gensim.models.fasttext import save_facebook_model

        from embedsearch.trainers.word2vec import LossCurve

        threads = params.worker_threads()
        bar = Bar("fasttext (gensim)", progress)
        watcher = GensimProgress(bar, params.epochs)
        curve = LossCurve(watcher)  # gensim's FastText computes no loss: epochs, learning rate and timings
        try:
            with watcher.attached():
                model = FastText(
                    corpus_file=str(corpus.tokens_path), callbacks=[curve], **gensim_fasttext_kwargs(params, threads)
                )
        finally:
            bar.close()
        save_facebook_model(model, str(out_dir / "model.bin"))
        for point in curve.points:
            point.pop("loss", None)
        return FitResult(kind="fasttext", vocab_size=len(model.wv.index_to_key), loss_curve=curve.points,
                         extra={"words_per_second": watcher.words_per_sec})  # fmt: skip
