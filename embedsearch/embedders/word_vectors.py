"""Documents embedded from word vectors: mean or SIF pooling over the shared tokenizer.

SIF (Arora, Liang and Ma 2017): a weighted average with weights a / (a + p(w)), then the
projection on a fixed common direction removed. The direction comes with the model
(``sif_pc.npy``), so a query embedded alone gets the same vector it would in a batch.
Words the model lacks are skipped, or, for FastText models, built from character n-grams.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.corpus import tokenize
from embedsearch.embedders.base import Embedder
from embedsearch.errors import InvalidArgument

POOLINGS = ("mean", "sif")
OOV_POLICIES = ("skip", "subword")


def resolve_options(kind: str, pooling: str | None = None, oov: str | None = None) -> dict[str, str]:
    """Defaults and validation: mean pooling; subwords for FastText, skip otherwise."""
    pooling = pooling or "mean"
    if pooling not in POOLINGS:
        raise InvalidArgument(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    oov = oov or ("subword" if kind == "fasttext" else "skip")
    if oov not in OOV_POLICIES:
        raise InvalidArgument(f"unknown out-of-vocabulary policy {oov!r}; choose one of {', '.join(OOV_POLICIES)}")
    if oov == "subword" and kind != "fasttext":
        raise InvalidArgument("--oov subword needs a FastText model; this model has no subword information")
    return {"pooling": pooling, "oov": oov}


def options_fingerprint(directory_fp: str, options: dict[str, str]) -> str:
    """The model files' hash combined with the pooling options: a different pooling makes
    different vectors, so it must not pass as the same embedder."""
    payload = directory_fp + json.dumps(options, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class WordVectorEmbedder(Embedder):
    """Pooled word vectors from a ``word-vectors`` or ``fasttext`` model directory."""

    chunk_size = 4096

    def __init__(self, path: Path, manifest: dict[str, Any], pooling: str | None = None, oov: str | None = None) -> None:
        from embedsearch.embedders.sentence import directory_fingerprint
        from embedsearch.models import load_npy, load_word_vectors, sif_weights

        path = Path(path).absolute()
        self.options = resolve_options(manifest["kind"], pooling, oov)
        self.wv = load_word_vectors(path, manifest)
        self.name = path.name
        self.spec = str(path)
        self.dim = self.wv.dim
        self.fingerprint = options_fingerprint(directory_fingerprint(path), self.options)
        self._weights = sif_weights(self.wv) if self.options["pooling"] == "sif" else None
        self._pc = None
        if self.options["pooling"] == "sif":
            pc = load_npy(path / "sif_pc.npy").astype(np.float32)
            self._pc = pc / max(float(np.linalg.norm(pc)), 1e-12)
        self._subword_cache: dict[str, np.ndarray] = {}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "options": dict(self.options)}

    def _subword(self, word: str) -> np.ndarray:
        vec = self._subword_cache.get(word)
        if vec is None:
            vec = self.wv.vector(word)
            if len(self._subword_cache) < 100_000:
                self._subword_cache[word] = vec
        return vec

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        index = self.wv.index
        vectors = self.wv.vectors
        subword = self.options["oov"] == "subword"
        for row, text in enumerate(texts):
            tokens = tokenize(text)
            ids = [index[t] for t in tokens if t in index]
            parts = [vectors[ids]] if ids else []
            weights = [self._weights[ids]] if (self._weights is not None and ids) else []
            if subword:
                unknown = [t for t in tokens if t not in index]
                if unknown:
                    parts.append(np.stack([self._subword(t) for t in unknown]))
                    if self._weights is not None:
                        # an unseen word has p(w) ~ 0, so its SIF weight a / (a + p) is 1
                        weights.append(np.ones(len(unknown), dtype=np.float32))
            if not parts:
                continue  # no known word: a zero vector (it matches nothing)
            mat = np.concatenate(parts) if len(parts) > 1 else parts[0]
            if self._weights is not None:
                w = np.concatenate(weights) if len(weights) > 1 else weights[0]
                out[row] = (w[:, None] * mat).mean(axis=0)
            else:
                out[row] = mat.mean(axis=0)
        if self._pc is not None:
            out -= np.outer(out @ self._pc, self._pc)
        return out
