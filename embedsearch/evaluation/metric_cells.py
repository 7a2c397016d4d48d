"""The report's metric entries: one per metric, a value (and interval) per contender or the
reason it has none, and the best contender with those statistically tied with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def metric(label: str, group: str, higher: bool | None, unit: str = "") -> dict[str, Any]:
    return {"label": label, "group": group, "higher_is_better": higher, "unit": unit, "values": {}, "why_empty": {}}


def retrieval_labels(k: int, *, trec: bool = False) -> dict[str, str]:
    """The retrieval metrics' names and labels: recall capped at the relevant count (query files,
    label mode), or, on a BEIR set (``trec``), trec_eval's recall, graded nDCG and MAP too."""
    if trec:
        names = (f"recall@{k} (of all relevant)", f"MRR@{k}", f"nDCG@{k} (graded)", f"MAP@{k}")
        return dict(zip((f"recall@{k}", f"mrr@{k}", f"ndcg@{k}", f"map@{k}"), names, strict=True))
    return {f"recall@{k}": f"recall@{k} (capped)", f"mrr@{k}": f"MRR@{k}", f"ndcg@{k}": f"nDCG@{k}"}


def value(v: float | None, low: float | None = None, high: float | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"value": v}
    if low is not None:
        out["low"], out["high"] = low, high
    out.update(extra)
    return out


def empty(entry: dict[str, Any], label: str, why: str) -> None:
    entry["values"][label] = None
    entry["why_empty"][label] = why


def pick_best(entry: dict[str, Any], paired_test: Callable[[str, str], dict[str, Any]] | None = None) -> None:
    """Name the best contender; with a paired test (best, other) -> {"significant": ...}, also
    those statistically tied with it (the interval of the difference includes zero)."""
    higher = entry["higher_is_better"]
    scored = {m: v["value"] for m, v in entry["values"].items() if v is not None and v.get("value") is not None}
    entry["best"], entry["tied_with_best"] = None, []
    if higher is None or len(scored) < 2:
        return
    best = max(scored, key=lambda m: scored[m] if higher else -scored[m])
    if len(set(scored.values())) == 1:
        return  # every contender scores the same: nobody is best
    entry["best"] = best
    if paired_test is None:
        entry["tied_with_best"] = [m for m in scored if m != best and scored[m] == scored[best]]
        return
    for m in scored:
        if m == best:
            continue
        diff = paired_test(best, m)
        entry["values"][m]["vs_best"] = diff
        if not diff["significant"]:
            entry["tied_with_best"].append(m)
