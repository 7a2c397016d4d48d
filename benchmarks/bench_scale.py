"""Scale benchmark for the segment store (issue: "collections that scale").

    python benchmarks/bench_scale.py upserts [--sizes 10000,100000,1000000]
    python benchmarks/bench_scale.py ingest  [--n 100000]
    python benchmarks/bench_scale.py large   [--n 1000000] [--spec IVF4096,PQ48,Refine]
    python benchmarks/bench_scale.py auto    [--n 100000]

upserts: collections of 10k / 100k / 1M documents (256-d, the hashing model's dimension;
  vectors through add_vectors, spec IVF1024,Flat as in the issue). For each size: the time to
  open the collection and run one search in a fresh process, that process's resident memory
  (anonymous and file-backed pages), and single-document upsert latency through
  add_documents with the hashing model (p50 of 20). Prints the 1M / 10k ratios.
ingest: bulk ingest of N real paragraphs (dict-gcide + dict-foldoc; synthetic sentences
  without them) with the hashing model into IVF1024,Flat, against a plain script doing the
  same embedding + raw FAISS train/add/write + SQLite executemany. ABBA order, ratios.
large: N synthetic clustered 384-d vectors through add_vectors into an IVF-PQ + Refine
  collection: build time, bytes on disk, resident memory of a fresh serving process,
  recall@10 against exact search, queries/s.
auto: the candidates for ``auto`` at N vectors (Flat, HNSW32, IVF): build time and recall.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def clustered(n: int, dim: int, seed: int, clusters: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def chunks(n: int, dim: int, size: int = 250_000, first: int | None = None):
    """The large data set, chunk by chunk (seeded per chunk, so it can be regenerated); the
    first chunk may be larger (the batch a trained spec is trained on)."""
    bounds = [0] + list(range(first or size, n, size)) + [n]
    bounds = sorted(set(b for b in bounds if b <= n))
    for i, (start, stop) in enumerate(zip(bounds, bounds[1:], strict=False)):
        yield start, clustered(stop - start, dim, seed=1000 + i)


class Fixed:
    """A stand-in embedder for add_vectors: a name, a dimension and a fingerprint."""

    def __init__(self, dim: int, fingerprint: str) -> None:
        self.name = self.spec = f"synthetic-{dim}"
        self.dim = dim
        self.fingerprint = fingerprint

    def config(self):
        return {"options": {}}


def _store(path: str):
    from embedsearch.config import Settings
    from embedsearch.store import Store

    return Store(Settings.from_env(path))


OPEN_SCRIPT = r"""
import json, sys, time
t = time.perf_counter()
from embedsearch.config import Settings
from embedsearch.store import Store
import numpy as np
t_import = time.perf_counter() - t
t = time.perf_counter()
coll = Store(Settings.from_env(sys.argv[1])).open(sys.argv[2])
view = coll.view()
q = np.random.default_rng(0).standard_normal((1, coll.dim)).astype(np.float32)
q /= np.linalg.norm(q)
coll.search_vectors(q, 10)
t_open = time.perf_counter() - t
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
kb = lambda k: int(status[k].split()[0]) / 1024
print(json.dumps({"open_and_search_s": t_open, "rss_mb": kb("VmRSS"), "anon_mb": kb("RssAnon"), "file_mb": kb("RssFile"),
                  "segments": len(view.segments())}))
"""


def measure_open(data_dir: str, name: str) -> dict:
    out = subprocess.run([sys.executable, "-c", OPEN_SCRIPT, data_dir, name], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def process_baseline() -> dict:
    script = OPEN_SCRIPT.split("t = time.perf_counter()\ncoll")[0] + (
        "status = dict(line.split(':', 1) for line in open('/proc/self/status') if ':' in line)\n"
        "print(json.dumps({'anon_mb': int(status['RssAnon'].split()[0]) / 1024}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def cmd_upserts(args) -> None:
    from embedsearch.corpus import Document
    from embedsearch.embedders import load_embedder

    hashing = load_embedder("hashing")
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = tempfile.mkdtemp(prefix="bench-scale-", dir=args.tmp)
    store = _store(tmp)
    base = process_baseline()
    print(f"data in {tmp}; a bare process (imports only) holds {base['anon_mb']:.0f} MB of anonymous memory")
    rows = []
    for n in sizes:
        name = f"u{n}"
        coll = store.create(name, hashing, "IVF1024,Flat")
        t = time.perf_counter()
        for start, x in chunks(n, 256, 200_000):
            docs = [Document(f"d{start + i}", f"synthetic document {start + i}", {"g": (start + i) % 100}) for i in range(len(x))]
            coll.add_vectors(docs, x)
        build = time.perf_counter() - t
        opens = [measure_open(tmp, name) for _ in range(3)]
        lat = []
        for i in range(args.upserts):
            doc = Document(f"d{i * 7}", f"an updated text {i} about rivers and rain", {"g": 1})
            t = time.perf_counter()
            coll.add_documents([doc], hashing)
            lat.append(time.perf_counter() - t)
        new = []
        for i in range(args.upserts):
            doc = Document(f"new-{i}", f"a new document {i} about mountains", {"g": 2})
            t = time.perf_counter()
            coll.add_documents([doc], hashing)
            new.append(time.perf_counter() - t)
        o = min(opens, key=lambda r: r["open_and_search_s"])
        row = {
            "n": n,
            "build_s": build,
            "open_s": o["open_and_search_s"],
            "anon_mb": o["anon_mb"] - base["anon_mb"],
            "file_mb": o["file_mb"],
            "segments": o["segments"],
            "update_p50_ms": 1000 * statistics.median(lat),
            "insert_p50_ms": 1000 * statistics.median(new),
            "bytes_on_disk": coll.info()["index_bytes"],
        }
        rows.append(row)
        print(
            f"n={n:>9,}  build {build:7.1f} s  open+search {row['open_s'] * 1000:7.1f} ms  "
            f"anon {row['anon_mb']:7.1f} MB  file-backed {row['file_mb']:7.1f} MB  segments {row['segments']:3}  "
            f"update p50 {row['update_p50_ms']:6.1f} ms  insert p50 {row['insert_p50_ms']:6.1f} ms",
            flush=True,
        )
    first, last = rows[0], rows[-1]
    print(
        f"ratios {last['n']:,} / {first['n']:,}: update p50 {last['update_p50_ms'] / first['update_p50_ms']:.2f}x, "
        f"insert p50 {last['insert_p50_ms'] / first['insert_p50_ms']:.2f}x, open+search {last['open_s'] / first['open_s']:.2f}x, "
        f"anonymous memory {last['anon_mb'] / max(first['anon_mb'], 1):.2f}x"
    )
    _save("upserts", {"rows": rows, "baseline_anon_mb": base["anon_mb"]})


def _paragraphs(n: int) -> list[str]:
    sys.path.insert(0, str(HERE))
    try:
        from dictd_corpus import write_dictd_corpus

        path = Path(tempfile.gettempdir()) / "bench-dictd.txt"
        if not path.exists():
            write_dictd_corpus(path)
        out = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.append(line.strip())
                if len(out) == n:
                    break
        if len(out) == n:
            return out
    except SystemExit:
        pass
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(20_000)]
    return [" ".join(rng.choice(words, 40)) for _ in range(n)]


def _plain_ingest(texts: list[str], embedder, path: str) -> float:
    """What a user would write by hand: embed, train/add IVF1024,Flat, write it, insert rows."""
    import faiss

    t = time.perf_counter()
    os.makedirs(path, exist_ok=True)
    conn = sqlite3.connect(os.path.join(path, "plain.db"))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE docs (row_id INTEGER PRIMARY KEY, external_id TEXT UNIQUE, text TEXT, meta TEXT)")
    vecs = np.vstack([embedder.embed(texts[i : i + 256]) for i in range(0, len(texts), 256)])
    index = faiss.index_factory(vecs.shape[1], "IVF1024,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(vecs[np.random.default_rng(0).choice(len(vecs), min(len(vecs), 256 * 1024), replace=False)])
    index.add_with_ids(vecs, np.arange(len(vecs), dtype=np.int64))
    faiss.write_index(index, os.path.join(path, "plain.faiss"))
    rows = [(i, f"p{i}", t_, json.dumps({"n": i})) for i, t_ in enumerate(texts)]
    conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return time.perf_counter() - t


def _our_ingest(texts: list[str], embedder, path: str) -> float:
    from embedsearch.corpus import Document

    t = time.perf_counter()
    store = _store(path)
    coll = store.create("ingest", embedder, "IVF1024,Flat")
    coll.add_documents((Document(f"p{i}", t_, {"n": i}) for i, t_ in enumerate(texts)), embedder)
    return time.perf_counter() - t


def cmd_ingest(args) -> None:
    from embedsearch.embedders import load_embedder
    from embedsearch.store.metadata import dispose_engines

    texts = _paragraphs(args.n)
    hashing = load_embedder("hashing")
    print(f"{len(texts):,} paragraphs, mean {np.mean([len(t) for t in texts]):.0f} characters; hashing model, IVF1024,Flat")
    times = {"ours": [], "plain": []}
    for side in ("ours", "plain", "plain", "ours", "ours", "plain"):  # ABBA, twice
        path = tempfile.mkdtemp(prefix=f"bench-ingest-{side}-", dir=args.tmp)
        t = (_our_ingest if side == "ours" else _plain_ingest)(texts, hashing, path)
        dispose_engines()
        times[side].append(t)
        print(f"  {side:5} {t:7.1f} s", flush=True)
    pairs = [o / p for o, p in zip(times["ours"], times["plain"], strict=True)]
    print(f"ours / plain: {', '.join(f'{r:.2f}' for r in pairs)} (median {statistics.median(pairs):.2f})")
    _save("ingest", {"n": len(texts), **times, "ratios": pairs})


def cmd_large(args) -> None:

    from embedsearch.corpus import Document
    from embedsearch.store.specs import parse_spec

    dim, n, k, nq = 384, args.n, 10, args.queries
    tmp = tempfile.mkdtemp(prefix="bench-large-", dir=args.tmp)
    store = _store(tmp)
    coll = store.create("large", Fixed(dim, f"synthetic-{dim}"), args.spec)
    print(f"{n:,} clustered {dim}-d vectors into {args.spec} in {tmp}", flush=True)
    t = time.perf_counter()
    first = min(n, parse_spec(args.spec, dim).max_train_points())  # the first batch trains the template
    for start, x in chunks(n, dim, args.chunk, first):
        coll.add_vectors([Document(f"v{start + i}", "", {}) for i in range(len(x))], x, commit_every=len(x))
        print(f"  {start + len(x):>11,} vectors  {time.perf_counter() - t:7.1f} s", flush=True)
    build = time.perf_counter() - t
    info = coll.info()
    disk = info["index_bytes"]
    db = sum(p.stat().st_size for p in Path(tmp).glob("embedsearch.db*"))
    q = clustered(nq, dim, seed=999)
    best_i = exact_truth(q, k, n, dim, args.chunk, first)
    serve = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, tmp, "large", str(nq)], input=q.tobytes(), capture_output=True, check=True
    )
    res = json.loads(serve.stdout.decode().splitlines()[-1])
    found = np.asarray(res["ids"], dtype=np.int64)
    recall = float(np.mean([len(set(f) & set(g)) / k for f, g in zip(found, best_i, strict=True)]))
    out = {
        "n": n,
        "spec": args.spec,
        "build_s": build,
        "segment_bytes": disk,
        "sql_bytes": db,
        "segments": len(info["segments"]),
        "recall@10": recall,
        **{key: res[key] for key in ("open_s", "qps", "rss_mb", "anon_mb", "file_mb")},
    }
    print(json.dumps(out, indent=1))
    _save(f"large-{n}", out)


def exact_truth(q: np.ndarray, k: int, n: int, dim: int, chunk: int, first: int) -> np.ndarray:
    """Row ids of the exact top k over the large data set, chunk by chunk (the vectors never
    sit in memory all at once)."""
    import faiss

    from embedsearch.store.topk import sort_topk

    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(q), k), -1, dtype=np.int64)
    for start, x in chunks(n, dim, chunk, first):
        idx = faiss.IndexFlatIP(dim)
        idx.add(x)
        s, i = idx.search(q, k)
        best_s, best_i = sort_topk(np.hstack([best_s, s]), np.hstack([best_i, i + start]), k)
    return best_i


SERVE_SCRIPT = r"""
import json, sys, time
import numpy as np
from embedsearch.config import Settings
from embedsearch.store import Store
nq = int(sys.argv[3])
t = time.perf_counter()
coll = Store(Settings.from_env(sys.argv[1])).open(sys.argv[2])
view = coll.view()
open_s = time.perf_counter() - t
q = np.frombuffer(sys.stdin.buffer.read(), dtype=np.float32).reshape(nq, coll.dim)
_, ids = view.search(q[:50], 10)  # warm up
t = time.perf_counter()
_, ids = view.search(q, 10)
qps = nq / (time.perf_counter() - t)
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
kb = lambda k: int(status[k].split()[0]) / 1024
print(json.dumps({"open_s": open_s, "qps": qps, "rss_mb": kb("VmRSS"), "anon_mb": kb("RssAnon"), "file_mb": kb("RssFile"),
                  "ids": ids.tolist()}))
"""


def cmd_auto(args) -> None:
    import faiss

    from embedsearch.store.specs import auto_spec, default_nprobe, new_faiss_index, parse_spec

    n, dim, k = args.n, 384, 10
    x = clustered(n, dim, 0)
    q = clustered(1000, dim, 1)
    exact = faiss.IndexFlatIP(dim)
    exact.add(x)
    _, truth = exact.search(q, k)
    print(f"n={n:,} dim={dim}: auto -> {auto_spec(n)}")
    results = {}
    for text in ("Flat", "HNSW32", auto_spec(n) if auto_spec(n) != "Flat" else "IVF256,Flat"):
        spec = parse_spec(text)
        t = time.perf_counter()
        index = new_faiss_index(dim, spec, "cosine", x[: spec.max_train_points()] if spec.needs_training else None)
        index.add_with_ids(x, np.arange(n, dtype=np.int64))
        build = time.perf_counter() - t
        params = None
        if spec.ivf:
            params = faiss.SearchParametersIVF(nprobe=default_nprobe(spec.nlist))
        elif spec.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=128)
        t = time.perf_counter()
        _, found = index.search(q, k, params=params)
        qps = len(q) / (time.perf_counter() - t)
        recall = float(np.mean([len(set(f) & set(g)) / k for f, g in zip(found, truth, strict=True)]))
        results[text] = {"build_s": build, "recall@10": recall, "qps": qps}
        print(f"  {text:14} build {build:7.2f} s  recall@10 {recall:.3f}  {qps:8.0f} queries/s", flush=True)
    _save(f"auto-{n}", results)


def _save(kind: str, data: dict) -> None:
    out = HERE / "results" / f"scale-{kind}-2cpu-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"saved {out.relative_to(HERE.parent)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tmp", default=None, help="where the collections are built (default: the system temp dir)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("upserts")
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--upserts", type=int, default=20)
    p = sub.add_parser("ingest")
    p.add_argument("--n", type=int, default=100_000)
    p = sub.add_parser("large")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--spec", default="IVF4096,PQ48,Refine")
    p.add_argument("--chunk", type=int, default=250_000)
    p.add_argument("--queries", type=int, default=1000)
    p = sub.add_parser("auto")
    p.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    {"upserts": cmd_upserts, "ingest": cmd_ingest, "large": cmd_large, "auto": cmd_auto}[args.cmd](args)


if __name__ == "__main__":
    main()
