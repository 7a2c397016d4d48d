"""Relevance of each search mode on text nobody tuned for (issue 22), and the default rule's choice.

    python benchmarks/bench_relevance.py collect [--model minilm] [--data DIR] [--sets a,b] [--out runs.json]
    python benchmarks/bench_relevance.py analyse runs.json [--out benchmarks/results/NAME]
    python benchmarks/bench_relevance.py before-after --before old.json --after new.json [--metric mrr@10]
    python benchmarks/bench_relevance.py latency [--data DIR] [--set jargon] [--rounds 4]

``collect`` indexes each evaluation set of ``benchmarks/eval_sets.py`` as a user would through the
CLI's defaults (the model's window as passages, a lexical index, ``--index auto``) into ``--data``
(kept: a second run reuses the collections), then searches every query through the library
(``embedsearch.search.search``) in dense mode and in lexical mode at the depth a hybrid search
takes from each side (50 for k = 10), and in the library's default mode. It writes each side's
ranked ids and scores per query.

``analyse`` fuses those candidate lists offline with each rule of a family (search_fusion.py's
rules and their parameters) and scores them (MRR@10, nDCG@10, recall@10), then chooses a rule
by leave-one-set-out cross-validation: for each set, the rule that is best on the *other* sets
(by the mean over sets of its MRR@10 relative to the best fixed mode there) is reported on the
held-out one. The library's default (``default`` column) comes from ``collect``'s real searches,
not from the offline fusion, so the two can be checked against each other.

``latency`` times one query per call, default mode against today's hybrid RRF, ABBA over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
K = 10
DEPTH = 50  # what a hybrid search of k = 10 takes from each side (search.MIN_DEPTH)
ALL_SETS = ("lee", "lee-long", "gcide", "jargon", "foldoc-abbrev", "debian-faq", "debian-faq-paraphrase", "sqlite-faq",
            "pg-sections", "sqlite-pages")  # fmt: skip


def _store(data: Path, db: str | None):
    from embedsearch.config import Settings
    from embedsearch.store import Store

    return Store(Settings.from_env(data, db) if db else Settings.from_env(data))


def _collection(store, name: str, docs, embedder):
    """The set's collection, created and filled once (CLI defaults: passages at the model's window,
    lexical index, index auto)."""
    from embedsearch.passages import resolve_chunking

    if name in {c["name"] for c in store.list()}:
        coll = store.open(name)
        if coll.doc_count == len(docs):
            return coll, None
        store.drop(name)
    t = time.perf_counter()
    coll = store.create(name, embedder, "auto", lexical=True, chunking=resolve_chunking(embedder, None, None))
    coll.add_documents(docs, embedder)
    return coll, time.perf_counter() - t


def collect(args) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(HERE))
    import eval_sets

    from embedsearch.embedders import load_embedder
    from embedsearch.evaluation.query_sets import read_queries
    from embedsearch.search import search

    embedder = load_embedder(args.model, device="cpu")
    store = _store(Path(args.data), args.db)
    out = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {"sets": {}}
    out.update(model=args.model, k=K, depth=DEPTH, machine={"cpus": os.cpu_count(), "python": platform.python_version()})
    for name in args.sets.split(","):
        s = eval_sets.load(name)
        queries = read_queries(s.queries, {d.id for d in s.documents})
        coll_name = f"{name.removesuffix('-paraphrase')}-{args.model}".replace("/", "-")  # paraphrases: same documents
        t = time.perf_counter()
        coll, add_s = _collection(store, coll_name, s.documents, embedder)
        print(f"{name}: {len(s.documents)} documents, {len(queries)} queries"
              + (f", indexed in {add_s:.0f} s" if add_s else ", collection reused"), flush=True)
        texts = [q.text for q in queries]
        runs = {}
        for mode in ("dense", "lexical"):
            hits = search(coll, texts, DEPTH, mode=mode, embedder=embedder, columns=())
            runs[mode] = [[(h.id, round(float(h.score), 6), h.row_id) for h in hl] for hl in hits]
        hits = search(coll, texts, K, embedder=embedder, columns=())
        runs["default"] = [[(h.id, round(float(h.score), 6), h.row_id) for h in hl] for hl in hits]
        runs["default_mode"] = hits[0][0].extras["mode"] if hits and hits[0] else None
        out["sets"][name] = {
            "kind": s.kind,
            "documents": len(s.documents),
            "queries": [{"id": q.id, "text": q.text, "relevant": sorted(q.relevant)} for q in queries],
            "runs": runs,
            "seconds": round(time.perf_counter() - t, 1),
        }
        Path(args.out).write_text(json.dumps(out) + "\n")
    print(f"wrote {args.out}")


# ---- analysis ---------------------------------------------------------------------------------


def _metrics(ranked: list[list[str]], relevant: list[set]) -> dict[str, float]:
    from embedsearch.evaluation.metrics import ranking_metrics

    m = ranking_metrics(ranked, relevant, K)
    return {name: float(v.mean()) for name, v in m.items()}


def _rules() -> dict[str, dict]:
    """The family the default is chosen from: name -> search_fusion.fuse keyword arguments.
    ``relative-A-L-D``: relative fusion, alpha A, lexical gap weight L, dense gap weight D."""
    rules = {"dense": {"only": "dense"}, "lexical": {"only": "lexical"}, "hybrid-rrf": {"fusion": "rrf"}}
    for a in (0.5, 0.6, 0.7, 0.8, 0.9):
        rules[f"weighted-{a}"] = {"fusion": "weighted", "alpha": a}
    for a in (0.8, 0.85, 0.875, 0.9, 0.925, 0.95):
        for lw in (0, 0.1, 0.2, 0.3, 0.4):
            for dw in (0, 0.1, 0.2, 0.3, 0.5):
                rules[f"relative-{a}-{lw}-{dw}"] = {"fusion": "relative", "alpha": a, "gap_weights": (dw, lw)}
    return rules


def _fuse(rule: dict, dense: list, lexical: list) -> list[str]:
    import numpy as np

    from embedsearch.search_fusion import fuse

    if "only" in rule:
        return [d for d, _, _ in (dense if rule["only"] == "dense" else lexical)][:K]
    name = {r: d for d, _, r in dense + lexical}  # row ids: the library breaks ties by them

    def side(hits):
        return np.asarray([r for _, _, r in hits], dtype=np.int64), np.asarray([s for _, s, _ in hits], dtype=np.float64)

    f = fuse(side(dense), side(lexical), K, **rule)
    return [name[int(i)] for i in f.ids]


def analyse(args) -> None:
    sys.path.insert(0, str(REPO))
    data = json.loads(Path(args.runs).read_text())
    rules = _rules()
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name, s in data["sets"].items():
        relevant = [set(q["relevant"]) for q in s["queries"]]
        table[name] = {}
        for rname, rule in rules.items():
            ranked = [_fuse(rule, d, lx) for d, lx in zip(s["runs"]["dense"], s["runs"]["lexical"], strict=True)]
            table[name][rname] = _metrics(ranked, relevant)
        table[name]["default (library)"] = _metrics([[d for d, _, _ in r] for r in s["runs"]["default"]], relevant)
    metric = args.metric
    fixed = ("dense", "lexical", "hybrid-rrf")
    sets = list(table)

    def rel(name, rname):  # a rule's score relative to the best fixed mode on a set
        return table[name][rname][metric] / max(table[name][f][metric] for f in fixed)

    candidates = [r for r in rules if r not in ("lexical",)]

    def criterion(r, among):  # within 2% of the best fixed mode on every set, then the best mean; else the best worst
        worst = min(rel(s, r) for s in among)
        return (worst >= 0.98, statistics.fmean(rel(s, r) for s in among) if worst >= 0.98 else worst)

    cv = {}
    for held in sets:
        best = max(candidates, key=lambda r: criterion(r, [s for s in sets if s != held]))
        cv[held] = {"rule": best, metric: table[held][best][metric], "relative": rel(held, best)}
    overall = max(candidates, key=lambda r: criterion(r, sets))
    mean_relative = {r: statistics.fmean(rel(s, r) for s in sets) for r in candidates}
    kept = {*fixed, "default (library)", overall, *(c["rule"] for c in cv.values())}
    kept |= set(sorted(mean_relative, key=lambda r: -mean_relative[r])[:12])
    out = {"runs": args.runs, "metric": metric, "best_on_all_sets": overall, "cv": cv,
           "table": {n: {r: v for r, v in row.items() if r in kept} for n, row in table.items()},
           "mean_relative": mean_relative, "min_relative": {r: min(rel(s, r) for s in sets) for r in candidates}}  # fmt: skip
    md = _markdown(data, out)
    print(md)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
        Path(args.out + ".md").write_text(md + "\n")


def _markdown(data: dict, out: dict) -> str:
    metric, table, cv = out["metric"], out["table"], out["cv"]
    lines = [
        f"# Search modes on {len(table)} evaluation sets ({data['model']}, {metric}, k = {K})",
        "",
        "| set | kind | queries | dense | lexical | hybrid RRF (old default) | CV choice (trained on the other sets) | "
        "CV choice's score | default (library) | default ÷ best of the three |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        s = data["sets"][name]
        best = max(row[f][metric] for f in ("dense", "lexical", "hybrid-rrf"))
        lines.append(
            f"| {name} | {s['kind']} | {len(s['queries'])} | {row['dense'][metric]:.3f} | {row['lexical'][metric]:.3f} | "
            f"{row['hybrid-rrf'][metric]:.3f} | {cv[name]['rule']} | {cv[name][metric]:.3f} | "
            f"{row['default (library)'][metric]:.3f} | {row['default (library)'][metric] / best:.3f} |"
        )
    columns = ("dense", "lexical", "hybrid-rrf", "default (library)")
    mean = {c: statistics.fmean(table[s][c][metric] for s in table) for c in columns}
    lines.append(
        f"| mean | | | {mean['dense']:.3f} | {mean['lexical']:.3f} | {mean['hybrid-rrf']:.3f} | | "
        f"{statistics.fmean(v[metric] for v in cv.values()):.3f} | {mean['default (library)']:.3f} | |"
    )
    ranked = sorted(out["mean_relative"], key=lambda r: -out["mean_relative"][r])
    lines += ["", "Rules by mean score relative to the best fixed mode per set (and the worst set):", ""]
    lines += [f"- {r}: mean {out['mean_relative'][r]:.3f}, worst {out['min_relative'][r]:.3f}" for r in ranked[:12]]
    return "\n".join(lines)


def before_after(args) -> None:
    """The closing table: dense, lexical and RRF from the run before a change (``--before``), and
    lexical, RRF and the library's default from the run after it; the default over the best."""
    before, after = (json.loads(Path(p).read_text()) for p in (args.before, args.after))
    metric = args.metric
    header = ["set", "queries", "dense", "lexical before", "lexical after", "RRF before", "RRF after", "default after",
              "default ÷ best"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = []
    for name, s in after["sets"].items():
        def score(data, key, name=name):
            run = data["sets"][name]
            relevant = [set(q["relevant"]) for q in run["queries"]]
            if key == "rrf":
                pairs = zip(run["runs"]["dense"], run["runs"]["lexical"], strict=True)
                ranked = [_fuse({"fusion": "rrf"}, d, lx) for d, lx in pairs]
            else:
                ranked = [[d for d, _, _ in r][:K] for r in run["runs"][key]]
            return _metrics(ranked, relevant)[metric]

        v = [score(after, "dense"), score(before, "lexical"), score(after, "lexical"), score(before, "rrf"),
             score(after, "rrf"), score(after, "default")]  # fmt: skip
        rows.append(v)
        lines.append(f"| {name} | {len(s['queries'])} | " + " | ".join(f"{x:.3f}" for x in v) + f" | {v[5] / max(v[:5]):.3f} |")
    lines.append("| mean | | " + " | ".join(f"{statistics.fmean(r[i] for r in rows):.3f}" for i in range(6)) + " | |")
    text = f"# {metric}: before ({args.before}) and after ({args.after})\n\n" + "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


def latency(args) -> None:
    """One query per call: the default mode against hybrid RRF (the old default), ABBA."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from embedsearch.embedders import load_embedder
    from embedsearch.evaluation.query_sets import read_queries
    from embedsearch.search import search

    sys.path.insert(0, str(HERE))
    import eval_sets

    embedder = load_embedder(args.model, device="cpu")
    store = _store(Path(args.data), args.db)
    s = eval_sets.load(args.set)
    coll, _ = _collection(store, f"{args.set}-{args.model}", s.documents, embedder)
    texts = [q.text for q in read_queries(s.queries, {d.id for d in s.documents})][: args.queries]
    configs = {"A: default": {}, "B: hybrid rrf": {"mode": "hybrid", "fusion": "rrf"}}
    times = {c: [] for c in configs}
    for q in texts[:5]:  # warm-up
        for how in configs.values():
            search(coll, [q], K, embedder=embedder, columns=("text", "metadata"), **how)
    for rnd in range(args.rounds):
        order = list(configs) if rnd % 4 in (0, 3) else list(reversed(configs))
        for c in order:
            for q in texts:
                t = time.perf_counter()
                search(coll, [q], K, embedder=embedder, columns=("text", "metadata"), **configs[c])
                times[c].append((time.perf_counter() - t) * 1000)
    for c, v in times.items():
        v.sort()
        print(f"{c}: p50 {statistics.median(v):.2f} ms, p95 {v[int(0.95 * (len(v) - 1))]:.2f} ms over {len(v)} queries")
    a, b = (statistics.median(times[c]) for c in configs)
    print(f"ratio default / hybrid rrf (p50): {a / b:.3f}; load average {os.getloadavg()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--model", default="minilm")
    c.add_argument("--data", default="/tmp/embedsearch-relevance")
    c.add_argument("--db", default=None)
    c.add_argument("--sets", default=",".join(ALL_SETS))
    c.add_argument("--out", default="/tmp/relevance-runs.json")
    a = sub.add_parser("analyse")
    a.add_argument("runs")
    a.add_argument("--metric", default="mrr@10", choices=("mrr@10", "ndcg@10", "recall@10"))
    a.add_argument("--out", default=None)
    ba = sub.add_parser("before-after")
    ba.add_argument("--before", required=True)
    ba.add_argument("--after", required=True)
    ba.add_argument("--metric", default="mrr@10", choices=("mrr@10", "ndcg@10", "recall@10"))
    ba.add_argument("--out", default=None)
    lat = sub.add_parser("latency")
    lat.add_argument("--model", default="minilm")
    lat.add_argument("--data", default="/tmp/embedsearch-relevance")
    lat.add_argument("--db", default=None)
    lat.add_argument("--set", default="jargon")
    lat.add_argument("--queries", type=int, default=100)
    lat.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    {"collect": collect, "analyse": analyse, "before-after": before_after, "latency": latency}[args.cmd](args)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
