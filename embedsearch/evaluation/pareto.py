"""Quality against speed: which models no other model beats on both at once (the Pareto front).

A model is dominated when another is at least as fast and at least as good, and strictly better
on one of the two; the rest form the front. Two models with the same figures do not dominate
each other, so both stay on the front.
"""

from __future__ import annotations

from typing import Any

X_METRIC = "docs_per_second"


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` is at least as fast and as good as ``b``, and strictly better on one."""
    return a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])


def pareto_front(points: dict[str, tuple[float, float]]) -> tuple[list[str], dict[str, list[str]]]:
    """The non-dominated labels ordered by speed, and each dominated label's dominators.

    ``points`` maps a label to (speed, quality), both higher-is-better."""
    beaten = {a: [b for b in points if b != a and dominates(points[b], points[a])] for a in points}
    front = sorted((a for a in points if not beaten[a]), key=lambda a: (points[a][0], -points[a][1]))
    return front, {a: by for a, by in beaten.items() if by}


def quality_metric(report: dict[str, Any]) -> str | None:
    """The report's primary quality metric: nDCG@k when there are labelled queries, else Lee
    document similarity (Spearman); None when neither was measured."""
    metrics = report["metrics"]
    for name in (f"ndcg@{report['settings']['k']}", "lee_spearman"):
        values = (metrics.get(name) or {}).get("values", {})
        if any(v is not None and v.get("value") is not None for v in values.values()):
            return name
    return None


def _value(metric: dict[str, Any], label: str) -> float | None:
    v = metric["values"].get(label)
    return None if v is None else v.get("value")


def tradeoff(report: dict[str, Any]) -> dict[str, Any] | None:
    """The report's ``pareto`` section: every model with both figures, and the front."""
    y_name = quality_metric(report)
    if y_name is None or X_METRIC not in report["metrics"]:
        return None
    x_metric, y_metric = report["metrics"][X_METRIC], report["metrics"][y_name]
    points = {}
    for label in x_metric["values"]:
        x, y = _value(x_metric, label), _value(y_metric, label)
        if x is not None and y is not None:
            points[label] = (float(x), float(y))
    if not points:
        return None
    front, beaten = pareto_front(points)
    return {
        "x": X_METRIC,
        "y": y_name,
        "points": {label: {"x": x, "y": y} for label, (x, y) in points.items()},
        "front": front,
        "dominated_by": beaten,
    }


def front_sentence(pareto: dict[str, Any]) -> str:
    """One sentence naming the front and, for the others, a model that beats them."""
    text = f"On the front: {', '.join(pareto['front'])}."
    if pareto["dominated_by"]:
        beaten = "; ".join(f"{a} (by {', '.join(by)})" for a, by in pareto["dominated_by"].items())
        text += f" Beaten on both speed and quality: {beaten}."
    return text
