"""Turn a comparison report (plain data) into a self-contained HTML page and Markdown.

The HTML has no scripts and loads nothing: the charts are matplotlib PNGs inlined as data
URIs and the styles are inline, so the file opens offline and can be mailed around.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

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


# --------------------------------------------------------------------------- charts


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; the charts only become PNG bytes
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _colours(n: int) -> list:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def chart_bars(report: dict[str, Any], names: list[str], title: str) -> str | None:
    """Grouped bars (one group per metric, one bar per model) with confidence intervals."""
    plt = _pyplot()
    names = [n for n in names if n in report["metrics"]]
    models = [m["label"] for m in report["models"]]
    if not names or not any(report["metrics"][n]["values"].get(m) for n in names for m in models):
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(names) * max(1, len(models)) / 2 + 2), 3.6))
    width = 0.8 / len(models)
    for j, (label, colour) in enumerate(zip(models, _colours(len(models)), strict=True)):
        xs, ys, err_lo, err_hi = [], [], [], []
        for i, name in enumerate(names):
            v = report["metrics"][name]["values"].get(label)
            if v is None or v.get("value") is None:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(v["value"])
            err_lo.append(max(0.0, v["value"] - v.get("low", v["value"])))
            err_hi.append(max(0.0, v.get("high", v["value"]) - v["value"]))
        if xs:
            ax.bar(xs, ys, width, label=label, color=colour, yerr=[err_lo, err_hi], capsize=3, ecolor="#333")
    ax.set_xticks(range(len(names)), [report["metrics"][n]["label"] for n in names], rotation=15, ha="right")
    ax.set_title(title)
    ax.axhline(0, color="#999", linewidth=0.8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def chart_cost(report: dict[str, Any]) -> str | None:
    plt = _pyplot()
    models = [m["label"] for m in report["models"]]
    panels = [("docs_per_second", "documents / second (log)", True), ("model_bytes", "model size on disk (MiB)", False)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (name, title, log) in zip(axes, panels, strict=True):
        values = [(report["metrics"][name]["values"].get(m) or {}).get("value") for m in models]
        ys = [0 if v is None else (v if log else v / 2**20) for v in values]
        ax.bar(models, ys, color=_colours(len(models)))
        if log and any(y > 0 for y in ys):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)
        ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _heatmap(
    m: np.ndarray,
    rows: list[str],
    cols: list[str],
    title: str,
    *,
    figsize: tuple[float, float],
    vmin: float,
    cmap: str,
    dark_below: float,
    fontsize: int,
    xrotation: int,
    xfontsize: int | None = None,
    aspect: str | None = None,
    bar_fraction: float = 0.046,
) -> str:
    """An annotated heatmap (NaN cells left blank) as a PNG data URI."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    im = ax.imshow(m, vmin=vmin, vmax=1, cmap=cmap, aspect=aspect)
    ax.set_xticks(range(len(cols)), cols, rotation=xrotation, ha="right", fontsize=xfontsize)
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if not math.isnan(m[i, j]):
                colour = "white" if m[i, j] < dark_below else "black"
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", color=colour, fontsize=fontsize)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=bar_fraction)
    return _png(fig)


def chart_heatmap(matrix: list[list[float | None]], labels: list[str], title: str) -> str:
    m = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    return _heatmap(
        m,
        labels,
        labels,
        title,
        figsize=(1.0 * len(labels) + 2.5, 0.8 * len(labels) + 1.8),
        vmin=0 if np.nanmin(m) >= 0 else -1,
        cmap="viridis",
        dark_below=0.6,
        fontsize=9,
        xrotation=30,
    )


def chart_analogy_sections(report: dict[str, Any]) -> str | None:
    sections = report.get("analogy_sections") or {}
    if not sections:
        return None
    models = list(sections)
    names = [s["section"] for s in next(iter(sections.values()))]
    m = np.array([[np.nan if s["accuracy"] is None else s["accuracy"] for s in sections[label]] for label in models])
    return _heatmap(
        m,
        models,
        names,
        "Google analogies: accuracy by section (covered questions)",
        figsize=(0.6 * len(names) + 3, 0.6 * len(models) + 2),
        vmin=0,
        cmap="magma",
        dark_below=0.5,
        fontsize=7,
        xrotation=45,
        xfontsize=8,
        aspect="auto",
        bar_fraction=0.03,
    )


def chart_maps(report: dict[str, Any], max_categories: int = 10) -> str | None:
    data = report.get("map")
    if not data or not data["models"]:
        return None
    plt = _pyplot()
    colours = data["colours"]
    counts: dict[str, int] = {}
    for c in colours:
        counts[c] = counts.get(c, 0) + 1
    top = [c for c, _ in sorted(counts.items(), key=lambda kv: -kv[1]) if c not in ("(no query)", "(none)")][:max_categories]
    palette = dict(zip(top, _colours(len(top)), strict=True))
    models = list(data["models"])
    cols = min(3, len(models))
    rows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax, label in zip(axes.flat, models, strict=False):
        pts = data["models"][label]
        x, y = np.array(pts["x"]), np.array(pts["y"])
        other = np.array([c not in palette for c in colours])
        ax.scatter(x[other], y[other], s=8, color="#cccccc", label="other")
        for cat, colour in palette.items():
            sel = np.array([c == cat for c in colours])
            ax.scatter(x[sel], y[sel], s=14, color=colour, label=cat)
        share = pts.get("explained_variance")
        suffix = f" ({sum(share[:2]):.0%} of variance)" if share else ""
        ax.set_title(f"{label}{suffix}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(models) :]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="lower center",
        ncol=min(6, len(names)),
        fontsize=8,
        bbox_to_anchor=(0.5, -0.02 - 0.03 * (len(names) // 6)),
    )
    fig.suptitle(f"{data['method'].upper()} map of {len(colours)} documents, coloured by {data['colour_by']}", fontsize=11)
    return _png(fig)


def chart_ann(report: dict[str, Any]) -> str:
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    specs = report["specs"]
    k = report["settings"]["k"]
    for spec, colour in zip(specs, _colours(len(specs)), strict=True):
        pts = spec["points"]
        ax.plot([p["qps"] for p in pts], [p["recall"] for p in pts], "o-", color=colour, label=spec["spec"])
        if spec["knob"]:
            for p in pts:
                ax.annotate(str(p["param"]), (p["qps"], p["recall"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axvline(report["exact"]["qps"], color="#999", linestyle="--", linewidth=1, label="exact (brute force)")
    ax.set_xscale("log")
    ax.set_xlabel("queries / second (log)")
    ax.set_ylabel(f"recall@{k} vs exact")
    ax.set_title("recall against speed (labels: nprobe / efSearch)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    bx.bar(range(len(specs)), [s["bytes_per_vector"] for s in specs], color=_colours(len(specs)))
    bx.set_xticks(range(len(specs)), [s["spec"] for s in specs], rotation=30, ha="right")
    bx.set_title("bytes per vector")
    bx.grid(axis="y", alpha=0.3)
    return _png(fig)


# --------------------------------------------------------------------------- documents


def _environment():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True
    )
    env.filters["fmt"] = format_value
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True)
    return env


def models_charts(report: dict[str, Any]) -> list[dict[str, str]]:
    k = report["settings"]["k"]
    charts = []

    def add(key: str, title: str, uri: str | None, caption: str) -> None:
        if uri:
            charts.append({"id": key, "title": title, "uri": uri, "caption": caption})

    add(
        "chart-retrieval",
        "Retrieval",
        chart_bars(report, [f"recall@{k}", f"mrr@{k}", f"ndcg@{k}"], "Retrieval on the labelled queries"),
        "Bars are means over queries; whiskers are 95% bootstrap intervals.",
    )
    add(
        "chart-word",
        "Word level and document similarity",
        chart_bars(
            report,
            ["wordsim353", "simlex999", "google_analogy", "lee_pearson", "lee_spearman"],
            "Word benchmarks and Lee document similarity",
        ),
        "Word-pair whiskers are 95% bootstrap intervals over pairs; "
        "a missing bar means the metric does not apply (see the table).",
    )
    add("chart-analogy", "Analogies by section", chart_analogy_sections(report), "Accuracy on the questions each model covers.")
    agreement = report.get("agreement")
    if agreement:
        add(
            "chart-jaccard",
            "Neighbour overlap",
            chart_heatmap(agreement[f"jaccard@{k}"], agreement["models"], f"Jaccard@{k} of top-{k} neighbours"),
            f"Mean overlap of the top {k} results over {agreement['neighbour_queries']} queries.",
        )
        add(
            "chart-rank",
            "Similarity rank correlation",
            chart_heatmap(agreement["score_spearman"], agreement["models"], "Spearman of pairwise similarities"),
            f"Rank correlation of cosine similarities on {agreement['score_pairs']} sampled document pairs.",
        )
    add("chart-cost", "Cost", chart_cost(report), "Throughput embedding the corpus (model already loaded) and size on disk.")
    add(
        "chart-map",
        "2-D map",
        chart_maps(report),
        "Each panel is one model's own projection; axes are not comparable across panels.",
    )
    return charts


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
    if report.get("disagreements"):
        k = s["k"]
        out.append("\n## Queries where the models differ most\n")
        drows = [
            [d["query"][:80]] + [f"{d[f'ndcg@{k}'][m]:.2f} (first {d['first_relevant_rank'][m] or '—'})" for m in models]
            for d in report["disagreements"]
        ]
        out.append(_md_table(["query", *models], drows))
    out.append("\n## Models\n")
    out.append(
        _md_table(
            ["model", "spec", "kind", "dim", "fingerprint"],
            [[m["label"], m["spec"], m["kind"], str(m["dim"]), m["fingerprint"][:16]] for m in report["models"]],
        )
    )
    return "\n".join(out) + "\n"


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
