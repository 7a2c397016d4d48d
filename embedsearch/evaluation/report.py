"""One model, every metric that applies to it, with the reason when one does not."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from embedsearch.embedders import load_embedder
from embedsearch.errors import UnknownModel


def word_model_dir(spec: str) -> Path | None:
    """The directory when ``spec`` is one of our word models, else None."""
    path = Path(spec)
    if (path / "manifest.json").is_file():
        from embedsearch.models import WORD_KINDS, read_manifest

        if read_manifest(path)["kind"] in WORD_KINDS:
            return path
    return None


def evaluate_model(spec: str, *, device: str | None = None, restrict_vocab: int = 30000) -> dict[str, Any]:
    """Word-level benchmarks (WordSim-353, SimLex-999, Google analogies) and Lee document
    similarity for one model; ``skipped`` says why a metric was not computed."""
    from embedsearch.datasets import gensim_data
    from embedsearch.evaluation.docsim import SingleWordVectors, lee_document_similarity
    from embedsearch.evaluation.intrinsic import (
        ANALOGY_SETS,
        WORD_SIMILARITY_SETS,
        analogy_accuracy,
        read_analogies,
        read_word_pairs,
        word_similarity,
    )

    if not (Path(spec).is_dir() or spec in ("minilm", "hashing")):
        raise UnknownModel(f"unknown model {spec!r}: not a built-in and no such directory")
    out: dict[str, Any] = {"model": spec, "metrics": {}, "skipped": {}}
    word_dir = word_model_dir(spec)
    started = time.perf_counter()
    if word_dir is not None:
        from embedsearch.models import load_word_vectors

        wv = load_word_vectors(word_dir)
        out["kind"] = "word vectors" + (" with subwords" if wv.has_subwords else "")
        for name, file in WORD_SIMILARITY_SETS.items():
            out["metrics"][name] = word_similarity(wv, read_word_pairs(gensim_data(file)))
        res = analogy_accuracy(wv, read_analogies(gensim_data(ANALOGY_SETS["google"])), restrict_vocab=restrict_vocab)
        out["metrics"]["google_analogy"] = res
        for pooling in ("mean", "sif"):
            emb = load_embedder(str(word_dir), options={"pooling": pooling}, cache=False)
            out["metrics"][f"lee_docsim_{pooling}"] = lee_document_similarity(emb)
    else:
        emb = load_embedder(spec, device=device)
        out["kind"] = "sentence model"
        words = SingleWordVectors(emb)
        for name, file in WORD_SIMILARITY_SETS.items():
            pairs = read_word_pairs(gensim_data(file))
            words.prefetch({w for a, b, _ in pairs for w in (a, b)})
            result = word_similarity(words, pairs)
            result["note"] = "each word embedded as a one-word text"
            out["metrics"][name] = result
        out["skipped"]["google_analogy"] = "a sentence model has no vocabulary to search for the answer word"
        out["metrics"]["lee_docsim"] = lee_document_similarity(emb)
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, value, note) rows for a table."""
    rows = []
    for name, m in result["metrics"].items():
        if name == "google_analogy":
            acc = m["accuracy"]
            rows.append((name, "-" if acc is None else f"{acc:.4f}", f"{m['covered']}/{m['questions']} questions covered"))
        elif name.startswith("lee_docsim"):
            rows.append((f"{name} (pearson)", f"{m['pearson']:.4f}", f"spearman {m['spearman']:.4f}, {m['pairs']} pairs"))
        else:
            value = "-" if m["spearman"] is None else f"{m['spearman']:.4f}"
            oov = 1 - m["coverage"]
            rows.append((f"{name} (spearman)", value, f"OOV rate {oov:.1%}" + (f"; {m['note']}" if m.get("note") else "")))
    for name, why in result["skipped"].items():
        rows.append((name, "-", why))
    return rows
