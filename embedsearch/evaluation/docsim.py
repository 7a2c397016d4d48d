"""Document similarity against human ratings: the Lee corpus (50 news documents, gensim's
``lee.cor``) and its averaged human similarity judgements (``similarities0-1.txt``, the upper
triangle of a 50 x 50 matrix): Pearson and Spearman over the 1,225 document pairs."""

from __future__ import annotations

from typing import Any

import numpy as np

from embedsearch.datasets import gensim_data, lee_documents
from embedsearch.embedders.base import Embedder
from embedsearch.errors import EmbedsearchError


def lee_test_texts() -> list[str]:
    """The 50 rated documents (``lee.cor``), in the order of the rating matrix."""
    return [d.text for d in lee_documents() if d.metadata["split"] == "test"]


def lee_human_similarities() -> np.ndarray:
    """The 50 x 50 human similarity matrix, symmetrised from its upper triangle."""
    rows = [line.split() for line in gensim_data("similarities0-1.txt").read_text().splitlines() if line.strip()]
    m = np.array(rows, dtype=np.float64)
    if m.shape != (50, 50):
        raise EmbedsearchError(f"similarities0-1.txt has shape {m.shape}, expected (50, 50)")
    upper = np.triu(m, 1)
    return upper + upper.T + np.eye(50)


def lee_document_similarity(embedder: Embedder) -> dict[str, Any]:
    """Correlation of the embedder's cosine similarities with the human ratings."""
    from scipy.stats import pearsonr, spearmanr

    docs = lee_test_texts()
    x = embedder.embed(docs).astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    sims = x @ x.T
    human = lee_human_similarities()
    iu = np.triu_indices(len(docs), 1)
    return {
        "pearson": float(pearsonr(sims[iu], human[iu]).statistic),
        "spearman": float(spearmanr(sims[iu], human[iu]).statistic),
        "pairs": int(iu[0].size),
        "empty_documents": int((norms[:, 0] == 0).sum()),
    }


class SingleWordVectors:
    """A sentence model seen as word vectors: each word embedded as a one-word text, so the
    word-similarity benchmarks can be asked of it too (analogies are not: there is no vocabulary)."""

    has_subwords = True  # it answers for any string

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._cache: dict[str, np.ndarray] = {}

    def prefetch(self, words: set[str]) -> None:
        todo = sorted(w for w in words if w not in self._cache)
        if todo:
            for w, v in zip(todo, self.embedder.embed(todo), strict=True):
                self._cache[w] = v

    def __contains__(self, word: str) -> bool:
        return True

    def similarity(self, a: str, b: str) -> float:
        self.prefetch({a, b})
        va, vb = self._cache[a], self._cache[b]
        denom = float(np.linalg.norm(va) * np.linalg.norm(vb))
        return float(va @ vb / denom) if denom else 0.0
