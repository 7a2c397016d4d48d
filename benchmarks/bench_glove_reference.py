"""Our GloVe against Stanford's C GloVe, built from a source directory you provide, on one token file.

    git clone https://github.com/stanfordnlp/GloVe /tmp/glove-src      # or any copy of its source
    apt-get install dict-gcide dict-foldoc                             # the corpus (see dictd_corpus.py)
    python benchmarks/bench_glove_reference.py --reference-src /tmp/glove-src --seeds 3 --lr 0.05 0.1

The source is copied to the work directory and built there with its Makefile (nothing of it is
kept in this repository). The corpus is tokenised once by embedsearch's tokenizer and written
one document per line; both pipelines read that file:

- reference: ``vocab_count -min-count`` | ``cooccur -window-size`` | ``shuffle`` | ``glove``
  (``-model 2``: word + context vectors, as ours), each step a separate process;
- ours: ``python -m embedsearch train glove TOKENS`` (one process: reading, counting, training,
  saving).

Same settings on both sides (dim, window, x_max, alpha, iterations, threads, learning rate,
seed). Each process's CPU seconds (user + system, all its threads) and peak RSS come from
``/usr/bin/time``; a pipeline's CPU seconds are its processes' sum, its peak the largest step's.
Both models are evaluated by the same code: WordSim-353 and SimLex-999 Spearman,
Google analogies (3CosAdd) over the 30k most frequent words, from gensim's bundled test data.
The reference's ``<unk>`` vector is dropped. Results are written to ``--json`` after every run,
and ``--resume`` skips the runs already there (a reference run costs ~9 CPU minutes here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dictd_corpus import write_dictd_corpus  # noqa: E402

from embedsearch.corpus import ReadOptions  # noqa: E402
from embedsearch.evaluation.intrinsic import intrinsic_report  # noqa: E402
from embedsearch.models import load_word_vectors  # noqa: E402
from embedsearch.trainers.prepare import prepare_corpus  # noqa: E402
from embedsearch.wordvectors import WordVectors  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


TIME = shutil.which("time", path="/usr/bin:/bin")


def run_measured(cmd: list, *, stdin=None, stdout=None, env=None, cwd=None) -> dict:
    """Run ``cmd``; its CPU seconds (user + system, all threads) and peak RSS, and its stderr.

    Through ``/usr/bin/time`` where there is one: a child forked from this Python process starts
    with this process's peak RSS on Linux (ru_maxrss survives exec), so wait4 here would report
    at least our own size; ``time`` is small when it forks. Without it, wait4 (an upper bound)."""
    cmd = [str(c) for c in cmd]
    t = time.perf_counter()
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as measured:
        full = [TIME, "-f", "%U %S %M", "-o", measured.name, *cmd] if TIME else cmd
        proc = subprocess.Popen(full, stdin=stdin, stdout=stdout, stderr=err, env=env, cwd=cwd)
        _, status, ru = os.wait4(proc.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
        if code != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{stderr[-2000:]}")
        if TIME:
            user, system, kib = measured.read().split()[-3:]
            cpu, peak_kib = float(user) + float(system), int(kib)
        else:
            cpu, peak_kib = ru.ru_utime + ru.ru_stime, ru.ru_maxrss
    return {"cpu_s": round(cpu, 2), "wall_s": round(time.perf_counter() - t, 2),
            "peak_rss_mib": round(peak_kib / 1024, 1), "stderr": stderr}  # fmt: skip


def build_reference(src: Path, work: Path) -> Path:
    """Copy the reference source into ``work`` and build it with its own Makefile; returns the bin dir."""
    if not (src / "src" / "glove.c").is_file():
        raise SystemExit(f"{src}: not a GloVe source tree (no src/glove.c)")
    dst = work / "reference-src"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git", "build"))
    subprocess.run(["make"], cwd=dst, check=True, capture_output=True)
    return dst / "build"


def quality(wv) -> dict:
    r = intrinsic_report(wv)
    return {"wordsim353": round(r["wordsim353"]["spearman"], 4), "simlex999": round(r["simlex999"]["spearman"], 4),
            "google_analogy": round(r["google_analogy"]["accuracy"] or 0.0, 4)}  # fmt: skip


def load_reference_vectors(path: Path) -> WordVectors:
    words, rows = [], []
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            parts = line.rstrip("\n").split(" ")
            if parts[0] == "<unk>":
                continue
            words.append(parts[0])
            rows.append(np.asarray(parts[1:], dtype=np.float32))
    return WordVectors(words, np.vstack(rows))


def reference_run(bins: Path, work: Path, tokens: Path, a, lr: float, seed: int, shared: dict) -> dict:
    d = work / f"ref-lr{lr}-seed{seed}"
    d.mkdir(exist_ok=True)
    mem = str(a.reference_memory_gb)
    if "vocab" not in shared:  # vocabulary and counts do not depend on the seed: once per benchmark
        with open(tokens, "rb") as fin, open(work / "vocab.txt", "wb") as fout:
            shared["vocab"] = run_measured([bins / "vocab_count", "-min-count", str(a.min_count), "-verbose", "0"],
                                           stdin=fin, stdout=fout)  # fmt: skip
        with open(tokens, "rb") as fin, open(work / "cooc.bin", "wb") as fout:
            shared["cooccur"] = run_measured([bins / "cooccur", "-memory", mem, "-vocab-file", work / "vocab.txt",
                                              "-verbose", "0", "-window-size", str(a.window),
                                              "-overflow-file", work / "overflow"], stdin=fin, stdout=fout)  # fmt: skip
    with open(work / "cooc.bin", "rb") as fin, open(d / "cooc.shuf.bin", "wb") as fout:
        shuffle = run_measured([bins / "shuffle", "-memory", mem, "-verbose", "0", "-seed", str(seed),
                                "-temp-file", d / "temp_shuffle"], stdin=fin, stdout=fout)  # fmt: skip
    train = run_measured([bins / "glove", "-input-file", d / "cooc.shuf.bin", "-vocab-file", work / "vocab.txt",
                          "-save-file", d / "vectors", "-threads", str(a.threads), "-iter", str(a.epochs),
                          "-eta", str(lr), "-x-max", str(a.x_max), "-alpha", str(a.alpha), "-vector-size", str(a.dim),
                          "-binary", "0", "-model", "2", "-seed", str(seed), "-verbose", "2"])  # fmt: skip
    costs = [float(line.rsplit("cost: ", 1)[1]) for line in train["stderr"].splitlines() if "cost: " in line]
    stages = {"vocab": shared["vocab"], "cooccur": shared["cooccur"], "shuffle": shuffle, "train": train}
    q = quality(load_reference_vectors(d / "vectors.txt"))
    shutil.rmtree(d)
    return {"side": "reference", "lr": lr, "seed": seed, **q,
            "stage_cpu_s": {k: v["cpu_s"] for k, v in stages.items()},
            "stage_peak_rss_mib": {k: v["peak_rss_mib"] for k, v in stages.items()},
            "cpu_s": round(sum(v["cpu_s"] for v in stages.values()), 2),
            "wall_s": round(sum(v["wall_s"] for v in stages.values()), 2),
            "peak_rss_mib": max(v["peak_rss_mib"] for v in stages.values()),
            "cost_first": costs[0] if costs else None, "cost_last": costs[-1] if costs else None}  # fmt: skip


def ours_run(work: Path, tokens: Path, a, lr: float, seed: int) -> dict:
    out = work / f"ours-lr{lr}-seed{seed}"
    cmd = [sys.executable, "-m", "embedsearch", "train", "glove", tokens, "-o", out, "--overwrite",
           "--dim", a.dim, "--window", a.window, "--min-count", a.min_count, "--x-max", a.x_max, "--alpha", a.alpha,
           "--epochs", a.epochs, "--threads", a.threads, "--lr", lr, "--seed", seed, "--json"]  # fmt: skip
    if a.memory_mb:
        cmd += ["--memory-mb", a.memory_mb]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = run_measured(cmd, stdout=subprocess.DEVNULL, env=env, cwd=work)
    m = json.loads((out / "manifest.json").read_text())
    q = quality(load_word_vectors(out))
    shutil.rmtree(out)
    co = m["cooccurrence"]
    train_cpu = sum(p.get("cpu_seconds", 0.0) for p in m["loss_curve"])
    stages = {"process_start_and_read": round(r["cpu_s"] - m["train_cpu_seconds"], 2),
              "count": co.get("count_cpu_seconds"), "shuffle": co.get("shuffle_cpu_seconds"),
              "train": round(train_cpu, 2)}  # fmt: skip
    return {"side": "ours", "lr": lr, "seed": seed, **q, "stage_cpu_s": stages,
            "cpu_s": r["cpu_s"], "wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_mib"],
            "entries": co.get("entries"), "nonzeros": co["nonzeros"],
            "cost_first": m["loss_curve"][0]["loss"], "cost_last": m["loss_curve"][-1]["loss"]}  # fmt: skip


def mean(rows: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in rows)


def table(results: dict) -> str:
    runs = results["runs"]
    lines = ["| run | seeds | WordSim-353 | SimLex-999 | analogies | CPU s (whole pipeline) | CPU s per stage | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    summary = []
    for lr in sorted({r["lr"] for r in runs}):
        group = {}
        for side in ("reference", "ours"):
            rows = [r for r in runs if r["side"] == side and r["lr"] == lr]
            if not rows:
                continue
            group[side] = rows
            stages = {k: statistics.fmean(r["stage_cpu_s"][k] or 0.0 for r in rows) for k in rows[0]["stage_cpu_s"]}
            per_seed = lambda k, rows=rows: " / ".join(f"{r[k]:.3f}" for r in rows)  # noqa: E731
            lines.append(
                f"| {'C reference' if side == 'reference' else 'ours'}, lr {lr} | {', '.join(str(r['seed']) for r in rows)} "
                f"| **{mean(rows, 'wordsim353'):.3f}** ({per_seed('wordsim353')}) "
                f"| **{mean(rows, 'simlex999'):.3f}** ({per_seed('simlex999')}) "
                f"| **{mean(rows, 'google_analogy'):.3f}** ({per_seed('google_analogy')}) "
                f"| {mean(rows, 'cpu_s'):.1f} | {', '.join(f'{k} {v:.1f}' for k, v in stages.items())} "
                f"| {max(r['peak_rss_mib'] for r in rows):.0f} |"
            )
        if len(group) == 2:
            ref, ours = group["reference"], group["ours"]
            summary.append(
                f"- lr {lr}: ours/reference CPU seconds {mean(ours, 'cpu_s') / mean(ref, 'cpu_s'):.3f}, "
                f"peak RSS {max(r['peak_rss_mib'] for r in ours) / max(r['peak_rss_mib'] for r in ref):.2f}; "
                f"mean WordSim-353 {mean(ours, 'wordsim353') - mean(ref, 'wordsim353'):+.3f}, "
                f"SimLex-999 {mean(ours, 'simlex999') - mean(ref, 'simlex999'):+.3f}, "
                f"analogies {mean(ours, 'google_analogy') - mean(ref, 'google_analogy'):+.3f} (ours minus reference)"
            )
    return "\n".join(lines + [""] + summary) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference-src", type=Path, required=True, help="a GloVe source tree (holds src/glove.c and a Makefile)")
    ap.add_argument("--corpus", help="a text file, one document per line (default: the dictd corpus)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lr", type=float, nargs="+", default=[0.05, 0.1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--x-max", type=float, default=10.0)
    ap.add_argument("--alpha", type=float, default=0.75)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--reference-memory-gb", type=float, default=1.0, help="the reference's -memory (cooccur, shuffle)")
    ap.add_argument("--memory-mb", type=int, default=0, help="our --memory-mb (0: our default)")
    ap.add_argument("--only", choices=("ours", "reference"), help="run one side only")
    ap.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    ap.add_argument("--json", type=Path, help="write the results here (after every run)")
    ap.add_argument("--markdown", type=Path, help="write the table here")
    ap.add_argument("--resume", action="store_true", help="keep the runs already in --json and skip them")
    a = ap.parse_args()

    results = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}, "runs": []}
    if a.resume and a.json and a.json.exists():
        results["runs"] = json.loads(a.json.read_text())["runs"]
    done = {(r["side"], r["lr"], r["seed"]) for r in results["runs"]}
    with tempfile.TemporaryDirectory(prefix="bench-glove-ref-") as tmp:
        work = a.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        corpus = Path(a.corpus) if a.corpus else write_dictd_corpus(work / "dict.txt")
        prepared = prepare_corpus([str(corpus)], work, ReadOptions(per_line=True))
        tokens = work / "tokens.txt"
        results["corpus"] = {"documents": prepared.n_docs, "tokens": prepared.n_tokens,
                             "vocab": len(prepared.vocabulary(a.min_count))}  # fmt: skip
        del prepared
        print(f"corpus: {results['corpus']}", flush=True)
        bins = build_reference(a.reference_src, work) if a.only != "ours" else None
        shared: dict = {}
        for lr in a.lr:
            for seed in range(1, a.seeds + 1):
                # alternate which side runs first, so a drift in machine load hits both alike
                sides = ["reference", "ours"] if seed % 2 else ["ours", "reference"]
                for side in sides:
                    if (a.only and side != a.only) or (side, lr, seed) in done:
                        continue
                    run = (reference_run(bins, work, tokens, a, lr, seed, shared) if side == "reference"
                           else ours_run(work, tokens, a, lr, seed))  # fmt: skip
                    results["runs"].append(run)
                    print(json.dumps(run), flush=True)
                    if a.json:
                        a.json.write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    print(text)
    if a.markdown:
        a.markdown.write_text(text)


if __name__ == "__main__":
    main()
