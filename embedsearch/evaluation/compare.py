"""Compare several embedding models on one corpus: which should I use, and what does each cost?

:func:`compare_models` embeds the corpus with every model and measures, where each applies:
word-level benchmarks, Lee document similarity, retrieval on a labelled query set (or a label
field) with bootstrap intervals and paired tests against the best model, agreement between
models, and cost. It returns the report as plain data (the JSON schema in
``report_schema.json``); :mod:`embedsearch.evaluation.render` turns it into HTML and Markdown.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.corpus import Document
from embedsearch.errors import CorpusError, InvalidArgument
from embedsearch.evaluation.examples import best_model, example_hits, missed_queries
from embedsearch.evaluation.pareto import tradeoff

SCHEMA = "embedsearch.compare/1"


@dataclass
class Query:
    """A query, the ids relevant to it, and (label mode) the document it came from, which it
    must not retrieve."""

    id: str
    text: str
    relevant: set[str]
    exclude: str | None = None
    doc_index: int | None = None  # label mode: the query is this document's own embedding


@dataclass
class ModelSpec:
    label: str
    spec: str

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``LABEL=SPEC`` or ``SPEC`` (labelled by its directory name)."""
        label, sep, spec = text.partition("=")
        if not sep:
            spec, label = text, Path(text.rstrip("/")).name or text
        if not label or not spec:
            raise InvalidArgument(f"bad model {text!r}; use SPEC or LABEL=SPEC")
        return cls(label, spec)


@dataclass
class ModelRun:
    """One model's embeddings of the corpus and what producing them cost."""

    label: str
    spec: str
    kind: str
    embedder: Any
    dim: int
    fingerprint: str
    size_bytes: int
    load_seconds: float
    doc_vectors: np.ndarray = field(repr=False, default=None)
    embed_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- inputs


def fingerprint_documents(docs: Sequence[Document]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(d.id.encode() + b"\0" + d.text.encode() + b"\0")
    return h.hexdigest()


def read_queries(path: Path, doc_ids: set[str]) -> list[Query]:
    """A labelled query set: one ``{"query": ..., "relevant": [ids], "id": optional}`` per line.
    Every relevant id must be in the corpus, so a typo cannot silently lower a score."""
    queries: list[Query] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise CorpusError(f"{where}: expected an object with 'query' and 'relevant'")
        text, rel = rec.get("query"), rec.get("relevant")
        if not isinstance(text, str) or not text.strip():
            raise CorpusError(f"{where}: 'query' must be a non-empty string")
        if not isinstance(rel, list) or not rel or not all(isinstance(r, str | int) for r in rel):
            raise CorpusError(f"{where}: 'relevant' must be a non-empty list of document ids")
        rel_ids = {str(r) for r in rel}
        unknown = sorted(rel_ids - doc_ids)
        if unknown:
            shown = ", ".join(unknown[:5]) + (" …" if len(unknown) > 5 else "")
            raise CorpusError(f"{where}: relevant ids not in the corpus: {shown}")
        queries.append(Query(str(rec.get("id", f"q{n}")), text, rel_ids))
    if not queries:
        raise CorpusError(f"{path}: no queries")
    return queries


def label_queries(docs: Sequence[Document], label_field: str, *, max_queries: int = 500, seed: int = 0) -> list[Query]:
    """Every document (or a seeded sample) queries the others; those sharing its label are relevant."""
    labels = []
    for d in docs:
        value = d.metadata.get(label_field)
        if value is None or value == "":
            raise CorpusError(f"document {d.id} has no {label_field!r} metadata; every document needs a label")
        labels.append(str(value))
    by_label: dict[str, set[str]] = {}
    for d, lab in zip(docs, labels, strict=True):
        by_label.setdefault(lab, set()).add(d.id)
    if len(by_label) < 2:
        raise CorpusError(f"--label-field {label_field}: all documents share one label; retrieval needs two or more")
    candidates = [i for i, lab in enumerate(labels) if len(by_label[lab]) > 1]
    if len(candidates) > max_queries:
        candidates = sorted(np.random.default_rng(seed).choice(candidates, max_queries, replace=False).tolist())
    return [
        Query(docs[i].id, docs[i].text, by_label[labels[i]] - {docs[i].id}, exclude=docs[i].id, doc_index=i) for i in candidates
    ]


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_models(specs: list[ModelSpec], options: dict[str, Any]) -> None:
    """Every model must exist and look loadable before the first one loads (each takes seconds)."""
    from embedsearch.embedders import check_model
    from embedsearch.evaluation.report import word_model_dir

    for ms in specs:
        check_model(ms.spec, options if word_model_dir(ms.spec) is not None else None)


def load_run(ms: ModelSpec, *, device: str | None, options: dict[str, Any]) -> ModelRun:
    from embedsearch.embedders import load_embedder
    from embedsearch.evaluation.report import word_model_dir

    word_dir = word_model_dir(ms.spec)
    started = time.perf_counter()
    embedder = load_embedder(ms.spec, device=device, cache=False, options=options if word_dir is not None else None)
    load_seconds = time.perf_counter() - started
    backend = embedder.config().get("backend")
    if backend in ("onnx", "int8"):  # the exported model that runs, not the weights it came from
        size, kind = _dir_size(embedder.entry), f"sentence model ({'ONNX fp32' if backend == 'onnx' else 'ONNX int8'})"
    elif ms.spec == "minilm":
        from embedsearch.embedders.sentence import bundled_minilm_path

        size, kind = _dir_size(bundled_minilm_path()), "sentence model"
    elif embedder.config().get("kind") == "static":
        size, kind = _dir_size(Path(ms.spec)), "static (distilled)"
    elif ms.spec == "hashing":
        size, kind = 0, "hashing (no weights)"
    else:
        size = _dir_size(Path(ms.spec))
        kind = "word vectors" if word_dir is not None else "sentence model"
    return ModelRun(ms.label, ms.spec, kind, embedder, int(embedder.dim), embedder.fingerprint, size, load_seconds)


# --------------------------------------------------------------------------- measuring


def _flat_index(vectors: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def _run_index(run: ModelRun):
    """The model's exact index over the corpus, built once (the query timing must not include it)."""
    if "index" not in run.extra:
        run.extra["index"] = _flat_index(run.doc_vectors)
    return run.extra["index"]


def _rank(run: ModelRun, queries: list[Query], q_vectors: np.ndarray, doc_ids: list[str], k: int) -> list[list[str]]:
    """Top-k document ids per query by exact inner product (cosine: vectors are unit length)."""
    index = _run_index(run)
    extra = 1 if any(q.exclude for q in queries) else 0
    _, idx = index.search(np.ascontiguousarray(q_vectors, dtype=np.float32), min(k + extra, len(doc_ids)))
    ranked = []
    for q, row in zip(queries, idx, strict=True):
        ids = [doc_ids[j] for j in row if j >= 0 and doc_ids[j] != q.exclude]
        ranked.append(ids[:k])
    return ranked


def _metric(label: str, group: str, higher: bool | None, unit: str = "") -> dict[str, Any]:
    return {"label": label, "group": group, "higher_is_better": higher, "unit": unit, "values": {}, "why_empty": {}}


def _value(value: float | None, low: float | None = None, high: float | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value}
    if low is not None:
        out["low"], out["high"] = low, high
    out.update(extra)
    return out


def _pick_best(metric: dict[str, Any], paired_test: Callable[[str, str], dict[str, Any]] | None = None) -> None:
    """Name the best model; with a paired test (best, other) -> {"significant": ...}, also the
    models statistically tied with it (the interval of the difference includes zero)."""
    higher = metric["higher_is_better"]
    scored = {m: v["value"] for m, v in metric["values"].items() if v is not None and v.get("value") is not None}
    metric["best"], metric["tied_with_best"] = None, []
    if higher is None or len(scored) < 2:
        return
    best = max(scored, key=lambda m: scored[m] if higher else -scored[m])
    if len(set(scored.values())) == 1:
        return  # every model scores the same: nobody is best
    metric["best"] = best
    if paired_test is None:
        metric["tied_with_best"] = [m for m in scored if m != best and scored[m] == scored[best]]
        return
    for m in scored:
        if m == best:
            continue
        diff = paired_test(best, m)
        metric["values"][m]["vs_best"] = diff
        if not diff["significant"]:
            metric["tied_with_best"].append(m)


def _versions() -> dict[str, str]:
    from embedsearch.versions import library_versions

    return library_versions("faiss", "torch", "sentence-transformers", "gensim", "fasttext", "scipy")


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The first two principal components of ``x`` and the share of variance each explains."""
    centred = np.asarray(x, dtype=np.float64) - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    var = s**2
    share = (var[:2] / var.sum()).tolist() if var.sum() > 0 else [0.0, 0.0]
    if coords.shape[1] < 2:  # a 1-d model
        coords = np.column_stack([coords, np.zeros(len(coords))])
        share.append(0.0)
    return coords, share


def _umap_2d(x: np.ndarray, seed: int) -> np.ndarray:
    try:
        import umap  # noqa: F401  (optional; not a dependency)
    except ImportError:
        raise InvalidArgument("--map umap needs the umap-learn package (pip install umap-learn); PCA needs nothing") from None
    import umap

    return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)


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
) -> dict[str, Any]:
    """Measure every model on ``documents`` and return the report (see the module docstring)."""
    from embedsearch.evaluation.metrics import bootstrap_ci, bootstrap_indices, mean_jaccard, ranking_metrics, spearman

    specs = [ModelSpec.parse(m) for m in models]
    labels = [s.label for s in specs]
    if len(specs) < 1:
        raise InvalidArgument("name at least one model")
    if len(set(labels)) != len(labels):
        raise InvalidArgument(f"two models share a label ({', '.join(labels)}); name them LABEL=SPEC")
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
    check_models(specs, options)
    steps = _Steps(len(specs), progress)
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
            "map": {"method": map_method, "sample": min(map_sample, len(docs))},
        },
        "versions": _versions(),
        "models": [],
        "metrics": {},
        "analogy_sections": {},
        "notes": [],
    }
    if queries:
        qhash = hashlib.sha256(json.dumps([[q.id, q.text, sorted(q.relevant)] for q in queries]).encode()).hexdigest()
        report["settings"]["queries"] = {
            "source": queries_name or (f"label field {label_field!r}" if label_field else "given"),
            "mode": "label" if label_field else "queries",
            "count": len(queries),
            "mean_relevant": float(np.mean([len(q.relevant) for q in queries])),
            "fingerprint": qhash,
        }
    metrics = report["metrics"]

    # ---- embed the corpus with every model (cost: load time, throughput, sizes)
    runs: list[ModelRun] = []
    for ms in specs:
        steps.step(ms.label, "loading")
        run = load_run(ms, device=device, options=options)
        steps.step(ms.label, "embedding the corpus")
        started = time.perf_counter()
        run.doc_vectors = run.embedder.embed([d.text for d in docs], progress=progress, desc=f"{ms.label}: corpus")
        run.embed_seconds = time.perf_counter() - started
        runs.append(run)
        steps.done()

    for name, label, higher, unit in (
        ("docs_per_second", "embedding throughput (documents/s)", True, "docs/s"),
        ("model_bytes", "model size on disk", False, "bytes"),
        ("dimension", "vector dimension", None, ""),
        ("index_bytes", "index memory (exact Flat)", False, "bytes"),
        ("query_ms", "query time (ms/query; batch embed + exact search)", False, "ms"),
    ):
        metrics[name] = _metric(label, "cost", higher, unit)

    import faiss

    idx = bootstrap_indices(len(queries), resamples, seed) if queries else None
    per_query: dict[str, dict[str, np.ndarray]] = {}
    rankings: dict[str, list[list[str]]] = {}
    if queries:
        for name, label in ((f"recall@{k}", f"recall@{k} (capped)"), (f"mrr@{k}", f"MRR@{k}"), (f"ndcg@{k}", f"nDCG@{k}")):
            metrics[name] = _metric(label, "retrieval", True)
    else:
        for name in (f"recall@{k}", f"mrr@{k}", f"ndcg@{k}"):
            metrics[name] = _metric(name, "retrieval", True)
            for r in runs:
                metrics[name]["values"][r.label] = None
                metrics[name]["why_empty"][r.label] = "no labelled queries: pass --queries or --label-field"

    for run in runs:
        n = len(docs)
        metrics["docs_per_second"]["values"][run.label] = _value(n / max(run.embed_seconds, 1e-9))
        metrics["model_bytes"]["values"][run.label] = _value(run.size_bytes)
        metrics["dimension"]["values"][run.label] = _value(run.dim)
        index = _run_index(run)
        metrics["index_bytes"]["values"][run.label] = _value(int(faiss.serialize_index(index).size))
        if queries:
            steps.step(run.label, "retrieval")
            if label_field:
                qv = run.doc_vectors[[q.doc_index for q in queries]]
                rankings[run.label] = _rank(run, queries, qv, doc_ids, k)
                metrics["query_ms"]["values"][run.label] = None
                metrics["query_ms"]["why_empty"][run.label] = "label mode: the queries are corpus documents, already embedded"
            else:
                # best of three rounds: the first call of a model can pay one-off costs (thread pools, allocations)
                best = float("inf")
                for _ in range(3):
                    started = time.perf_counter()
                    qv = run.embedder.embed([q.text for q in queries])
                    rankings[run.label] = _rank(run, queries, qv, doc_ids, k)
                    best = min(best, time.perf_counter() - started)
                metrics["query_ms"]["values"][run.label] = _value(best / len(queries) * 1000)
            per_query[run.label] = ranking_metrics(rankings[run.label], [q.relevant for q in queries], k)
            for name, values in per_query[run.label].items():
                mean, low, high = bootstrap_ci(values, idx)
                metrics[name]["values"][run.label] = _value(mean, low, high)
        else:
            metrics["query_ms"]["values"][run.label] = None
            metrics["query_ms"]["why_empty"][run.label] = "no queries to time"

    # ---- word level and Lee document similarity: properties of the model, not of the corpus
    word_pairs = _word_level(runs, metrics, report, resamples, steps) if word_level else {}
    if docsim:
        from embedsearch.evaluation.docsim import lee_document_similarity

        metrics["lee_pearson"] = _metric("Lee document similarity (Pearson)", "docsim", True)
        metrics["lee_spearman"] = _metric("Lee document similarity (Spearman)", "docsim", True)
        for run in runs:
            steps.step(run.label, "Lee document similarity")
            res = lee_document_similarity(run.embedder)
            metrics["lee_pearson"]["values"][run.label] = _value(res["pearson"], pairs=res["pairs"])
            metrics["lee_spearman"]["values"][run.label] = _value(res["spearman"], pairs=res["pairs"])

    from embedsearch.evaluation.metrics import paired_difference, paired_spearman_difference

    retrieval_names = set(next(iter(per_query.values()), {}))
    for name, metric in metrics.items():
        test = None
        if name in retrieval_names:
            test = lambda best, m, n=name: paired_difference(per_query[best][n], per_query[m][n], idx)  # noqa: E731
        elif name in word_pairs:
            pairs = word_pairs[name]
            test = lambda best, m, p=pairs: paired_spearman_difference(  # noqa: E731
                p[best][0], p[m][0], p[best][1], resamples=resamples, seed=seed
            )
        _pick_best(metric, test)
    report["pareto"] = tradeoff(report)

    # ---- agreement between models
    if len(runs) >= 2:
        rng = np.random.default_rng(seed)
        n = len(docs)
        total_pairs = n * (n - 1) // 2
        m = min(agreement_pairs, total_pairs)
        a = rng.integers(0, n, size=m * 2)
        b = rng.integers(0, n, size=m * 2)
        keep = a != b
        a, b = a[keep][:m], b[keep][:m]
        scores = {r.label: (r.doc_vectors[a] * r.doc_vectors[b]).sum(axis=1) for r in runs}
        if not rankings:  # no query set: the documents themselves (a sample) are the queries
            sample = sorted(rng.choice(n, min(n, 200), replace=False).tolist())
            pseudo = [Query(doc_ids[i], docs[i].text, {doc_ids[i]}, exclude=doc_ids[i], doc_index=i) for i in sample]
            for r in runs:
                rankings[r.label] = _rank(r, pseudo, r.doc_vectors[sample], doc_ids, k)
        jac = [[mean_jaccard(rankings[x.label], rankings[y.label]) for y in runs] for x in runs]
        rho = [[spearman(scores[x.label], scores[y.label]) for y in runs] for x in runs]
        report["agreement"] = {
            "models": labels,
            f"jaccard@{k}": jac,
            "score_spearman": rho,
            "neighbour_queries": len(next(iter(rankings.values()))),
            "score_pairs": int(len(a)),
        }
    if queries and len(runs) >= 2:
        report["disagreements"] = _disagreements(queries, per_query, rankings, k)
    if queries:
        report["examples"] = example_hits(queries, rankings, {d.id: d.text for d in docs})
        report["missed"] = missed_queries(queries, rankings, best_model(metrics[f"ndcg@{k}"]), k)

    # ---- 2-D maps of a sample of documents
    steps.step("all", "2-D maps")
    report["map"] = _maps(runs, docs, queries, label_field, color_field, map_sample, map_method, seed)
    steps.close()
    report["models"] = [
        {
            "label": r.label,
            "spec": r.spec,
            "kind": r.kind,
            "dim": r.dim,
            "fingerprint": r.fingerprint,
            "size_bytes": r.size_bytes,
            "load_seconds": round(r.load_seconds, 3),
            "embed_seconds": round(r.embed_seconds, 3),
            "config": r.embedder.config(),
        }
        for r in runs
    ]
    return report


def _word_level(runs: list[ModelRun], metrics: dict, report: dict, resamples: int, steps: _Steps) -> dict[str, dict[str, tuple]]:
    """Fill the word-level metrics; return each word set's (similarities, human scores) per model
    for the paired tests."""
    from embedsearch.evaluation.report import word_benchmarks

    for name, label in (("wordsim353", "WordSim-353 (Spearman)"), ("simlex999", "SimLex-999 (Spearman)")):
        metrics[name] = _metric(label, "word", True)
    for name, label in (
        ("google_analogy", "Google analogies (accuracy)"),
        ("google_analogy_semantic", "Google analogies, semantic sections"),
        ("google_analogy_syntactic", "Google analogies, syntactic sections"),
    ):
        metrics[name] = _metric(label, "word", True)
    pairs: dict[str, dict[str, tuple]] = {}
    for run in runs:
        steps.step(run.label, "word benchmarks")
        if run.spec == "hashing":
            for name in ("wordsim353", "simlex999", "google_analogy", "google_analogy_semantic", "google_analogy_syntactic"):
                metrics[name]["values"][run.label] = None
                metrics[name]["why_empty"][run.label] = "hashing has no notion of word meaning"
            continue
        bench = word_benchmarks(run.spec, run.embedder, resamples=resamples, keep_pairs=True)
        for name, arrays in bench["pairs"].items():
            pairs.setdefault(name, {})[run.label] = arrays
        for name in ("wordsim353", "simlex999"):
            res = bench["metrics"][name]
            notes = [f"OOV rate {res['oov_rate']:.1%}"]
            if res.get("note"):
                notes.append(res["note"])
            if res["spearman_in_vocab"] is not None and res["in_vocab_pairs"] < res["covered"]:
                notes.append(f"in-vocabulary pairs only: {res['spearman_in_vocab']:.3f}")
            metrics[name]["values"][run.label] = _value(
                res["spearman"],
                res.get("spearman_low"),
                res.get("spearman_high"),
                coverage=res["coverage"],
                oov_rate=res["oov_rate"],
                spearman_in_vocab=res["spearman_in_vocab"],
                note="; ".join(notes),
            )
        if "google_analogy" in bench["skipped"]:
            why = bench["skipped"]["google_analogy"]
            for name in ("google_analogy", "google_analogy_semantic", "google_analogy_syntactic"):
                metrics[name]["values"][run.label] = None
                metrics[name]["why_empty"][run.label] = why
            continue
        res = bench["metrics"]["google_analogy"]
        metrics["google_analogy"]["values"][run.label] = _value(
            res["accuracy"], coverage=res["coverage"], note=f"{res['covered']}/{res['questions']} questions covered"
        )
        sections = res["sections"]
        report["analogy_sections"][run.label] = [
            {**s, "accuracy": s["correct"] / s["covered"] if s["covered"] else None} for s in sections
        ]
        for group, pick in (
            ("semantic", lambda s: not s["section"].startswith("gram")),
            ("syntactic", lambda s: s["section"].startswith("gram")),
        ):
            chosen = [s for s in sections if pick(s)]
            covered = sum(s["covered"] for s in chosen)
            metrics[f"google_analogy_{group}"]["values"][run.label] = _value(
                sum(s["correct"] for s in chosen) / covered if covered else None,
                coverage=covered / max(1, sum(s["questions"] for s in chosen)),
            )
    return pairs


def _disagreements(queries: list[Query], per_query: dict, rankings: dict, k: int, top: int = 8) -> list[dict[str, Any]]:
    """The queries on which the models' nDCG differs most, with each model's first relevant rank:
    the concrete cases behind a difference in the averages."""
    name = f"ndcg@{k}"
    labels = list(per_query)
    scores = np.array([per_query[m][name] for m in labels])  # (models, queries)
    spread = scores.max(axis=0) - scores.min(axis=0)
    out = []
    for qi in np.argsort(-spread, kind="stable")[:top]:
        if spread[qi] <= 0:
            break
        q = queries[qi]
        first = {}
        for m in labels:
            ranks = [i + 1 for i, d in enumerate(rankings[m][qi]) if d in q.relevant]
            first[m] = ranks[0] if ranks else None
        out.append(
            {
                "query_id": q.id,
                "query": q.text[:200],
                "relevant": len(q.relevant),
                name: {m: float(per_query[m][name][qi]) for m in labels},
                "first_relevant_rank": first,
            }
        )
    return out


def _maps(runs, docs, queries, label_field, color_field, sample, method, seed) -> dict[str, Any]:
    n = len(docs)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(n, min(sample, n), replace=False).tolist())
    field_name = color_field or label_field
    if field_name:
        colours = [str(docs[i].metadata.get(field_name, "(none)")) for i in chosen]
        colour_by = f"metadata {field_name!r}"
    elif queries:
        topic = {}
        for q in queries:
            for doc in q.relevant:
                topic.setdefault(doc, q.id)
        colours = [topic.get(docs[i].id, "(no query)") for i in chosen]
        colour_by = "the first query each document is relevant to"
    else:
        colours = [str(docs[i].metadata.get("source", "(none)")) for i in chosen]
        colour_by = "metadata 'source'"
    out: dict[str, Any] = {
        "method": method,
        "colour_by": colour_by,
        "ids": [docs[i].id for i in chosen],
        "colours": colours,
        "models": {},
    }
    for r in runs:
        x = r.doc_vectors[chosen]
        if method == "umap":
            coords, share = _umap_2d(x, seed), None
        else:
            coords, share = pca_2d(x)
        out["models"][r.label] = {
            "x": [round(float(v), 5) for v in coords[:, 0]],
            "y": [round(float(v), 5) for v in coords[:, 1]],
            "explained_variance": share,
        }
    return out


class _Steps:
    """A progress bar over the comparison's stages (stderr; silent when not a terminal)."""

    def __init__(self, models: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            from embedsearch.embedders.base import _stderr

            self.bar = tqdm(total=models, desc="compare", unit="model", disable=None, file=_stderr())

    def step(self, label: str, what: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{label}: {what}")

    def done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
