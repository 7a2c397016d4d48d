"""The trainer contract: parameters as dataclasses, one ``fit`` per algorithm, and the
shared driver that reads the corpus, trains into a temporary directory, writes the manifest
and moves the finished model into place.

Parameters carry their help text in field metadata; the CLI generates its options from
them (``embedsearch train glove --help``), so a parameter is documented exactly once.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from embedsearch.corpus import ReadOptions
from embedsearch.errors import InvalidArgument, OutputExists
from embedsearch.trainers.prepare import TOKENIZER, PreparedCorpus, prepare_corpus


def param(default: Any, help: str, *, min: float | None = None, choices: tuple[str, ...] | None = None,
          flag: str | None = None) -> Any:  # fmt: skip
    """A trainer parameter: default, help text, optional lower bound, choices or CLI flag."""
    return field(default=default, metadata={"help": help, "min": min, "choices": choices, "flag": flag})


def check_params(params: Any) -> None:
    """Check every field of a parameter dataclass against its ``min`` and ``choices`` metadata."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        lo = f.metadata.get("min")
        if lo is not None and value < lo:
            raise InvalidArgument(f"--{f.name.replace('_', '-')} must be at least {lo}, got {value}")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise InvalidArgument(f"--{f.name.replace('_', '-')} must be one of {', '.join(choices)}, got {value!r}")


def torch_device(requested: str) -> str:
    """``auto`` (CUDA when PyTorch sees one), ``cpu``, or ``cuda[:n]``, which must exist."""
    if requested == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if available else "cpu"
    if requested.startswith("cuda") and not available:
        raise InvalidArgument(f"--device {requested}: no CUDA device is available (torch.cuda.is_available() is False)")
    return requested


@dataclass
class WordParams:
    """Parameters every word-embedding trainer takes."""

    dim: int = param(100, "vector dimension", min=1)
    window: int = param(5, "context window: words on each side of the centre word", min=1)
    min_count: int = param(5, "ignore words that occur fewer times than this", min=1)
    epochs: int = param(5, "passes over the corpus", min=1)
    max_vocab: int = param(0, "keep at most this many of the most frequent words (0: no limit)", min=0)
    threads: int = param(0, "worker threads (0: every core this process may use)", min=0)
    seed: int = param(1, "random seed", min=0)
    deterministic: bool = param(False, "train with one thread so that the same seed gives the same vectors")

    def validate(self) -> None:
        check_params(self)

    def worker_threads(self) -> int:
        from embedsearch.trainers.glove_core import default_threads

        if self.deterministic:
            return 1
        return self.threads or default_threads()


@dataclass
class FitResult:
    """What an algorithm reports back to the driver for the manifest."""

    kind: str  # model directory kind: "word-vectors" or "fasttext"
    vocab_size: int
    loss_curve: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # backend, timings, throughput...


class Trainer(ABC):
    """One training algorithm. Subclasses set ``name``, ``summary``, ``Params`` and write ``fit``."""

    name: str
    summary: str
    Params: type[WordParams] = WordParams
    examples: tuple[str, ...] = ()

    @abstractmethod
    def fit(self, corpus: PreparedCorpus, params: Any, out_dir: Path, *, progress: bool) -> FitResult:
        """Train on ``corpus`` and write the weights into ``out_dir`` (an empty directory)."""

    #: libraries whose versions the manifest records, besides Python, embedsearch and numpy
    libraries: tuple[str, ...] = ()

    def versions(self) -> dict[str, str]:
        from embedsearch.versions import library_versions

        return library_versions(*self.libraries)


@dataclass
class TrainReport:
    """The finished model directory and its manifest."""

    path: Path
    manifest: dict[str, Any]


def check_output_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not overwrite:
        raise OutputExists(f"{out_dir} already exists; pass --overwrite to replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExists(f"{out_dir} exists and is not a directory")


def train(
    trainer: Trainer,
    inputs: list[str],
    out_dir: Path,
    params: Any,
    *,
    read_options: ReadOptions | None = None,
    stdin_path: Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_skip=None,
) -> TrainReport:
    """Read ``inputs``, train, and publish the model at ``out_dir`` atomically.

    The model is built in a hidden sibling directory and renamed into place only when it
    is complete, so an interrupted run never leaves a half-written model, and with
    ``overwrite`` the previous model stays until the new one is ready.
    """
    from embedsearch.models import (
        SIF_SAMPLE_DOCS,
        publish_dir,
        sweep_leftovers,
        work_dir_prefix,
        write_manifest,
        write_sif_component,
    )

    params.validate()
    out_dir = Path(out_dir).expanduser().absolute()
    sweep_leftovers(out_dir)  # what killed runs left: their tokenised corpus, a model moved aside
    check_output_dir(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=work_dir_prefix(out_dir), suffix=".tmp", dir=out_dir.parent) as tmp:
        work = Path(tmp) / "work"
        model_dir = Path(tmp) / "model"
        work.mkdir()
        model_dir.mkdir()
        corpus = prepare_corpus(
            inputs, work, read_options or ReadOptions(per_line=True), stdin_path=stdin_path, on_skip=on_skip,
            progress=progress,
        )  # fmt: skip
        prepared = time.perf_counter()
        cpu_before = time.process_time()
        result = trainer.fit(corpus, params, model_dir, progress=progress)
        trained = time.perf_counter()
        cpu_seconds = time.process_time() - cpu_before
        manifest = {
            "format": 1,
            "kind": result.kind,
            "algorithm": trainer.name,
            "params": dataclasses.asdict(params),
            "seed": params.seed,
            "dim": params.dim,
            "vocab_size": result.vocab_size,
            "corpus": {
                "sources": corpus.sources,
                "fingerprint": corpus.fingerprint,
                "documents": corpus.n_docs,
                "tokens": corpus.n_tokens,
                "distinct_words": len(corpus.words),
                "tokenizer": TOKENIZER,
            },
            "versions": trainer.versions(),
            "threads": params.worker_threads(),
            "prepare_seconds": round(prepared - started, 3),
            "train_seconds": round(trained - prepared, 3),
            "train_cpu_seconds": round(cpu_seconds, 3),  # all threads of this process
            "loss_curve": result.loss_curve,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": {"cpus": os.cpu_count(), "machine": platform.machine()},
            **result.extra,
        }
        manifest["sif"] = write_sif_component(model_dir, result.kind, corpus.sample_documents(SIF_SAMPLE_DOCS))
        manifest["wall_seconds"] = round(time.perf_counter() - started, 3)
        write_manifest(model_dir, manifest)
        publish_dir(model_dir, out_dir, overwrite=overwrite)
    return TrainReport(out_dir, manifest)
