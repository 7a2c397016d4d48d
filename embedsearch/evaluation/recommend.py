"""The comparison's last word: which contender to use, with its interval and cost, and the command
that makes it a collection's default.

The best contender by the primary metric (nDCG@k) is recommended, unless a cheaper one (fewer
ms/query) is statistically tied with it (the paired bootstrap over queries finds no difference):
then the cheapest tied one is, and the best is named as the alternative. A model's search-mode
contender (``MODEL+hybrid:relative:0.9``) turns into ``embedsearch index alter COLLECTION
--default-mode hybrid --fusion relative --alpha 0.9``; a plain model into ``--default-mode dense``.
"""

from __future__ import annotations

from typing import Any


def _cost(report: dict[str, Any], label: str) -> float | None:
    cell = report["metrics"].get("query_ms", {}).get("values", {}).get(label)
    return None if not cell else cell.get("value")


def alter_command(model: dict[str, Any]) -> str | None:
    """The ``index alter`` line that makes a contender's mode a collection's default (with
    ``--lexical``, which builds the lexical index a lexical or hybrid mode needs, or keeps it)."""
    if model["model"] is None:
        return "embedsearch index alter COLLECTION --lexical --default-mode lexical"
    parts = ["embedsearch index alter COLLECTION"] + (["--lexical"] if model["mode"] != "dense" else [])
    parts.append(f"--default-mode {model['mode']}")
    fusion = model.get("fusion") or {}
    if model["mode"] == "hybrid" and fusion.get("fusion"):
        parts.append(f"--fusion {fusion['fusion']}")
        if fusion.get("alpha") is not None:
            parts.append(f"--alpha {fusion['alpha']:g}")
    return " ".join(parts)


def recommend(report: dict[str, Any]) -> dict[str, Any] | None:
    """``{"label", "metric", "value", "low", "high", "query_ms", "why", "command", "alternative"}``,
    or None without labelled queries or when every contender scores the same."""
    k = report["settings"]["k"]
    name = f"ndcg@{k}"
    entry = report["metrics"].get(name)
    if not entry or not entry.get("best"):
        return None
    best = entry["best"]
    candidates = [best, *entry.get("tied_with_best", [])]
    costed = [c for c in candidates if _cost(report, c) is not None]
    pick = min(costed, key=lambda c: _cost(report, c)) if len(costed) == len(candidates) else best
    cell = entry["values"][pick]
    models = {m["label"]: m for m in report["models"]}
    ms = _cost(report, pick)
    if pick == best:
        why = f"the best {entry['label']}"
        if len(candidates) > 1:
            why += f"; {', '.join(c for c in candidates if c != best)} not significantly different"
    else:
        why = (
            f"statistically tied with the best, {best} ({entry['values'][best]['value']:.3f}), "
            f"at {ms:.2f} against {_cost(report, best):.2f} ms/query"
        )
    return {
        "label": pick,
        "metric": entry["label"],
        "value": cell["value"],
        "low": cell.get("low"),
        "high": cell.get("high"),
        "query_ms": ms,
        "why": why,
        "command": alter_command(models[pick]),
        "model": models[pick]["model"],
        "alternative": None if pick == best else best,
    }


def sentence(rec: dict[str, Any]) -> str:
    """The recommendation in one paragraph (Markdown, HTML and the terminal)."""
    interval = "" if rec["low"] is None else f" [{rec['low']:.3f}, {rec['high']:.3f}]"
    cost = "" if rec["query_ms"] is None else f", {rec['query_ms']:.2f} ms/query"
    out = f"Use {rec['label']}: {rec['metric']} {rec['value']:.3f}{interval}{cost} ({rec['why']})."
    if rec["command"]:
        of = "a collection" if not rec.get("model") else f"a collection of {rec['model']} (`index create --model {rec['model']}`)"
        out += f" To make its mode the default of {of}: `{rec['command']}`."
    return out
