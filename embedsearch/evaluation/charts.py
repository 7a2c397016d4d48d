"""The comparison report's charts: matplotlib figures turned into PNG data URIs, so the HTML
needs no scripts and loads nothing."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np


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


UNLABELLED = ("(no query)", "(none)")


def _map_palette(colours: list[str], max_categories: int) -> dict[str, Any]:
    """A colour for each of the largest categories (most documents first)."""
    counts: dict[str, int] = {}
    for c in colours:
        counts[c] = counts.get(c, 0) + 1
    ranked = sorted((c for c in counts if c not in UNLABELLED), key=lambda c: (-counts[c], c))[:max_categories]
    cmap = _pyplot().get_cmap("tab20")
    # the strong hues first, their light pairs after; not tab20's greys (14, 15), which the
    # documents outside these categories use
    order = [i for i in (*range(0, 20, 2), *range(1, 20, 2)) if i not in (14, 15)]
    return {c: cmap(order[i % len(order)]) for i, c in enumerate(ranked)}


def _map_panel(ax, pts: dict[str, Any], colours: list[str], palette: dict[str, Any], named: int) -> None:
    """One model's map: every document a small point, the largest categories in colour and
    the first ``named`` of them labelled at their centre."""
    x, y = np.array(pts["x"]), np.array(pts["y"])
    cats = np.array(colours, dtype=object)
    rest = ~np.isin(cats, list(palette) + list(UNLABELLED))
    none = np.isin(cats, list(UNLABELLED))
    ax.scatter(x[none], y[none], s=7, color="#d9d9d9", linewidths=0, label="no label / query")
    ax.scatter(x[rest], y[rest], s=8, color="#8c8c8c", linewidths=0, label="other labels / queries")
    for i, (cat, colour) in enumerate(palette.items()):
        sel = cats == cat
        ax.scatter(x[sel], y[sel], s=14, color=colour, linewidths=0, label=f"{cat} ({int(sel.sum())})")
        if i < named:
            ax.annotate(
                cat,
                (x[sel].mean(), y[sel].mean()),
                fontsize=7,
                ha="center",
                va="center",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": colour, "alpha": 0.8},
            )
    share = pts.get("explained_variance")
    ax.set_title(f"{pts['label']}" + (f" ({sum(share[:2]):.0%} of variance)" if share else ""), fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def chart_maps(report: dict[str, Any], max_categories: int = 12, named: int = 6) -> str | None:
    """Each model's 2-D map of the sampled documents: small points coloured by label (or by the
    query they are relevant to), a legend, and the largest groups named on the map."""
    data = report.get("map")
    if not data or not data["models"]:
        return None
    plt = _pyplot()
    colours = data["colours"]
    palette = _map_palette(colours, max_categories)
    models = list(data["models"])
    cols = min(2, len(models))
    rows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 5.0 * rows), squeeze=False)
    for ax, label in zip(axes.flat, models, strict=False):
        _map_panel(ax, {**data["models"][label], "label": label}, colours, palette, named)
    for ax in list(axes.flat)[len(models) :]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    spare = list(axes.flat)[len(models) :]
    if spare:  # the legend fills the empty panel
        spare[0].legend(handles, names, loc="center", fontsize=8, markerscale=1.5, frameon=False)
    else:
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=1.5, frameon=False)
    fig.suptitle(f"{data['method'].upper()} map of {len(colours)} documents, coloured by {data['colour_by']}", fontsize=11)
    return _png(fig)


def chart_pareto(report: dict[str, Any]) -> str | None:
    """Quality against documents/s, one labelled point per model, the front joined."""
    pareto = report.get("pareto")
    if not pareto:
        return None
    plt = _pyplot()
    points = pareto["points"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (label, p), colour in zip(points.items(), _colours(len(points)), strict=True):
        on_front = label in pareto["front"]
        ax.scatter(
            [p["x"]], [p["y"]], s=70 if on_front else 40, color=colour, edgecolors="black" if on_front else "none", zorder=3
        )
        ax.annotate(label, (p["x"], p["y"]), fontsize=8, xytext=(6, 4), textcoords="offset points")
    front = [points[label] for label in pareto["front"]]
    ax.plot([p["x"] for p in front], [p["y"] for p in front], "--", color="#333", linewidth=1, zorder=2, label="Pareto front")
    ax.set_xscale("log")
    modes = any(m.get("mode", "dense") != "dense" for m in report["models"])
    ax.set_xlabel(f"documents/s {'indexing' if modes else 'embedding'} the corpus (log scale)")
    ax.set_ylabel(report["metrics"][pareto["y"]]["label"])
    ax.set_title("Quality against speed (up and right is better)")
    ax.margins(x=0.25, y=0.15)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
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


def models_charts(report: dict[str, Any]) -> list[dict[str, str]]:
    k = report["settings"]["k"]
    charts = []

    def add(key: str, title: str, uri: str | None, caption: str) -> None:
        if uri:
            charts.append({"id": key, "title": title, "uri": uri, "caption": caption})

    add(
        "chart-retrieval",
        "Retrieval",
        chart_bars(report, [f"recall@{k}", f"mrr@{k}", f"ndcg@{k}", f"map@{k}"], "Retrieval on the labelled queries"),
        "Bars are means over queries; whiskers are 95% bootstrap intervals.",
    )
    if report.get("pareto"):
        from embedsearch.evaluation.pareto import front_sentence

        add(
            "chart-pareto",
            "Quality against speed",
            chart_pareto(report),
            front_sentence(report["pareto"]) + " Each point is one model; a model on the front is beaten by none on both.",
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
    cost = "Throughput embedding the corpus (model already loaded) and size on disk."
    if any(m.get("mode", "dense") != "dense" for m in report["models"]):
        cost = "Throughput making the corpus searchable (embedding; search modes also index: see the notes) and model size."
    add("chart-cost", "Cost", chart_cost(report), cost)
    add(
        "chart-map",
        "2-D map",
        chart_maps(report),
        "Every sampled document is a point; the largest groups are named at their centre. "
        "Each panel is one model's own projection; axes are not comparable across panels.",
    )
    return charts
