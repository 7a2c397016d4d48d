"""One model, every metric that applies to it, with the reason when one does not."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

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


def word_benchmarks(
    spec: str, embedder=None, *, restrict_vocab: int = 30000, resamples: int = 0, keep_pairs: bool = False
) -> dict[str, Any]:
    """WordSim-353 and SimLex-999 (with OOV rate) and Google analogies (with per-section
    accuracy) for one model: a word model directly, a sentence model through each word
    embedded alone (``embedder``, loaded from ``spec`` when not given). ``metrics`` holds the
    results, ``skipped`` the reason for each metric that does not apply; with ``keep_pairs``,
    ``pairs`` holds each word set's per-pair similarities and human scores (numpy arrays)."""
    from embedsearch.datasets import gensim_data
    from embedsearch.evaluation.docsim import SingleWordVectors
    from embedsearch.evaluation.intrinsic import (
        ANALOGY_SETS,
        WORD_SIMILARITY_SETS,
        analogy_accuracy,
        correlate_pairs,
        pair_similarities,
        read_analogies,
        read_word_pairs,
    )

    out: dict[str, Any] = {"metrics": {}, "skipped": {}}
    if keep_pairs:
        out["pairs"] = {}
    word_dir = word_model_dir(spec)
    if word_dir is not None:
        from embedsearch.models import load_word_vectors

        # a word-vector embedder already holds the vectors (FastText's .bin is hundreds of MB)
        words = getattr(embedder, "wv", None)
        if words is None:
            words = load_word_vectors(word_dir)
        out["kind"] = "word vectors" + (" with subwords" if words.has_subwords else "")
    else:
        words = SingleWordVectors(embedder if embedder is not None else load_embedder(spec))
        out["kind"] = "sentence model"
    for name, file in WORD_SIMILARITY_SETS.items():
        pairs = read_word_pairs(gensim_data(file))
        if word_dir is None:
            words.prefetch({w for a, b, _ in pairs for w in (a, b)})
        sims, known = pair_similarities(words, pairs)
        human = np.array([score for _, _, score in pairs])
        result = correlate_pairs(sims, known, human, resamples=resamples)
        if keep_pairs:
            out["pairs"][name] = (sims, human)
        if word_dir is None:
            result["note"] = "each word embedded as a one-word text"
        elif words.has_subwords and result["in_vocab_pairs"] < result["pairs"]:
            result["note"] = f"{result['pairs'] - result['in_vocab_pairs']} pairs answered from subwords"
        out["metrics"][name] = result
    if word_dir is not None:
        sections = read_analogies(gensim_data(ANALOGY_SETS["google"]))
        out["metrics"]["google_analogy"] = analogy_accuracy(words, sections, restrict_vocab=restrict_vocab)
    else:
        out["skipped"]["google_analogy"] = "a sentence model has no vocabulary to search for the answer word"
    return out


def evaluate_model(spec: str, *, device: str | None = None, restrict_vocab: int = 30000) -> dict[str, Any]:
    """Word-level benchmarks (WordSim-353, SimLex-999, Google analogies) and Lee document
    similarity for one model; ``skipped`` says why a metric was not computed."""
    from embedsearch.embedders import BUILTIN_MODELS, check_model
    from embedsearch.evaluation.docsim import lee_document_similarity

    if not (Path(spec).is_dir() or spec in BUILTIN_MODELS):
        raise UnknownModel(f"unknown model {spec!r}: not a built-in and no such directory")
    check_model(spec)  # a broken model directory fails here, before anything loads
    started = time.perf_counter()
    word_dir = word_model_dir(spec)
    if word_dir is not None:
        embedder = load_embedder(str(word_dir), options={"pooling": "mean"}, cache=False)
    else:
        embedder = load_embedder(spec, device=device)
    bench = word_benchmarks(spec, embedder, restrict_vocab=restrict_vocab)
    out: dict[str, Any] = {"model": spec, "kind": bench["kind"], "metrics": bench["metrics"], "skipped": bench["skipped"]}
    if word_dir is not None:
        out["metrics"]["lee_docsim_mean"] = lee_document_similarity(embedder)
        sif = load_embedder(str(word_dir), options={"pooling": "sif"}, cache=False)
        out["metrics"]["lee_docsim_sif"] = lee_document_similarity(sif)
    else:
        out["metrics"]["lee_docsim"] = lee_document_similarity(embedder)
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
            rows.append(
                (f"{name} (spearman)", value, f"OOV rate {m['oov_rate']:.1%}" + (f"; {m['note']}" if m.get("note") else ""))
            )
    for name, why in result["skipped"].items():
        rows.append((name, "-", why))
    return rows
