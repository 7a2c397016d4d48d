"""Compare several embedding models, and search modes, on one corpus: which should I use, and
what does each cost?

:func:`compare_models` takes contenders (see :mod:`embedsearch.evaluation.contenders`): models,
searched densely, and search modes over a model's collection (``MODEL+lexical``,
``MODEL+hybrid``) or the lexical index alone (``bm25``). Each model embeds the corpus once. It
measures, where each applies: retrieval on a labelled query set (or a label field) with bootstrap
intervals and paired tests against the best contender, word-level benchmarks, Lee document
similarity, agreement between contenders, and cost. It returns the report as plain data (the
JSON schema in ``report_schema.json``); :mod:`embedsearch.evaluation.render` turns it into HTML
and Markdown.

On a BEIR set (``beir``) retrieval is scored as BEIR and MTEB score it (:mod:`.beir_run`).
The parts live in their own modules: the query sets (:mod:`.query_sets`), the contenders and
the models they load (:mod:`.contenders`), the retrieval run (:mod:`.retrieval_run`), the
sections about models' vectors (:mod:`.model_sections`) and the metric entries
(:mod:`.metric_cells`); this module assembles the report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from embedsearch.corpus import Document
from embedsearch.errors import CorpusError, InvalidArgument
from embedsearch.evaluation import beir_run, model_sections
from embedsearch.evaluation.beir import BeirSet
from embedsearch.evaluation.beir_run import BeirRun
from embedsearch.evaluation.contenders import (
    Contender,
    ModelRun,
    ModelSpec,
    check_contenders,
    check_models,
    load_run,
    parse_contender,
    parse_contenders,
)
from embedsearch.evaluation.examples import best_model, example_hits, missed_queries
from embedsearch.evaluation.metric_cells import empty, metric, pick_best, retrieval_labels, value
from embedsearch.evaluation.model_sections import pca_2d
from embedsearch.evaluation.pareto import tradeoff
from embedsearch.evaluation.query_sets import Query, fingerprint_documents, fingerprint_queries, label_queries, read_queries
from embedsearch.evaluation.recommend import recommend
from embedsearch.evaluation.retrieval_run import SearchCollections, flat_bytes, flat_index, rank

SCHEMA = "embedsearch.compare/1"

__all__ = [
    "SCHEMA",
    "Contender",
    "ModelRun",
    "ModelSpec",
    "Query",
    "check_contenders",
    "check_models",
    "compare_models",
    "fingerprint_documents",
    "flat_index",
    "label_queries",
    "load_run",
    "parse_contender",
    "parse_contenders",
    "pca_2d",
    "read_queries",
]

_pick_best = pick_best  # the name tests and older callers use

# What each cost column counts for a contender that is not a plain model (the report's notes).
COST_NOTES = (
    "Cost columns for search-mode contenders. documents/s: bm25: adding the corpus to a collection "
    "with a lexical index (document rows and the FTS5 index, one commit; no embedding); MODEL+lexical "
    "and MODEL+hybrid: embedding the corpus plus that same indexing into the model's collection (what "
    "`index create` and `index add` cost; a lexical search of it never uses the vectors, but the "
    "collection holds them); a plain model: embedding the corpus only. Model size: the model's files "
    "(bm25: none). Index size: exact Flat bytes, plus the lexical index's bytes in the database for "
    "MODEL+lexical and MODEL+hybrid; bm25: the lexical index alone. Query time: one batch of all "
    "queries through embedsearch.search.search (lexical: the SQL full-text query per query; hybrid: "
    "embedding the batch, FAISS, the full-text query and the fusion), best of three rounds, like a "
    "model's batch embedding and exact search.",
    "Lexical and hybrid contenders are searched through the library itself, in temporary SQLite "
    "collections with a lexical index (FTS5 BM25, k1 = 1.2, b = 0.75), removed afterwards. "
    "Contenders of one model share its vectors and its embedding time: the corpus is embedded once.",
)


def compare_models(
    models: Sequence[str],
    documents: Sequence[Document],
    *,
    queries: list[Query] | None = None,
    corpus_name: str = "corpus",
    queries_name: str | None = None,
    label_field: str | None = None,
    k: int = 10,
    resamples: int = 1000,
    seed: int = 0,
    device: str | None = None,
    options: dict[str, Any] | None = None,
    word_level: bool = True,
    docsim: bool = True,
    agreement_pairs: int = 2000,
    map_sample: int = 400,
    map_method: str = "pca",
    color_field: str | None = None,
    progress: bool = False,
    beir: BeirSet | None = None,
    beir_runs: dict[str, BeirRun] | None = None,
) -> dict[str, Any]:
    """Measure every contender on ``documents`` and return the report (see the module docstring).

    ``beir``: the documents and queries are this BEIR set's; retrieval is scored as trec_eval
    scores it (graded nDCG, recall over all relevant, MAP) over each contender's top 1,000 (see
    :mod:`.beir_run`), and ``beir_runs``, when given, receives every contender's run."""
    from embedsearch.evaluation.metrics import bootstrap_ci, bootstrap_indices, ranking_metrics

    contenders = parse_contenders(models)
    docs = list(documents)
    if len(docs) < 2:
        raise CorpusError("the corpus needs at least two documents")
    doc_ids = [d.id for d in docs]
    if len(set(doc_ids)) != len(doc_ids):
        raise CorpusError("document ids repeat; give each document a unique id")
    if queries is None and label_field:
        queries = label_queries(docs, label_field, seed=seed)
    if k < 1:
        raise InvalidArgument("k must be at least 1")
    options = options or {}
    check_contenders(contenders, options)
    steps = _Steps(len(contenders), progress)
    report = _skeleton(docs, queries, corpus_name, queries_name, label_field, k, resamples, seed, device, options)
    report["settings"]["map"] = {"method": map_method, "sample": min(map_sample, len(docs))}
    metrics = report["metrics"]
    all_dense = all(c.dense for c in contenders)

    # ---- load every model once and embed the corpus with it (cost: load time, throughput, sizes)
    runs: dict[str, ModelRun] = {}
    for c in contenders:
        if c.model is not None and c.model not in runs:
            steps.step(c.label, "loading")
            run = load_run(ModelSpec(c.label, c.model), device=device, options=options)
            steps.step(c.label, "embedding the corpus")
            started = time.perf_counter()
            run.doc_vectors = run.embedder.embed([d.text for d in docs], progress=progress, desc=f"{c.model}: corpus")
            run.embed_seconds = time.perf_counter() - started
            runs[c.model] = run

    for name, label, higher, unit in (
        ("docs_per_second", f"{'embedding' if all_dense else 'indexing'} throughput (documents/s)", True, "docs/s"),
        ("model_bytes", "model size on disk", False, "bytes"),
        ("dimension", "vector dimension", None, ""),
        ("index_bytes", "index memory (exact Flat)" if all_dense else "index size (exact Flat, lexical)", False, "bytes"),
        (
            "query_ms",
            "query time (ms/query; batch embed + exact search)" if all_dense else "query time (ms/query; one batch)",
            False,
            "ms",
        ),
    ):
        metrics[name] = metric(label, "cost", higher, unit)
    labels = retrieval_labels(k, trec=beir is not None)
    retrieval_names = tuple(labels)
    for name, label in labels.items():
        metrics[name] = metric(label if queries else name, "retrieval", True)
    beir_runs = {} if beir_runs is None else beir_runs

    idx = bootstrap_indices(len(queries), resamples, seed) if queries else None
    per_query: dict[str, dict[str, np.ndarray]] = {}
    rankings: dict[str, list[list[str]]] = {}
    built_for: dict[str, Any] = {}
    with SearchCollections(docs) as searchers:
        for c in contenders:
            run = runs.get(c.model) if c.model is not None else None
            if not c.dense:
                steps.step(c.label, "building its collection")
                built_for[c.label] = searchers.get(run)
            _cost_cells(c, run, built_for.get(c.label), metrics, len(docs), all_dense)
            if not queries:
                empty(metrics["query_ms"], c.label, "no queries to time")
                for name in retrieval_names:
                    empty(metrics[name], c.label, "no labelled queries: pass --queries or --label-field")
                steps.done()
                continue
            steps.step(c.label, "retrieval")
            if beir is not None:
                beir_runs[c.label] = scored = beir_run.score(c, run, searchers, queries, doc_ids, k, built_for.get(c.label))
                rankings[c.label], ms = scored.top(k), scored.ms_per_query
                per_query[c.label] = beir_run.report_metrics(scored.per_query, k)
            else:
                rankings[c.label], ms = rank(c, run, searchers, queries, doc_ids, k, timed=not label_field)
                per_query[c.label] = ranking_metrics(rankings[c.label], [q.relevant for q in queries], k)
            if label_field:
                why = "already embedded" if c.model else "whole documents, unlike typed queries"
                empty(metrics["query_ms"], c.label, f"label mode: the queries are corpus documents ({why}), not timed")
            else:
                metrics["query_ms"]["values"][c.label] = value(ms, note=_query_note(c))
            for name, values in per_query[c.label].items():
                metrics[name]["values"][c.label] = value(*bootstrap_ci(values, idx))
            steps.done()

        # ---- word level and Lee document similarity: properties of the model, not of the corpus
        word_pairs = {}
        if word_level:
            word_pairs = model_sections.word_level(contenders, runs, metrics, report, resamples, steps.step)
        if docsim:
            model_sections.document_similarity(contenders, runs, metrics, steps.step)
        _pick_all(metrics, per_query, word_pairs, idx, resamples, seed)
        report["pareto"] = tradeoff(report)

        if len(contenders) >= 2:
            by_label = {c.label: c for c in contenders}

            def pseudo_rank(c: Contender, pseudo: list[Query]) -> list[list[str]]:
                return rank(by_label[c.label], runs.get(c.model), searchers, pseudo, doc_ids, k, timed=False)[0]

            report["agreement"] = model_sections.agreement(
                contenders, runs, rankings, pseudo_rank, docs, k, agreement_pairs, seed
            )
    if queries and len(contenders) >= 2:
        report["disagreements"] = model_sections.disagreements(queries, per_query, rankings, k)
    if queries:
        report["examples"] = example_hits(queries, rankings, {d.id: d.text for d in docs})
        report["missed"] = missed_queries(queries, rankings, best_model(metrics[f"ndcg@{k}"]), k)

    # ---- 2-D maps of a sample of documents
    steps.step("all", "2-D maps")
    report["map"] = model_sections.maps(contenders, runs, docs, queries, label_field, color_field, map_sample, map_method, seed)
    steps.close()
    report["models"] = [_model_entry(c, runs.get(c.model) if c.model else None, built_for.get(c.label)) for c in contenders]
    report["notes"] += _notes(contenders, label_field, report)
    if beir is not None:
        report["settings"]["queries"]["mode"] = "beir"
        report["beir"] = beir_run.report_section(beir, beir_runs)
        report["notes"] += [beir_run.METHOD_NOTE.format(depth=report["beir"]["depth"]), *beir.notes()]
    report["recommendation"] = recommend(report) if queries else None
    return report


def _skeleton(docs, queries, corpus_name, queries_name, label_field, k, resamples, seed, device, options) -> dict[str, Any]:
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "models",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "k": k,
            "bootstrap_resamples": resamples,
            "confidence": 0.95,
            "seed": seed,
            "device": device or "auto",
            "word_model_options": options,
            "corpus": {"name": corpus_name, "documents": len(docs), "fingerprint": fingerprint_documents(docs)},
            "queries": None,
        },
        "versions": library_versions(),
        "models": [],
        "metrics": {},
        "analogy_sections": {},
        "notes": [],
    }
    if queries:
        report["settings"]["queries"] = {
            "source": queries_name or (f"label field {label_field!r}" if label_field else "given"),
            "mode": "label" if label_field else "queries",
            "count": len(queries),
            "mean_relevant": float(np.mean([len(q.relevant) for q in queries])),
            "fingerprint": fingerprint_queries(queries),
        }
    return report


def library_versions() -> dict[str, str]:
    from embedsearch.versions import library_versions

    return library_versions("faiss", "torch", "sentence-transformers", "gensim", "fasttext", "scipy")


def _cost_cells(c: Contender, run: ModelRun | None, built, metrics: dict, n: int, all_dense: bool) -> None:
    """docs/s, model size, dimension and index bytes for one contender (see COST_NOTES)."""
    values = {name: metrics[name]["values"] for name in ("docs_per_second", "model_bytes", "dimension", "index_bytes")}
    if c.dense:
        note = None if all_dense else "embedding the corpus only"
        values["docs_per_second"][c.label] = value(n / max(run.embed_seconds, 1e-9), **({"note": note} if note else {}))
        values["model_bytes"][c.label] = value(run.size_bytes)
        values["dimension"][c.label] = value(run.dim)
        values["index_bytes"][c.label] = value(flat_bytes(run))
        return
    lex = built.lexical_bytes
    if run is None:
        values["docs_per_second"][c.label] = value(
            n / max(built.index_seconds, 1e-9), note="adding the corpus to a collection with a lexical index; no embedding"
        )
        values["model_bytes"][c.label] = value(0, note="no model")
        empty(metrics["dimension"], c.label, "bm25 has no vectors")
        if lex is None:
            empty(metrics["index_bytes"], c.label, "the database does not report the lexical index's size")
        else:
            values["index_bytes"][c.label] = value(lex, note="the lexical index in the database")
        return
    seconds = run.embed_seconds + built.index_seconds
    values["docs_per_second"][c.label] = value(
        n / max(seconds, 1e-9),
        note=f"embedding ({run.embed_seconds:.2f} s) + adding to a collection with a lexical index ({built.index_seconds:.2f} s)",
    )
    values["model_bytes"][c.label] = value(run.size_bytes)
    values["dimension"][c.label] = value(run.dim)
    flat = flat_bytes(run)
    if lex is None:
        values["index_bytes"][c.label] = value(flat, note="exact Flat only: the database does not report the lexical size")
    else:
        values["index_bytes"][c.label] = value(flat + lex, note=f"exact Flat {flat} + lexical index {lex} bytes")


def _query_note(c: Contender) -> str | None:
    if c.mode == "lexical":
        return "lexical search through embedsearch.search (no embedding)"
    if c.mode == "hybrid":
        return f"hybrid search through embedsearch.search: batch embed, FAISS Flat, lexical, {c.fusion_text()}"
    return None


def _pick_all(metrics: dict, per_query: dict, word_pairs: dict, idx, resamples: int, seed: int) -> None:
    """The best contender of every metric, with paired tests where there are pairs to test."""
    from embedsearch.evaluation.metrics import paired_difference, paired_spearman_difference

    retrieval_names = set(next(iter(per_query.values()), {}))
    for name, entry in metrics.items():
        test = None
        if name in retrieval_names:
            test = lambda best, m, n=name: paired_difference(per_query[best][n], per_query[m][n], idx)  # noqa: E731
        elif name in word_pairs:
            pairs = word_pairs[name]
            test = lambda best, m, p=pairs: paired_spearman_difference(  # noqa: E731
                p[best][0], p[m][0], p[best][1], resamples=resamples, seed=seed
            )
        pick_best(entry, test)


def _model_entry(c: Contender, run: ModelRun | None, built) -> dict[str, Any]:
    return {
        "label": c.label,
        "spec": c.spec,
        "kind": c.describe(run.kind if run else None),
        "mode": c.mode,
        "model": c.model,
        "fusion": {"fusion": c.fusion, "alpha": c.alpha} if c.mode == "hybrid" else None,
        "dim": run.dim if run else None,
        "fingerprint": run.fingerprint if run else "bm25-sqlite-fts5",
        "size_bytes": run.size_bytes if run else 0,
        "load_seconds": round(run.load_seconds, 3) if run else 0.0,
        "embed_seconds": round(run.embed_seconds, 3) if run else 0.0,
        "index_seconds": round(built.index_seconds, 3) if built else None,
        "config": run.embedder.config() if run else {"lexical": "SQLite FTS5 bm25(), k1 1.2, b 0.75"},
    }


def _notes(contenders: list[Contender], label_field: str | None, report: dict) -> list[str]:
    """What the reader needs to know to read a report with search-mode contenders."""
    others = [c.label for c in contenders if not c.dense]
    if not others:
        return []
    notes = list(COST_NOTES)
    notes.append(
        f"Not measured for {', '.join(others)} (search modes, not models): word benchmarks, Lee document "
        "similarity, similarity-score agreement and the 2-D map belong to a model's vectors; neighbour "
        "overlap, retrieval and the speed/quality chart include them."
    )
    lexical = [c.label for c in contenders if c.mode == "lexical"]
    if len(lexical) > 1:
        notes.append(
            f"{', '.join(lexical)} rank identically: lexical search never uses a model's vectors; "
            "they differ only in what building their collection costs."
        )
    if label_field:
        notes.append(
            "Label mode: a document used as a query searches the lexical index with its first 64 distinct words "
            "(the lexical query limit); the dense side uses its embedding."
        )
    return notes


class _Steps:
    """Progress over the comparison's stages (stderr; embedsearch.progress says how it shows)."""

    def __init__(self, contenders: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from embedsearch.progress import bar as progress_bar

            self.bar = progress_bar(contenders, "compare", "contender", leave=True)

    def step(self, label: str, what: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{label}: {what}")

    def done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
