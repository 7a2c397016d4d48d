"""The report's sections about models' vectors rather than about search: word benchmarks, Lee
document similarity, agreement between contenders, the queries they disagree on, and 2-D maps.

Word benchmarks, Lee similarity, similarity-score agreement and maps are properties of a
model's vectors. A dense contender has them; a lexical or hybrid contender is a search mode over
a model's collection (or, bm25, over no model at all), so those cells stay empty with the reason,
and the model's figures are its dense contender's. Neighbour overlap (Jaccard@k) is about
rankings and includes every contender.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from embedsearch.errors import InvalidArgument
from embedsearch.evaluation.contenders import Contender, ModelRun
from embedsearch.evaluation.metric_cells import empty, metric, value
from embedsearch.evaluation.query_sets import Query, document_queries

WORD_METRICS = ("wordsim353", "simlex999", "google_analogy", "google_analogy_semantic", "google_analogy_syntactic")


def not_a_model(c: Contender, contenders: list[Contender], what: str) -> str:
    """Why a non-dense contender has no ``what``."""
    if c.model is None:
        return f"bm25 has no vectors, so no {what}"
    dense = [d.label for d in contenders if d.dense and d.model == c.model]
    where = f"see {dense[0]}" if dense else f"add {c.model} as a contender to measure it"
    return f"a search mode, not a model: {what} belongs to {c.model}'s vectors ({where})"


def word_level(
    contenders: list[Contender], runs: dict[str, ModelRun], metrics: dict, report: dict, resamples: int, step: Callable
) -> dict[str, dict[str, tuple]]:
    """Fill the word-level metrics; return each word set's (similarities, human scores) per
    contender for the paired tests."""
    from embedsearch.evaluation.report import word_benchmarks

    for name, label in (
        ("wordsim353", "WordSim-353 (Spearman)"),
        ("simlex999", "SimLex-999 (Spearman)"),
        ("google_analogy", "Google analogies (accuracy)"),
        ("google_analogy_semantic", "Google analogies, semantic sections"),
        ("google_analogy_syntactic", "Google analogies, syntactic sections"),
    ):
        metrics[name] = metric(label, "word", True)
    pairs: dict[str, dict[str, tuple]] = {}
    benches: dict[str, dict] = {}
    for c in contenders:
        if not c.dense:
            for name in WORD_METRICS:
                empty(metrics[name], c.label, not_a_model(c, contenders, "word-level scores"))
            continue
        run = runs[c.model]
        step(c.label, "word benchmarks")
        if run.spec == "hashing":
            for name in WORD_METRICS:
                empty(metrics[name], c.label, "hashing has no notion of word meaning")
            continue
        if run.spec not in benches:
            benches[run.spec] = word_benchmarks(run.spec, run.embedder, resamples=resamples, keep_pairs=True)
        bench = benches[run.spec]
        for name, arrays in bench["pairs"].items():
            pairs.setdefault(name, {})[c.label] = arrays
        for name in ("wordsim353", "simlex999"):
            res = bench["metrics"][name]
            notes = [f"OOV rate {res['oov_rate']:.1%}"]
            if res.get("note"):
                notes.append(res["note"])
            if res["spearman_in_vocab"] is not None and res["in_vocab_pairs"] < res["covered"]:
                notes.append(f"in-vocabulary pairs only: {res['spearman_in_vocab']:.3f}")
            metrics[name]["values"][c.label] = value(
                res["spearman"],
                res.get("spearman_low"),
                res.get("spearman_high"),
                coverage=res["coverage"],
                oov_rate=res["oov_rate"],
                spearman_in_vocab=res["spearman_in_vocab"],
                note="; ".join(notes),
            )
        if "google_analogy" in bench["skipped"]:
            for name in WORD_METRICS[2:]:
                empty(metrics[name], c.label, bench["skipped"]["google_analogy"])
            continue
        res = bench["metrics"]["google_analogy"]
        metrics["google_analogy"]["values"][c.label] = value(
            res["accuracy"], coverage=res["coverage"], note=f"{res['covered']}/{res['questions']} questions covered"
        )
        sections = res["sections"]
        report["analogy_sections"][c.label] = [
            {**s, "accuracy": s["correct"] / s["covered"] if s["covered"] else None} for s in sections
        ]
        for group, pick in (
            ("semantic", lambda s: not s["section"].startswith("gram")),
            ("syntactic", lambda s: s["section"].startswith("gram")),
        ):
            chosen = [s for s in sections if pick(s)]
            covered = sum(s["covered"] for s in chosen)
            metrics[f"google_analogy_{group}"]["values"][c.label] = value(
                sum(s["correct"] for s in chosen) / covered if covered else None,
                coverage=covered / max(1, sum(s["questions"] for s in chosen)),
            )
    return pairs


def document_similarity(contenders: list[Contender], runs: dict[str, ModelRun], metrics: dict, step: Callable) -> None:
    """Lee document similarity (Pearson, Spearman) of each dense contender's model."""
    from embedsearch.evaluation.docsim import lee_document_similarity

    metrics["lee_pearson"] = metric("Lee document similarity (Pearson)", "docsim", True)
    metrics["lee_spearman"] = metric("Lee document similarity (Spearman)", "docsim", True)
    done: dict[str, dict] = {}
    for c in contenders:
        if not c.dense:
            for name in ("lee_pearson", "lee_spearman"):
                empty(metrics[name], c.label, not_a_model(c, contenders, "document similarity"))
            continue
        step(c.label, "Lee document similarity")
        if c.model not in done:
            done[c.model] = lee_document_similarity(runs[c.model].embedder)
        res = done[c.model]
        metrics["lee_pearson"]["values"][c.label] = value(res["pearson"], pairs=res["pairs"])
        metrics["lee_spearman"]["values"][c.label] = value(res["spearman"], pairs=res["pairs"])


def agreement(
    contenders: list[Contender],
    runs: dict[str, ModelRun],
    rankings: dict[str, list[list[str]]],
    rank: Callable[[Contender, list[Query]], list[list[str]]],
    docs: list,
    k: int,
    pairs: int,
    seed: int,
) -> dict[str, Any]:
    """Jaccard@k of every two contenders' top-k lists (over the queries; without a query set,
    over a sample of documents as queries, ranked by ``rank``) and the Spearman correlation of
    dense contenders' similarity scores on sampled document pairs (None for the others)."""
    from embedsearch.evaluation.metrics import mean_jaccard, spearman

    rng = np.random.default_rng(seed)
    n = len(docs)
    m = min(pairs, n * (n - 1) // 2)
    a = rng.integers(0, n, size=m * 2)
    b = rng.integers(0, n, size=m * 2)
    keep = a != b
    a, b = a[keep][:m], b[keep][:m]
    scores = {}
    for c in contenders:
        if c.dense:
            v = runs[c.model].doc_vectors
            scores[c.label] = (v[a] * v[b]).sum(axis=1)
    if not rankings:  # no query set: the documents themselves (a sample) are the queries
        pseudo = document_queries(docs, sorted(rng.choice(n, min(n, 200), replace=False).tolist()))
        rankings = {c.label: rank(c, pseudo) for c in contenders}
    labels = [c.label for c in contenders]
    jac = [[mean_jaccard(rankings[x], rankings[y]) for y in labels] for x in labels]
    rho = [[spearman(scores[x], scores[y]) if x in scores and y in scores else None for y in labels] for x in labels]
    return {
        "models": labels,
        f"jaccard@{k}": jac,
        "score_spearman": rho,
        "neighbour_queries": len(next(iter(rankings.values()))),
        "score_pairs": int(len(a)),
    }


def disagreements(queries: list[Query], per_query: dict, rankings: dict, k: int, top: int = 8) -> list[dict[str, Any]]:
    """The queries on which the contenders' nDCG differs most, with each one's first relevant
    rank: the concrete cases behind a difference in the averages."""
    name = f"ndcg@{k}"
    labels = list(per_query)
    scores = np.array([per_query[m][name] for m in labels])  # (contenders, queries)
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


def umap_2d(x: np.ndarray, seed: int) -> np.ndarray:
    try:
        import umap  # noqa: F401  (optional; not a dependency)
    except ImportError:
        raise InvalidArgument("--map umap needs the umap-learn package (pip install umap-learn); PCA needs nothing") from None
    import umap

    return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)


def maps(
    contenders: list[Contender], runs: dict[str, ModelRun], docs, queries, label_field, color_field, sample, method, seed
) -> dict[str, Any]:
    """Each dense contender's 2-D map of a seeded sample of documents (search modes have no map
    of their own: a hybrid contender's vectors are its model's)."""
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
    out: dict[str, Any] = {"method": method, "colour_by": colour_by, "ids": [docs[i].id for i in chosen], "colours": colours}
    out["models"] = {}
    for c in contenders:
        if not c.dense:
            continue
        x = runs[c.model].doc_vectors[chosen]
        if method == "umap":
            coords, share = umap_2d(x, seed), None
        else:
            coords, share = pca_2d(x)
        out["models"][c.label] = {
            "x": [round(float(v), 5) for v in coords[:, 0]],
            "y": [round(float(v), 5) for v in coords[:, 1]],
            "explained_variance": share,
        }
    return out
