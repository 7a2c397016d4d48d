"""ONNX builds of sentence-transformers models: exported offline on first use, cached by fingerprint.

The recipe is what sentence-transformers' ``backend="onnx"`` plus
``export_dynamic_quantized_onnx_model(model, "avx512_vnni", ...)`` do through optimum, with
optimum's steps called on the maintained libraries directly: the only optimum-onnx release
(0.1.0) pins transformers<4.58, and this project runs sentence-transformers 6 on transformers 5,
so installing optimum would downgrade the whole stack.

1. ``torch.onnx.export`` of the whole SentenceTransformer forward (transformer, pooling, any
   dense layers, normalisation) with eager attention, dynamic batch and sequence axes, so the
   graph returns the sentence embedding itself;
2. ``onnxruntime.transformers.optimizer`` fuses attention, layer norm and GELU for BERT-family
   models (optimum's ``ORTOptimizer`` calls the same function);
3. int8: ``onnxruntime.quantization.quantize_dynamic`` with optimum's ``avx512_vnni`` dynamic
   configuration: MatMul weights int8, symmetric, per channel; activations uint8 at run time;
   and the fused Attention ops' Q/K/V projection (QAttention), which MatMul alone leaves in fp32
   once step 2 has fused it (1.66x fp32 ONNX on 150 Lee stories where MatMul alone gave 1.54x);
4. verification on probe texts against the torch model (fp32: cosine >= 0.9999 on every probe;
   int8: >= 0.95); a build that fails it is refused, never cached.

The cache is the user's (``$EMBEDSEARCH_CACHE``, else ``~/.cache/embedsearch``; see
:func:`embedsearch.embedders.models_dir`), shared by every data directory, since an export depends
on the weights only. An entry left in a data directory's ``_models/`` by earlier versions
(:data:`embedsearch.config.LEGACY_EXPORT_DIRS`, which the CLI fills) is copied into it rather
than built again.

A cache entry ``<models dir>/<backend>-<source fingerprint[:24]>/`` holds ``model.onnx``,
``tokenizer.json`` and ``export.json`` (the source fingerprint, the recipe, library versions and
the sha256 of both files). Loading re-hashes the files; an entry whose files are corrupted or
whose source fingerprint differs from the model's is rebuilt. Builds happen in a temporary
directory renamed into place, under a lock file, so concurrent first uses build once and a
crash never leaves a half-written entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.config import LEGACY_EXPORT_DIRS
from embedsearch.errors import InvalidArgument, ModelFormatError

BACKENDS = ("torch", "onnx", "int8")
#: bump when the export recipe changes what the int8 model computes
RECIPE_VERSION = 2  # 2: int8 quantises the fused Attention ops' QKV weights too (QAttention)
META = "export.json"
OPSET = 17
#: a text the probe set needs long enough to be truncated at any max_seq_length up to 512
_LONG = " ".join(f"Sentence {i} of a long report on rainfall, bushfires and interest rates." for i in range(60))
PROBES = [
    "The cat sits on the mat.",
    "  Leading and trailing spaces  ",
    "MiXeD CaSe and numbers 12345 and punctuation?!",
    "Unicode: café, naïve, Zürich, 東京, emoji 🙂",
    "",
    _LONG,
]
#: lowest cosine to the torch model on any probe text that a build must reach
MIN_PROBE_COSINE = {"onnx": 0.9999, "int8": 0.95}
#: model types whose graphs onnxruntime's transformer optimizer knows how to fuse
_OPTIMIZER_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert", "mpnet": "bert"}


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise InvalidArgument(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def require_onnxruntime() -> None:
    """A clear error naming the missing package instead of an ImportError deep in a build."""
    for module, dist in (("onnxruntime", "onnxruntime"), ("onnx", "onnx")):
        try:
            __import__(module)
        except ImportError:
            raise InvalidArgument(
                f"the onnx and int8 backends need the {dist} package: pip install 'embedsearch[onnx]'"
            ) from None


def backend_fingerprint(source_fingerprint: str, backend: str) -> str:
    """What a collection is pinned to. ONNX fp32 computes the torch model's vectors (cosine
    >= 0.9999 on every probe; 1 - 1e-7 measured), so it keeps the source's fingerprint and the
    two backends share collections. int8 vectors differ (mean cosine ~0.995), so int8 has its own."""
    check_backend(backend)
    if backend in ("torch", "onnx"):
        return source_fingerprint
    return hashlib.sha256(f"onnx-int8-dynamic-v{RECIPE_VERSION}:{source_fingerprint}".encode()).hexdigest()


def entry_name(backend: str, source_fingerprint: str) -> str:
    """Keyed by the weights, not the name: minilm-int8 and the same weights given as a
    directory with --backend int8 share one build."""
    return f"{backend}-{source_fingerprint[:24]}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def entry_problem(entry: Path, source_fingerprint: str, backend: str) -> str | None:
    """Why a cache entry cannot be used (None when it can)."""
    try:
        meta = json.loads((entry / META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{META} is missing"
    except (OSError, ValueError) as exc:
        return f"{META} is unreadable ({exc})"
    if meta.get("source_fingerprint") != source_fingerprint:
        return "it was built from other weights (source fingerprint differs)"
    if meta.get("backend") != backend or meta.get("recipe_version") != RECIPE_VERSION:
        return "it was built by another backend or recipe"
    for name, digest in (meta.get("files") or {}).items():
        path = entry / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != digest:
            return f"{name} is corrupted (sha256 differs from {META})"
    if set(meta.get("files") or {}) != {"model.onnx", "tokenizer.json"}:
        return f"{META} does not list the model files"
    return None


def read_meta(entry: Path) -> dict[str, Any]:
    return json.loads((entry / META).read_text(encoding="utf-8"))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _adopt(entry: Path, source_fingerprint: str, backend: str, models_dir: Path) -> bool:
    """Copy a usable entry of the same name from a legacy directory into ``models_dir`` (caller
    holds the lock); True when one was adopted."""
    for legacy in LEGACY_EXPORT_DIRS:  # where an earlier version may have exported it
        old = Path(legacy) / entry.name
        if old.resolve() == entry.resolve() or not old.is_dir() or entry_problem(old, source_fingerprint, backend):
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=models_dir))
        try:
            shutil.copytree(old, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.lock"))
            if entry_problem(tmp, source_fingerprint, backend) is None:
                if entry.exists():
                    shutil.rmtree(entry)
                os.rename(tmp, entry)
                _notice(f"using the {backend} model exported earlier in {legacy} (copied to {models_dir})")
                return True
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return False


def _notice(message: str) -> None:
    """Builds and copies take seconds to minutes: say so on a terminal, and in the log (the
    service's, or any the caller configured) wherever it runs."""
    import logging

    logging.getLogger("embedsearch.embedders").info(message)
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


def ensure_exported(source: Path, source_fingerprint: str, backend: str, models_dir: Path) -> Path:
    """The cache entry for ``source`` under ``backend``, built (offline) when missing or unusable."""
    check_backend(backend)
    if backend == "torch":
        raise InvalidArgument("the torch backend runs the model directory itself; nothing to export")
    require_onnxruntime()
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    entry = models_dir / entry_name(backend, source_fingerprint)
    if entry.is_dir() and entry_problem(entry, source_fingerprint, backend) is None:
        return entry  # the common case: no lock taken
    with _locked(models_dir / f".{entry.name}.lock"):
        problem = entry_problem(entry, source_fingerprint, backend) if entry.exists() else None
        if entry.exists() and problem is None:
            return entry  # another process built it while we waited
        if _adopt(entry, source_fingerprint, backend, models_dir):
            return entry
        if problem:
            _notice(f"rebuilding cached {backend} model {entry.name}: {problem}")
        parent = ensure_exported(source, source_fingerprint, "onnx", models_dir) if backend == "int8" else None
        _notice(f"building the {backend} ONNX model of {source.name} (once; cached in {models_dir})")
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=models_dir))
        try:
            if backend == "onnx":
                _build_fp32(source, source_fingerprint, tmp)
            else:
                _build_int8(source, source_fingerprint, parent, tmp)
            if entry.exists():  # a corrupted or stale entry: move it aside, then swap in the new one
                aside = models_dir / f".{entry.name}.stale-{os.getpid()}"
                os.rename(entry, aside)
                shutil.rmtree(aside, ignore_errors=True)
            os.rename(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return entry


# --- building -----------------------------------------------------------------------------------


def _load_torch_model(source: Path):
    from embedsearch.embedders.sentence import load_sentence_transformer

    # eager attention: the SDPA path traces to a graph the attention fusion does not recognise
    return load_sentence_transformer(source, device="cpu", model_kwargs={"attn_implementation": "eager"})


def _features(model, texts: list[str]) -> dict[str, Any]:
    prep = getattr(model, "preprocess", None) or model.tokenize
    return prep(texts)


def _build_fp32(source: Path, source_fingerprint: str, out: Path) -> None:
    import torch

    started = time.perf_counter()
    model = _load_torch_model(source).eval()
    features = _features(model, ["a probe sentence", "another, longer probe sentence for the export"])
    names = [k for k, v in features.items() if isinstance(v, torch.Tensor)]
    if not set(names) <= {"input_ids", "attention_mask", "token_type_ids"} or "input_ids" not in names:
        raise ModelFormatError(f"{source}: the onnx backend runs text models fed input_ids/attention_mask, not {names}")
    extra = {k: v for k, v in features.items() if not isinstance(v, torch.Tensor)}  # e.g. modality: "text"

    class Whole(torch.nn.Module):
        """The SentenceTransformer forward as a function of the tokenizer's tensors."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model({**dict(zip(names, tensors, strict=True)), **extra})["sentence_embedding"]

    raw = out / "raw.onnx"
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["sentence_embedding"] = {0: "batch"}
    with torch.no_grad(), _quiet_warnings():
        torch.onnx.export(Whole(), tuple(features[n] for n in names), str(raw), dynamo=False, input_names=names,
                          output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=OPSET)  # fmt: skip
    fused = _optimize(source, raw, out / "model.onnx")
    raw.unlink()
    tok = model.tokenizer
    backend_tok = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
    if backend_tok is None:
        raise ModelFormatError(f"{source}: the onnx backend needs a fast (Rust) tokenizer; this model has none")
    backend_tok.save(str(out / "tokenizer.json"))
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = int(get_dim())
    meta = {
        "max_seq_length": int(model.max_seq_length),
        "pad_id": int(tok.pad_token_id if tok.pad_token_id is not None else 0),
        "inputs": names,
        "dim": dim,
        "fusions": fused,
    }
    reference = model.encode(PROBES, convert_to_numpy=True, normalize_embeddings=True)
    _finish(out, source, source_fingerprint, "onnx", meta, reference, started)


def _optimize(source: Path, raw: Path, dst: Path) -> dict[str, int]:
    """Fuse attention / layer norm / GELU where onnxruntime knows the architecture."""
    config = json.loads((source / "config.json").read_text(encoding="utf-8")) if (source / "config.json").exists() else {}
    kind = _OPTIMIZER_TYPES.get(str(config.get("model_type", "")))
    if kind is None:
        shutil.copyfile(raw, dst)  # onnxruntime still applies its generic optimisations at load time
        return {}
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet_warnings():
        opt = optimize_model(str(raw), model_type=kind, num_heads=int(config.get("num_attention_heads", 0)),
                             hidden_size=int(config.get("hidden_size", 0)), opt_level=None)  # fmt: skip
        opt.save_model_to_file(str(dst))
    return {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}


def _build_int8(source: Path, source_fingerprint: str, parent: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.perf_counter()
    meta = {k: v for k, v in read_meta(parent).items() if k in ("max_seq_length", "pad_id", "inputs", "dim", "fusions")}
    meta["quantization"] = {"method": "dynamic", "ops": ["MatMul", "Attention"], "weights": "int8 symmetric per-channel",
                            "activations": "uint8 asymmetric, computed at run time", "as_in": "optimum avx512_vnni"}  # fmt: skip
    with _quiet_warnings():
        quantize_dynamic(str(parent / "model.onnx"), str(out / "model.onnx"), op_types_to_quantize=["MatMul", "Attention"],
                         per_channel=True, reduce_range=False, weight_type=QuantType.QInt8,
                         extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                        "DefaultTensorType": 1})  # fmt: skip  # 1 = FLOAT, for fused ops' outputs
    shutil.copyfile(parent / "tokenizer.json", out / "tokenizer.json")
    # the reference is the torch model, not the fp32 export: the check bounds the whole int8 error
    reference = _load_torch_model(source).encode(PROBES, convert_to_numpy=True, normalize_embeddings=True)
    _finish(out, source, source_fingerprint, "int8", meta, reference, started)


def _finish(out: Path, source: Path, source_fingerprint: str, backend: str, meta: dict, reference: np.ndarray,
            started: float) -> None:  # fmt: skip
    from embedsearch.embedders.onnx_embedder import OnnxRunner
    from embedsearch.versions import library_versions

    got = OnnxRunner(out / "model.onnx", out / "tokenizer.json", meta, device="cpu").run(PROBES)
    got /= np.maximum(np.linalg.norm(got, axis=1, keepdims=True), 1e-12)
    cosines = (got * reference).sum(axis=1)
    if float(cosines.min()) < MIN_PROBE_COSINE[backend]:
        raise ModelFormatError(
            f"{source}: the {backend} export does not reproduce the model (lowest probe cosine "
            f"{cosines.min():.5f} < {MIN_PROBE_COSINE[backend]}); use --backend torch for this model"
        )
    meta = {
        "format": 1,
        "backend": backend,
        "recipe_version": RECIPE_VERSION,
        "source": str(source),
        "source_fingerprint": source_fingerprint,
        **meta,
        "probe_cosine": {"min": round(float(cosines.min()), 7), "mean": round(float(cosines.mean()), 7)},
        "files": {name: _sha256(out / name) for name in ("model.onnx", "tokenizer.json")},
        "bytes": (out / "model.onnx").stat().st_size,
        "versions": library_versions("torch", "transformers", "sentence-transformers", "onnx", "onnxruntime"),
        "build_seconds": round(time.perf_counter() - started, 2),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for name in ("model.onnx", "tokenizer.json", META):
        fd = os.open(out / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    """The tracer's and optimizer's warnings are about the export, not the user's data."""
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("onnxruntime", "onnxruntime.transformers", "root")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
