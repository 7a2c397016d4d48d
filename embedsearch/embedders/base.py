"""The Embedder contract: text in, float32 (n, dim) vectors out.

Implementations write one method, :meth:`Embedder.embed_batch`; batching, progress,
validation and normalisation live here so every embedder behaves the same.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from embedsearch.errors import DimensionMismatch, EmbedsearchError


class Embedder(ABC):
    """Base class for every embedder.

    Attributes: ``name`` (what the user called it), ``spec`` (how to load it again: a built-in
    name or an absolute path), ``dim``, ``fingerprint`` (hash of weights and config) and
    ``normalize`` (L2-normalise outputs, the default for cosine collections).
    """

    name: str
    spec: str
    dim: int
    fingerprint: str
    normalize: bool = True
    #: texts handed to :meth:`embed_batch` at once; large so implementations can sort by length
    chunk_size: int = 1024

    @abstractmethod
    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one chunk of texts; return an array of shape (len(texts), dim)."""

    def config(self) -> dict[str, Any]:
        """Settings recorded with a collection so the same embedding can be reproduced."""
        return {"name": self.name, "spec": self.spec, "dim": self.dim, "normalize": self.normalize}

    def chunk_tokenizer(self):
        """The model's tokenizer as a ``tokenizers.Tokenizer`` without truncation or padding, to
        count and split passages with (embedsearch/passages.py); None when it has none."""
        return None

    def token_window(self) -> int | None:
        """Tokens of text the model reads (its maximum sequence length less its special tokens);
        None when it reads any length."""
        return None

    def embed(self, texts: Sequence[str], *, progress: bool = False, desc: str = "embedding") -> np.ndarray:
        """Embed ``texts`` as float32 (n, dim), L2-normalised when ``normalize`` is set."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of strings, not a single string")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise EmbedsearchError(f"text #{i} is {type(t).__name__}, not a string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        bar = None
        if progress:
            from embedsearch.progress import bar as progress_bar

            bar = progress_bar(len(texts), desc, "doc")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        try:
            for start in range(0, len(texts), self.chunk_size):
                chunk = texts[start : start + self.chunk_size]
                vecs = np.asarray(self.embed_batch(chunk), dtype=np.float32)
                if vecs.shape != (len(chunk), self.dim):
                    raise DimensionMismatch(
                        f"embedder {self.name} returned shape {vecs.shape}, expected ({len(chunk)}, {self.dim})"
                    )
                out[start : start + len(chunk)] = vecs
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        if self.normalize:
            normalize_rows(out)
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dim={self.dim} fp={self.fingerprint[:12]}>"


def free_tokenizer(tokenizer):
    """A copy of a ``tokenizers.Tokenizer`` that neither truncates nor pads."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def window_of(tokenizer, max_seq_length: int | None) -> int | None:
    """``max_seq_length`` less the special tokens ``tokenizer`` adds to one text."""
    if max_seq_length is None:
        return None
    specials = len(tokenizer.encode("", add_special_tokens=True).ids)
    return int(max_seq_length) - specials


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows in place (zero rows stay zero) and return ``x``."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, norms, out=x, where=norms > 0)
    return x

