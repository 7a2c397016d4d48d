"""A feature-hashing embedder: signed token and bigram hashes folded into ``dim`` buckets.

It needs no weights and no training, embeds thousands of documents a second, and is a
lexical baseline worth having in a comparison (it knows words, not meanings). Tests use it
where a real model's seconds of loading would only slow them down.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

from embedsearch.corpus import tokenize
from embedsearch.embedders.base import Embedder

VERSION = 1


class HashingEmbedder(Embedder):
    """Bag of words and bigrams, hashed (crc32, stable across runs and machines) with a sign."""

    def __init__(self, dim: int = 256, *, name: str | None = None) -> None:
        self.dim = int(dim)
        self.name = name or "hashing"
        self.spec = self.name
        self.fingerprint = hashlib.sha256(f"hashing-v{VERSION}-{self.dim}".encode()).hexdigest()
        self.chunk_size = 4096

    def config(self) -> dict:
        return {**super().config(), "kind": "hashing", "version": VERSION}

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = tokenize(text)
            feats = tokens + [a + " " + b for a, b in zip(tokens, tokens[1:], strict=False)]
            if not feats:
                continue
            h = np.fromiter((zlib.crc32(f.encode("utf-8")) for f in feats), dtype=np.uint64, count=len(feats))
            sign = np.where(h & np.uint64(1 << 31), -1.0, 1.0).astype(np.float32)
            # sub-linear term frequency, as in tf-idf practice, so one repeated word does not dominate
            np.add.at(out[row], (h % np.uint64(self.dim)).astype(np.int64), sign)
            out[row] = np.sign(out[row]) * np.log1p(np.abs(out[row]))
        return out
