"""Turn a comparison report (plain data) into a self-contained HTML page and Markdown.

The HTML has no scripts and loads nothing: the charts are matplotlib PNGs inlined as data
URIs and the styles are inline, so the file opens offline and can be mailed around.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from embedsearch.evaluation.charts import chart_ann, models_charts
from embedsearch.files import atomic_temp

TEMPLATES = Path(__file__).parent / "templates"
GROUP_TITLES = {
    "retrieval": "Retrieval",
    "word": "Word level",
    "docsim": "Document similarity (Lee)",
    "cost": "Cost",
}


# --------------------------------------------------------------------------- formatting


def format_value(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "bytes":
        v = float(value)
        for suffix in ("B", "KiB", "MiB", "GiB"):
            if v < 1024 or suffix == "GiB":
                return f"{v:.0f} {suffix}" if suffix == "B" else f"{v:.1f} {suffix}"
            v /= 1024
    if unit == "docs/s":
        return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
    if unit == "ms":
        return f"{value:.2f}"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}"


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per metric: each model's cell text, the best model, and its group."""
    models = [m["label"] for m in report["models"]]
    rows = []
    for name, metric in report["metrics"].items():
        cells = []
        for label in models:
            v = metric["values"].get(label)
            if v is None or v.get("value") is None:
                cells.append({"text": "—", "why": metric["why_empty"].get(label, "not computed"), "best": False, "tied": False})
                continue
            text = format_value(v["value"], metric.get("unit", ""))
            if "low" in v:
                text += f" [{format_value(v['low'], metric.get('unit', ''))}, {format_value(v['high'], metric.get('unit', ''))}]"
            cells.append(
                {
                    "text": text,
                    "why": v.get("note") or "",
                    "best": label == metric.get("best"),
                    "tied": label in metric.get("tied_with_best", []),
                }
            )
        best = metric.get("best")
        if best and metric.get("tied_with_best"):
            best_text = f"{best} (tied: {', '.join(metric['tied_with_best'])})"
        else:
            best_text = best or ("—" if metric["higher_is_better"] is not None else "n/a")
        rows.append({"name": name, "label": metric["label"], "group": metric["group"], "cells": cells, "best": best_text})
    order = list(GROUP_TITLES)
    return sorted(rows, key=lambda r: order.index(r["group"]) if r["group"] in order else len(order))


# --------------------------------------------------------------------------- documents


def _environment():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True
    )
    env.filters["fmt"] = format_value
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True)
    return env


def render_html(report: dict[str, Any]) -> str:
    env = _environment()
    if report["kind"] == "ann":
        return env.get_template("ann.html.j2").render(report=report, chart=chart_ann(report))
    rows = summary_rows(report)
    groups = [(GROUP_TITLES.get(g, g), [r for r in rows if r["group"] == g]) for g in GROUP_TITLES]
    groups = [(title, rs) for title, rs in groups if rs]
    empty = [
        (label, report["metrics"][name]["label"], why)
        for name in report["metrics"]
        for label, why in report["metrics"][name]["why_empty"].items()
    ]
    return env.get_template("compare.html.j2").render(report=report, groups=groups, charts=models_charts(report), empty=empty)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    out = []
    if report["kind"] == "ann":
        m = report["model"]
        out.append(f"# ANN index comparison: {m['label']} on {s['corpus']['name']}\n")
        out.append(
            f"{s['corpus']['documents']} documents, {s['queries']['source']}, k = {s['k']}, {s['faiss_threads']} FAISS threads.\n"
        )
        rk = f"recall@{s['k']}"
        rows = [
            [
                x["spec"],
                f"{x[rk]:.3f}",
                f"{x['qps']:,.0f}",
                f"{x['knob']}={x['default_param']}" if x["knob"] else "—",
                f"{x['build_seconds']:.3f}",
                f"{x['bytes_per_vector']:.0f}",
            ]
            for x in report["specs"]
        ]
        out.append(_md_table(["index", f"recall@{s['k']}", "queries/s", "setting", "build s", "bytes/vector"], rows))
        out.append(f"\nExact search: {report['exact']['qps']:,.0f} queries/s.")
        notes = [f"- {x['spec']}: {n}" for x in report["specs"] for n in x["notes"]]
        if notes:
            out.append("\nNotes:\n" + "\n".join(notes))
        return "\n".join(out) + "\n"
    models = [m["label"] for m in report["models"]]
    q = s.get("queries")
    out.append(f"# Embedding comparison on {s['corpus']['name']}\n")
    out.append(
        f"{s['corpus']['documents']} documents"
        + (f"; {q['count']} queries from {q['source']}" if q else "; no query set")
        + f"; k = {s['k']}.\n"
    )
    rows = [
        [r["label"]] + [c["text"] + (" **best**" if c["best"] else " ≈" if c["tied"] else "") for c in r["cells"]] + [r["best"]]
        for r in summary_rows(report)
    ]
    out.append(_md_table(["metric", *models, "best"], rows))
    out.append(
        "\nIntervals are 95% bootstrap intervals. ≈: not significantly different from the best "
        "(paired bootstrap over queries, or over word pairs)."
    )
    empty = [
        f"- {label}, {report['metrics'][n]['label']}: {why}"
        for n in report["metrics"]
        for label, why in report["metrics"][n]["why_empty"].items()
    ]
    if empty:
        out.append("\nEmpty cells:\n" + "\n".join(empty))
    if report.get("notes"):
        out.append("\n## Notes\n\n" + "\n".join(f"- {n}" for n in report["notes"]))
    if report.get("disagreements"):
        k = s["k"]
        out.append("\n## Queries where the models differ most\n")
        drows = [
            [d["query"][:80]] + [f"{d[f'ndcg@{k}'][m]:.2f} (first {d['first_relevant_rank'][m] or '—'})" for m in models]
            for d in report["disagreements"]
        ]
        out.append(_md_table(["query", *models], drows))
    out += _md_cases(report)
    if report.get("recommendation"):
        from embedsearch.evaluation.recommend import sentence

        out.append("\n## Recommendation\n\n" + sentence(report["recommendation"]))
    out.append("\n## Models\n")
    out.append(
        _md_table(
            ["model", "spec", "kind", "dim", "fingerprint"],
            [[m["label"], m["spec"], m["kind"], format_value(m["dim"]), m["fingerprint"][:16]] for m in report["models"]],
        )
    )
    return "\n".join(out) + "\n"


def _md_cases(report: dict[str, Any]) -> list[str]:
    """The Markdown sections after the tables: the Pareto front, example hits, missed queries."""
    out = []
    pareto = report.get("pareto")
    if pareto:
        from embedsearch.evaluation.pareto import front_sentence

        y = report["metrics"][pareto["y"]]["label"]
        out.append(f"\n## Quality against speed\n\n{y} against documents/s. {front_sentence(pareto)}")
    if report.get("examples"):
        out.append("\n## Example hits\n\nEach model's top documents for the first queries; ✓: relevant.")
        for e in report["examples"]:
            rows = [
                [label if i == 0 else "", str(i + 1), h["id"] + (" ✓" if h["relevant"] else ""), h["snippet"]]
                for label, hits in e["hits"].items()
                for i, h in enumerate(hits)
            ]
            out.append(f"\n**{e['query']}** ({e['query_id']}, {e['relevant']} relevant)\n")
            out.append(_md_table(["model", "rank", "document", "text"], rows))
    miss = report.get("missed")
    if miss:
        out.append(f"\n## Queries {miss['model']} missed\n")
        out.append(
            f"{miss['count']} of {miss['of']} queries have no relevant document in the top {miss['k']} "
            f"of {miss['model']}, the best model by nDCG@{miss['k']}."
        )
        if miss["queries"]:
            rows = [[q["query"], str(q["relevant"]), ", ".join(q["found_by"]) or "no model"] for q in miss["queries"]]
            out.append("\n" + _md_table(["query", "relevant", "found by"], rows))
    return out


RENDERERS = {
    "json": lambda report: json.dumps(report, indent=2, ensure_ascii=False) + "\n",
    "markdown": lambda report: render_markdown(report),
    "html": lambda report: render_html(report),
}


def render(report: dict[str, Any], fmt: str) -> str:
    """The report as ``json``, ``markdown`` or ``html`` text."""
    return RENDERERS[fmt](report)


def write_outputs(report: dict[str, Any], outputs: dict[str, Path]) -> list[Path]:
    """Write each format to its path (``{"html": path, ...}``): a temp file beside it first,
    then a rename, so a reader never sees half a report and a failure leaves the old one."""
    written = []
    for fmt, path in outputs.items():
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = atomic_temp(path)  # the report gets the umask's mode, not mkstemp's 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(render(report, fmt))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        written.append(path)
    return written
