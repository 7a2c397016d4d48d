"""What cutting a model's vectors short costs: the case for refusing OpenAI's ``dimensions``.

    python benchmarks/bench_truncation.py [--model minilm] [--model hashing]

``/v1/embeddings`` serves only a model's own dimension, because none of embedsearch's models was
trained for a prefix of its vector to be an embedding of its own (Matryoshka representation
learning, as OpenAI's text-embedding-3 models are). This measures the loss: each model's vectors
truncated to a fraction of their dimensions and re-normalised (what OpenAI does with
``dimensions``), scored by ``evaluation.docsim`` against the Lee corpus's human similarity ratings
(Pearson and Spearman over its 1,225 document pairs).
"""

from __future__ import annotations

import argparse

import numpy as np

from embedsearch.embedders import load_embedder
from embedsearch.embedders.base import Embedder
from embedsearch.evaluation.docsim import lee_document_similarity


class Truncated(Embedder):
    """The first ``dim`` values of another embedder's vectors, re-normalised."""

    def __init__(self, inner: Embedder, dim: int) -> None:
        self.inner, self.dim = inner, dim
        self.name, self.spec, self.fingerprint = f"{inner.name}[:{dim}]", inner.spec, inner.fingerprint

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        return self.inner.embed(texts)[:, : self.dim]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", help="models to measure (default: minilm and hashing)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(f"{'model':<10} {'dims':>5} {'pearson':>8} {'spearman':>9}")
    for name in args.model or ["minilm", "hashing"]:
        model = load_embedder(name, device=args.device)
        for dim in sorted({model.dim, model.dim // 2, model.dim // 3, model.dim // 4, model.dim // 8}, reverse=True):
            score = lee_document_similarity(model if dim == model.dim else Truncated(model, dim))
            print(f"{name:<10} {dim:>5} {score['pearson']:>8.3f} {score['spearman']:>9.3f}")


if __name__ == "__main__":
    main()
