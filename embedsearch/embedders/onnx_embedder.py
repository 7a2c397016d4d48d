"""Sentence models on ONNX Runtime (fp32 or int8), from an export cached by :mod:`onnx_export`.

At run time only onnxruntime, tokenizers and numpy are used: no torch, no transformers. Texts
are tokenised by the model's own fast tokenizer (saved with the export), sorted by length
so each batch pads to its own longest text (as ``SentenceTransformer.encode`` does), and the
graph returns the pooled sentence embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.embedders.base import Embedder, free_tokenizer, window_of
from embedsearch.embedders.onnx_export import backend_fingerprint, check_backend, ensure_exported, read_meta
from embedsearch.errors import InvalidArgument


def ort_providers(device: str | None, backend: str) -> list:
    """CUDA when asked for (or ``auto`` and available, fp32 only: dynamic int8 kernels are CPU
    kernels), else the CPU provider."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device in (None, "", "auto"):
        device = "cuda" if ("CUDAExecutionProvider" in available and backend == "onnx") else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise InvalidArgument(f"--device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise InvalidArgument(f"--device {device}: the onnx backends run on cpu or cuda[:n]")


class OnnxRunner:
    """An inference session plus the tokenizer that feeds it."""

    def __init__(self, model_path: Path, tokenizer_path: Path, meta: dict[str, Any], *, device: str | None = "cpu",
                 batch_size: int = 32, backend: str = "onnx") -> None:  # fmt: skip
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_path), options, providers=ort_providers(device, backend))
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(meta["max_seq_length"]))
        self.inputs = list(meta["inputs"])
        self.pad_id = int(meta["pad_id"])
        self.dim = int(meta["dim"])
        self.batch_size = batch_size

    def run(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(-lengths, kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = int(lengths[rows[0]])
            feeds = {
                "input_ids": np.full((len(rows), width), self.pad_id, dtype=np.int64),
                "attention_mask": np.zeros((len(rows), width), dtype=np.int64),
                "token_type_ids": np.zeros((len(rows), width), dtype=np.int64),
            }
            for i, r in enumerate(rows):
                e = encodings[r]
                n = len(e.ids)
                feeds["input_ids"][i, :n] = e.ids
                feeds["attention_mask"][i, :n] = 1
                feeds["token_type_ids"][i, :n] = e.type_ids
            out[rows] = self.session.run(["sentence_embedding"], {k: feeds[k] for k in self.inputs})[0]
        return out


class OnnxEmbedder(Embedder):
    """A sentence-transformers directory run by ONNX Runtime (``onnx``: fp32, ``int8``: dynamic int8)."""

    def __init__(
        self,
        source: Path,
        backend: str,
        *,
        models_dir: Path,
        source_fingerprint: str,
        name: str | None = None,
        spec: str | None = None,
        options: dict[str, Any] | None = None,
        device: str | None = None,
        batch_size: int = 32,
    ) -> None:
        check_backend(backend)
        if backend == "torch":
            raise InvalidArgument("OnnxEmbedder runs the onnx and int8 backends; torch is SentenceEmbedder")
        source = Path(source).absolute()
        self.entry = ensure_exported(source, source_fingerprint, backend, models_dir)
        self.meta = read_meta(self.entry)
        self.backend = backend
        self.source = source
        self.runner = OnnxRunner(self.entry / "model.onnx", self.entry / "tokenizer.json", self.meta, device=device,
                                 batch_size=batch_size, backend=backend)  # fmt: skip
        self.name = name or f"{source.name}-{backend}"
        self.spec = spec or str(source)
        self.options = dict(options or {})
        self.dim = self.runner.dim
        self.fingerprint = backend_fingerprint(source_fingerprint, backend)

    def config(self) -> dict[str, Any]:
        cfg = {**super().config(), "kind": "sentence-transformers", "backend": self.backend,
               "max_seq_length": self.meta["max_seq_length"], "export": self.entry.name}  # fmt: skip
        if self.options:
            cfg["options"] = dict(self.options)
        return cfg

    def chunk_tokenizer(self):
        if getattr(self, "_free_tokenizer", None) is None:
            self._free_tokenizer = free_tokenizer(self.runner.tokenizer)
        return self._free_tokenizer

    def token_window(self) -> int | None:
        return window_of(self.chunk_tokenizer(), int(self.meta["max_seq_length"]))

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        return self.runner.run(texts)
