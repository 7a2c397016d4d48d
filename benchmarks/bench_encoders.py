"""Encoder benchmark: MiniLM on torch, ONNX fp32 and ONNX int8, and a static student, side by side.

In one process, on the Lee stories (350, ~220 tokens each) and on short queries (the 45 of
corpora/lee-queries.jsonl, repeated to 450):

  * documents/s of each encoder, ABBA-ordered: each round runs torch, onnx, int8, static and
    the next round the reverse, so drift in the machine's speed (±30% here) hits every
    encoder alike; the ratio to torch is taken within each round and the median and range of
    the per-round ratios are printed. The student is timed cold (its chunk cache emptied
    before every trial, the worst case) and warm;
  * our embed path against the raw library with the same model: SentenceTransformer.encode
    (torch and the student) and onnxruntime fed by the transformers tokenizer (onnx, int8);
  * quality against torch fp32: mean cosine to its embeddings of the Lee stories, and
    recall@10 / nDCG@10 from ``embedsearch compare`` on corpora/lee-queries.jsonl and on the
    mini_newsgroup label task.

    nice -n 10 python benchmarks/bench_encoders.py [--rounds 6] [--student DIR] [--epochs 10]

Exports are built into a temporary data directory (seconds), and the student is distilled on
lee_background.cor unless --student names one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, texts: list[str]) -> float:
    t = time.perf_counter()
    fn(texts)
    return len(texts) / (time.perf_counter() - t)


def abba(encoders: dict, texts: list[str], rounds: int, before: dict | None = None) -> dict[str, list[float]]:
    """docs/s per encoder per round; odd rounds run in reverse order."""
    names = list(encoders)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            if before and name in before:
                before[name]()
            out[name].append(timed(encoders[name], texts))
    return out


def ratio_line(runs: dict[str, list[float]], base: str) -> list[str]:
    lines = []
    for name, speeds in runs.items():
        ratios = [s / b for s, b in zip(speeds, runs[base], strict=True)]
        lines.append(
            f"  {name:<14} {statistics.median(speeds):9.1f} docs/s (median of {len(speeds)})   "
            f"x torch: median {statistics.median(ratios):6.2f}  range {min(ratios):.2f}-{max(ratios):.2f}"
        )
    return lines


def raw_ort(embedder, tokenizer):
    """onnxruntime fed by the transformers tokenizer, length-sorted batches of 32: the raw path."""
    session = embedder.runner.session
    names = embedder.runner.inputs
    max_len = embedder.meta["max_seq_length"]

    def run(texts):
        order = np.argsort([-len(t) for t in texts])
        out = np.empty((len(texts), embedder.dim), dtype=np.float32)
        for i in range(0, len(texts), 32):
            idx = order[i : i + 32]
            f = tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=max_len, return_tensors="np")
            out[idx] = session.run(None, {k: f[k].astype(np.int64) for k in names})[0]
        return out

    return run


def compare(data_dir: Path, models: list[str], *extra: str) -> dict:
    out = data_dir / "cmp.json"
    cmd = [sys.executable, "-m", "embedsearch", "--data-dir", str(data_dir), "compare", *models, "--json", str(out), *extra]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def retrieval_rows(report: dict) -> dict[str, dict]:
    """label -> {metric: value} for nDCG@10, recall@10 and compare's own docs/s."""
    rows: dict[str, dict] = {}
    for m in report["models"]:
        label = m["label"]
        rows[label] = {}
        for name in ("ndcg@10", "recall@10", "docs_per_second"):
            v = (report["metrics"].get(name, {}).get("values") or {}).get(label)
            rows[label][name] = v.get("value") if isinstance(v, dict) else None
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6, help="ABBA rounds (even)")
    ap.add_argument("--student", default=None, help="a static model directory (default: distil one on lee_background)")
    ap.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs of the distilled student")
    ap.add_argument("--dim", type=int, default=256)
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from embedsearch.datasets import gensim_data, lee_documents
    from embedsearch.embedders import load_embedder
    from embedsearch.embedders.sentence import bundled_minilm_path

    tmp = Path(tempfile.mkdtemp(prefix="bench-encoders-"))
    data_dir = tmp / "data"
    models_dir = data_dir / "_models"
    student = args.student
    if student is None:
        student = str(tmp / "student")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "embedsearch", "train", "distill", str(gensim_data("lee_background.cor")),
                        "--encoding", "latin-1", "-o", student, "--dim", str(args.dim), "--epochs", str(args.epochs),
                        "--weighting", "corpus", "--device", "cpu", "--json"], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        print(f"distilled the student in {time.perf_counter() - t:.1f}s ({args.dim}-d, {args.epochs} epochs)")

    t = time.perf_counter()
    torch_e = load_embedder("minilm", device="cpu", cache=False)
    onnx_e = load_embedder("minilm-onnx", device="cpu", cache=False, models_dir=models_dir)
    int8_e = load_embedder("minilm-int8", device="cpu", cache=False, models_dir=models_dir)
    static_e = load_embedder(student, cache=False)
    print(f"loaded (and exported) the encoders in {time.perf_counter() - t:.1f}s; int8 file "
          f"{int8_e.meta['bytes'] / 2**20:.1f} MiB, fp32 {onnx_e.meta['bytes'] / 2**20:.1f} MiB")  # fmt: skip

    docs = [d.text for d in lee_documents()]
    queries = [json.loads(line)["query"] for line in (ROOT / "corpora/lee-queries.jsonl").read_text().splitlines() if line]
    queries = (queries * 10)[:450]
    encoders = {"torch": torch_e.embed, "onnx": onnx_e.embed, "int8": int8_e.embed, "static (cold)": static_e.embed}
    cold = {"static (cold)": lambda: static_e._chunk_cache.clear() if static_e._chunk_cache is not None else None}
    for e in encoders.values():  # warm-up: first calls allocate
        e(docs[:32])
    for label, texts in (("Lee stories", docs), ("short queries", queries)):
        runs = abba(encoders, texts, args.rounds, before=cold)
        warm = [timed(static_e.embed, texts) for _ in range(3)]
        print(f"\n{label} ({len(texts)} texts), {args.rounds} ABBA rounds:")
        print("\n".join(ratio_line(runs, "torch")))
        print(f"  {'static (warm)':<14} {statistics.median(warm):9.1f} docs/s (chunk cache filled; "
              f"x torch median {statistics.median(warm) / statistics.median(runs['torch']):.1f})")  # fmt: skip

    # our path against the raw library, same model, ABBA
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(str(bundled_minilm_path()))
    raw_static = SentenceTransformer(student, device="cpu")
    pairs = {
        "torch": (torch_e.embed, lambda x: torch_e.model.encode(x, batch_size=32, show_progress_bar=False)),
        "onnx": (onnx_e.embed, raw_ort(onnx_e, hf_tok)),
        "int8": (int8_e.embed, raw_ort(int8_e, hf_tok)),
        "static": (static_e.embed, lambda x: raw_static.encode(x, batch_size=32, show_progress_bar=False)),
    }
    print("\nour embed path / the raw library (SentenceTransformer.encode; onnxruntime + transformers tokenizer), Lee:")
    for name, (ours, raw) in pairs.items():
        # the student's chunk cache is emptied before each of its trials: it must not flatter us
        runs = abba({"ours": ours, "raw": raw}, docs, 4, before={"ours": cold["static (cold)"]} if name == "static" else None)
        ratios = [o / r for o, r in zip(runs["ours"], runs["raw"], strict=True)]
        print(f"  {name:<7} median {statistics.median(ratios):.2f}  range {min(ratios):.2f}-{max(ratios):.2f}")

    ref = torch_e.embed(docs)
    print("\nmean cosine to torch fp32 on the Lee stories:")
    for name, e in (("onnx", onnx_e), ("int8", int8_e)):
        c = (e.embed(docs) * ref).sum(axis=1)
        print(f"  {name:<7} mean {c.mean():.5f}  min {c.min():.5f}")
    print("  static  (another vector space: compared by retrieval below)")

    models = ["minilm", "minilm-onnx", "minilm-int8", f"student={student}"]
    for title, extra in (
        ("Lee queries (corpora/lee-queries.jsonl)", ("--corpus", "lee", "--queries", str(ROOT / "corpora/lee-queries.jsonl"))),
        ("mini_newsgroup label task", ("--corpus", "mini_newsgroup", "--label-field", "label")),
    ):
        report = compare(data_dir, models, *extra)
        print(f"\n{title}:")
        rows = retrieval_rows(report)
        base = rows.get("minilm", {})
        for label, r in rows.items():
            nd, rc = r.get("ndcg@10"), r.get("recall@10")
            rel = f"  ({nd / base['ndcg@10']:.3f}x minilm)" if nd is not None and base.get("ndcg@10") else ""
            print(f"  {label:<12} nDCG@10 {nd if nd is None else round(nd, 4)}  recall@10 {rc if rc is None else round(rc, 4)}"
                  f"{rel}  (compare's docs/s {r.get('docs_per_second') or 0:.0f})")  # fmt: skip
    print(f"\n(temporary files in {tmp})")


if __name__ == "__main__":
    main()
