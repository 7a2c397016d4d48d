"""What a comparison compares: contenders, each a model searched densely, a model's collection
searched in lexical or hybrid mode, or the lexical index alone.

    minilm                      dense: the model's embeddings, exact search
    w2v=models/w2v              the same, labelled w2v
    minilm+lexical              a minilm collection with a lexical index, searched --mode lexical
    minilm+hybrid               ... searched --mode hybrid (the default fusion: relative, alpha 0.85)
    minilm+hybrid:rrf           ... hybrid, reciprocal rank fusion (k = 60)
    minilm+hybrid:weighted:0.7  ... hybrid, weighted fusion with alpha 0.7 (alpha defaults to 0.5)
    bm25                        the lexical index alone (no model; SQLite FTS5's BM25)

Every spec is parsed and every model checked (:func:`check_contenders`) before the first model
loads. Each model loads and embeds the corpus once, whichever contenders use it
(:func:`load_run`, :class:`ModelRun`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.errors import InvalidArgument

LEXICAL_ONLY = "bm25"
SUFFIXES = ("lexical", "hybrid")
SPEC_HELP = (
    "MODEL, MODEL+lexical, MODEL+hybrid, MODEL+hybrid:FUSION[:ALPHA] (FUSION relative, rrf or weighted) "
    "or bm25, each optionally LABEL=..."
)


@dataclass
class ModelSpec:
    label: str
    spec: str

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``LABEL=SPEC`` or ``SPEC`` (labelled by its directory name)."""
        label, sep, spec = text.partition("=")
        if not sep:
            spec, label = text, Path(text.rstrip("/")).name or text
        if not label or not spec:
            raise InvalidArgument(f"bad model {text!r}; use SPEC or LABEL=SPEC")
        return cls(label, spec)


@dataclass
class Contender:
    """One column of the report: ``mode`` over ``model``'s collection (None: bm25, no model)."""

    label: str
    spec: str  # as given, without the label
    mode: str  # dense | lexical | hybrid
    model: str | None
    fusion: str | None = None  # hybrid: relative | rrf | weighted
    alpha: float | None = None  # relative and weighted fusion: the dense side's weight

    @property
    def dense(self) -> bool:
        return self.mode == "dense"

    def describe(self, model_kind: str | None) -> str:
        if self.model is None:
            return "lexical index only (BM25, no model)"
        if self.dense:
            return model_kind or "model"
        how = "lexical search" if self.mode == "lexical" else f"hybrid search ({self.fusion_text()})"
        return f"{how} in a {self.model} collection"

    def fusion_text(self) -> str:
        if self.fusion == "rrf":
            return "reciprocal rank fusion, k = 60"
        return f"{self.fusion} fusion, alpha {self.alpha}"


def _suffix(text: str, suffix: str) -> tuple[str, str | None, float | None]:
    """``lexical`` / ``hybrid[:FUSION[:ALPHA]]`` -> (mode, fusion, alpha)."""
    from embedsearch.search_fusion import DEFAULT_FUSION, check

    mode, _, rest = suffix.partition(":")
    if mode not in SUFFIXES:
        raise InvalidArgument(f"{text!r}: unknown search mode '+{mode}'; a contender is {SPEC_HELP}")
    if mode == "lexical":
        if rest:
            raise InvalidArgument(f"{text!r}: '+lexical' takes no fusion settings")
        return mode, None, None
    fusion, _, alpha_text = (rest or DEFAULT_FUSION).partition(":")
    alpha = None
    if alpha_text:
        try:
            alpha = float(alpha_text)
        except ValueError:
            raise InvalidArgument(f"{text!r}: alpha {alpha_text!r} is not a number") from None
    try:
        alpha = check(fusion, alpha)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{text!r}: {exc}") from None
    return mode, fusion, alpha


def parse_contender(text: str) -> Contender:
    """``[LABEL=]SPEC``; SPEC is ``bm25``, a model, or ``MODEL+lexical`` / ``MODEL+hybrid...``.
    A model directory whose name holds a ``+`` is read as a model when it exists."""
    label, sep, spec = text.partition("=")
    if not sep:
        label, spec = "", text
    if not spec or (sep and not label):
        raise InvalidArgument(f"bad contender {text!r}; use {SPEC_HELP}")
    label = label or Path(spec.rstrip("/")).name or spec
    if spec == LEXICAL_ONLY:
        return Contender(label, spec, "lexical", None)
    if "+" in spec and not Path(spec).expanduser().exists():
        model, _, suffix = spec.rpartition("+")
        if not model:
            raise InvalidArgument(f"{text!r}: name the model before '+{suffix}'; a contender is {SPEC_HELP}")
        if model == LEXICAL_ONLY:
            raise InvalidArgument(f"{text!r}: bm25 is a contender of its own, not a model")
        mode, fusion, alpha = _suffix(text, suffix)
        return Contender(label, spec, mode, model, fusion, alpha)
    return Contender(label, spec, "dense", spec)


def parse_contenders(texts: Sequence[str]) -> list[Contender]:
    """Every spec parsed, labels unique; raises :class:`InvalidArgument` (a usage error)."""
    contenders = [parse_contender(t) for t in texts]
    if not contenders:
        raise InvalidArgument("name at least one model")
    labels = [c.label for c in contenders]
    if len(set(labels)) != len(labels):
        raise InvalidArgument(f"two models share a label ({', '.join(labels)}); name them LABEL=SPEC")
    return contenders


def check_contenders(contenders: Sequence[Contender], options: dict[str, Any]) -> None:
    """Every model must exist and look loadable before the first one loads (each takes seconds)."""
    check_models([ModelSpec(c.model, c.model) for c in contenders if c.model is not None], options)


def check_models(specs: list[ModelSpec], options: dict[str, Any]) -> None:
    from embedsearch.embedders import check_model
    from embedsearch.evaluation.report import word_model_dir

    for ms in specs:
        check_model(ms.spec, options if word_model_dir(ms.spec) is not None else None)


@dataclass
class ModelRun:
    """One model's embeddings of the corpus and what producing them cost."""

    label: str
    spec: str
    kind: str
    embedder: Any
    dim: int
    fingerprint: str
    size_bytes: int
    load_seconds: float
    doc_vectors: np.ndarray = field(repr=False, default=None)
    embed_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def load_run(ms: ModelSpec, *, device: str | None, options: dict[str, Any]) -> ModelRun:
    from embedsearch.embedders import load_embedder
    from embedsearch.evaluation.report import word_model_dir

    word_dir = word_model_dir(ms.spec)
    started = time.perf_counter()
    embedder = load_embedder(ms.spec, device=device, cache=False, options=options if word_dir is not None else None)
    load_seconds = time.perf_counter() - started
    backend = embedder.config().get("backend")
    if backend in ("onnx", "int8"):  # the exported model that runs, not the weights it came from
        size, kind = _dir_size(embedder.entry), f"sentence model ({'ONNX fp32' if backend == 'onnx' else 'ONNX int8'})"
    elif ms.spec == "minilm":
        from embedsearch.embedders.sentence import bundled_minilm_path

        size, kind = _dir_size(bundled_minilm_path()), "sentence model"
    elif embedder.config().get("kind") == "static":
        size, kind = _dir_size(Path(ms.spec)), "static (distilled)"
    elif ms.spec == "hashing":
        size, kind = 0, "hashing (no weights)"
    else:
        size = _dir_size(Path(ms.spec))
        kind = "word vectors" if word_dir is not None else "sentence model"
    return ModelRun(ms.label, ms.spec, kind, embedder, int(embedder.dim), embedder.fingerprint, size, load_seconds)
