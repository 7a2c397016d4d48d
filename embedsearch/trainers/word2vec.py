"""word2vec (CBOW and skip-gram) with gensim, fed from the tokenised corpus file.

gensim's ``corpus_file`` mode reads the file in C threads, several times faster than a
Python iterator. The vectors are saved as ``.npy`` + vocabulary, never with gensim's
pickle-based ``save()``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedsearch.trainers.base import FitResult, Trainer, WordParams, param
from embedsearch.trainers.prepare import PreparedCorpus
from embedsearch.trainers.progress import Bar, GensimProgress


@dataclass
class Word2VecParams(WordParams):
    sg: bool = param(False, "skip-gram instead of CBOW", flag="--sg/--cbow")
    hs: bool = param(False, "hierarchical softmax instead of negative sampling", flag="--hs/--negative-sampling")
    negative: int = param(5, "noise words per positive example (negative sampling)", min=1)
    alpha: float = param(0.025, "initial learning rate (decays linearly to --min-alpha)", min=0)
    min_alpha: float = param(0.0001, "final learning rate", min=0)
    sample: float = param(1e-3, "down-sampling threshold for frequent words (0: off)", min=0)


def gensim_common_kwargs(params: WordParams, threads: int) -> dict[str, Any]:
    """gensim arguments shared by Word2Vec and FastText."""
    return {
        "vector_size": params.dim,
        "window": params.window,
        "min_count": params.min_count,
        "max_final_vocab": params.max_vocab or None,
        "workers": threads,
        "seed": params.seed,
        "epochs": params.epochs,
    }


def gensim_word2vec_kwargs(params: Word2VecParams, threads: int) -> dict[str, Any]:
    """The gensim arguments our parameters map to (also used by the benchmark's raw call)."""
    return {
        **gensim_common_kwargs(params, threads),
        "sg": int(params.sg),
        "hs": int(params.hs),
        "negative": 0 if params.hs else params.negative,
        "alpha": params.alpha,
        "min_alpha": params.min_alpha,
        "sample": params.sample,
    }


class LossCurve:
    """gensim callback: the loss of each epoch (gensim reports a running total per train())."""

    def __init__(self, progress: GensimProgress | None = None) -> None:
        self.points: list[dict[str, Any]] = []
        self._last = 0.0
        self._started = 0.0
        self.progress = progress

    def on_train_begin(self, model) -> None:
        pass

    def on_train_end(self, model) -> None:
        pass

    def on_epoch_begin(self, model) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, model) -> None:
        total = float(model.get_latest_training_loss())
        loss = total - self._last
        self._last = total
        # gensim decays the rate linearly over all epochs; in corpus_file mode it does not
        # update min_alpha_yet_reached, so compute the rate the epoch ended at
        done = (len(self.points) + 1) / max(1, model.epochs)
        lr = float(model.alpha - (model.alpha - model.min_alpha) * done)
        self.points.append(
            {"epoch": len(self.points) + 1, "loss": loss, "lr": lr, "seconds": round(time.perf_counter() - self._started, 3)}
        )
        if self.progress is not None:
            self.progress.loss = f"{loss:.4g}" if loss else None
            self.progress.lr = f"{lr:.5f}"


def gensim_vocab_counts(wv) -> list[int]:
    return [int(wv.get_vecattr(w, "count")) for w in wv.index_to_key]


class Word2VecTrainer(Trainer):
    name = "word2vec"
    summary = "word2vec CBOW or skip-gram (gensim), negative sampling or hierarchical softmax"
    Params = Word2VecParams
    libraries = ("gensim",)
    examples = (
        "embedsearch train word2vec corpus.txt -o models/w2v --dim 100 --window 5 --min-count 5 --epochs 5 --sg",
        "embedsearch train word2vec docs/ --glob '*.md' -o models/w2v-cbow --deterministic",
    )

    def fit(self, corpus: PreparedCorpus, params: Word2VecParams, out_dir: Path, *, progress: bool) -> FitResult:
        import numpy as np
        from gensim.models import Word2Vec

        from embedsearch.errors import CorpusError
        from embedsearch.models import save_word_vectors

        threads = params.worker_threads()
        corpus.require_words(params.min_count)  # the same clear error as other trainers when no word qualifies
        bar = Bar(f"word2vec {'skip-gram' if params.sg else 'CBOW'}", progress)
        watcher = GensimProgress(bar, params.epochs)
        curve = LossCurve(watcher)
        try:
            with watcher.attached():
                model = Word2Vec(
                    corpus_file=str(corpus.tokens_path), compute_loss=True, callbacks=[curve],
                    **gensim_word2vec_kwargs(params, threads),
                )  # fmt: skip
        except RuntimeError as exc:  # gensim: "you must first build vocabulary before training the model"
            raise CorpusError(f"word2vec could not train: {exc}") from None
        finally:
            bar.close()
        wv = model.wv
        save_word_vectors(out_dir, list(wv.index_to_key), wv.vectors, np.asarray(gensim_vocab_counts(wv)))
        return FitResult(
            kind="word-vectors",
            vocab_size=len(wv.index_to_key),
            loss_curve=curve.points,
            extra={
                "backend": "gensim",
                "words_per_second": watcher.words_per_sec,
                "architecture": "skip-gram" if params.sg else "cbow",
            },
        )
