"""Concrete cases behind the averages: what each model returns for a few queries, and the
queries the best model finds nothing relevant for."""

from __future__ import annotations

from typing import Any


def snippet(text: str, limit: int = 140) -> str:
    """The text on one line, cut at a word boundary near ``limit`` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] or flat[:limit]
    return cut + " …"


def example_hits(
    queries, rankings: dict[str, list[list[str]]], texts: dict[str, str], *, count: int = 3, top: int = 3
) -> list[dict[str, Any]]:
    """Each model's top ``top`` documents for the first ``count`` queries, relevant ones marked."""
    out = []
    for qi, q in enumerate(queries[:count]):
        hits = {
            label: [{"id": d, "relevant": d in q.relevant, "snippet": snippet(texts[d])} for d in ranked[qi][:top]]
            for label, ranked in rankings.items()
        }
        out.append({"query_id": q.id, "query": snippet(q.text, 200), "relevant": len(q.relevant), "hits": hits})
    return out


def best_model(metric: dict[str, Any]) -> str | None:
    """The metric's best model; when none is named (one model, or all equal), the first with
    the top value."""
    if metric.get("best"):
        return metric["best"]
    scored = [(label, v["value"]) for label, v in metric["values"].items() if v is not None and v.get("value") is not None]
    return max(scored, key=lambda lv: lv[1])[0] if scored else None


def missed_queries(queries, rankings: dict[str, list[list[str]]], model: str, k: int, *, limit: int = 20) -> dict[str, Any]:
    """The queries for which ``model`` has no relevant document in its top ``k``, with the
    other models that do find one (at most ``limit`` listed; ``count`` is all of them)."""
    missed = [qi for qi, ranked in enumerate(rankings[model]) if not queries[qi].relevant.intersection(ranked[:k])]
    listed = []
    for qi in missed[:limit]:
        q = queries[qi]
        found_by = [m for m, ranked in rankings.items() if m != model and q.relevant.intersection(ranked[qi][:k])]
        listed.append({"query_id": q.id, "query": snippet(q.text, 200), "relevant": len(q.relevant), "found_by": found_by})
    return {"model": model, "k": k, "count": len(missed), "of": len(queries), "queries": listed}
