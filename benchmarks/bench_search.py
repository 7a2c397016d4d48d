"""Search benchmark: every index spec on ≥100k synthetic 384-d vectors, ours vs raw FAISS.

For each spec, in one process and on the same index object:
  * build time, recall@10 against exact search, queries/s;
  * the time of our unfiltered search path (Collection.search_vectors: generation check,
    read lock, FAISS, metadata join in SQL) against calling FAISS directly: the ratio;
  * a filtered search (filter compile + SQL id selection + IDSelector/exact + join) keeping 2%.
Then embedding throughput of our SentenceEmbedder against SentenceTransformer.encode.

    python benchmarks/bench_search.py [--n 100000] [--queries 1000] [--specs 'Flat;HNSW32;IVF1024,Flat']
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np


def clustered(n: int, dim: int, seed: int, clusters: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_specs(n: int, nq: int, specs: list[str], k: int = 10) -> None:
    import faiss

    from embedsearch.config import Settings
    from embedsearch.corpus import Document
    from embedsearch.embedders.base import Embedder
    from embedsearch.store import Store

    class Synthetic(Embedder):  # only its name, dim and fingerprint are used: vectors are given
        name = spec = "synthetic"
        dim = 384
        fingerprint = "synthetic-384"

        def embed_batch(self, texts):
            raise NotImplementedError

    dim = 384
    x = clustered(n, dim, 0)
    q = clustered(nq, dim, 1)
    exact = faiss.IndexFlatIP(dim)
    exact.add(x)
    _, truth = exact.search(q, k)
    docs = [Document(f"doc-{i}", f"synthetic document {i}", {"group": i % 50}) for i in range(n)]
    tmp = tempfile.mkdtemp(prefix="bench-search-")
    store = Store(Settings.from_env(tmp))
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; n={n} dim={dim} queries={nq} k={k}")
    cols = ("build s", "recall@10", "raw q/s", "ours q/s", "ours/raw", "filtered q/s", "bytes/vec")
    header = f"{'spec':14} " + " ".join(f"{c:>{max(9, len(c))}}" for c in cols)
    print(header)
    print("-" * len(header))
    for spec in specs:
        coll = store.create(spec.replace(",", "_").lower(), Synthetic(), spec)
        t = time.perf_counter()
        coll.add_vectors(docs, x)
        build = time.perf_counter() - t
        coll.optimize()  # one sealed segment: raw FAISS below searches the very same index
        view = coll.view()
        (seg,) = view.sealed.values()
        params = seg._params(k, None, None)
        _, found = view.search(q, k)  # our result (a Refine spec re-ranks; raw FAISS below does not)
        recall = np.mean([len(set(f) & set(g)) / k for f, g in zip(found, truth, strict=True)])
        raw = best_of(lambda seg=seg, params=params: seg.index.search(q, k, params=params))
        ours = best_of(lambda coll=coll: coll.search_vectors(q, k))
        fq = q[: min(nq, 200)]
        filtered = best_of(lambda coll=coll, fq=fq: coll.search_vectors(fq, k, where={"group": 7}), repeat=3)  # 2% of documents
        got = coll.search_vectors(fq, k, where={"group": 7})
        assert all(len(h) == k for h in got), "filtered search came back short"
        size = coll.info()["index_bytes"]
        print(
            f"{seg.meta.spec:14} {build:8.1f} {recall:9.3f} {nq / raw:9.0f} {nq / ours:9.0f} {ours / raw:9.3f}"
            f" {len(fq) / filtered:12.0f} {size / n:9.0f}"
        )
        store.drop(coll.name)


def bench_embedding(repeat: int = 3) -> None:
    from embedsearch.demo import lee_documents
    from embedsearch.embedders import load_embedder

    texts = [d.text for d in lee_documents()]
    emb = load_embedder("minilm", device="cpu")
    model = emb.model
    emb.embed(texts[:64])
    model.encode(texts[:64])
    ours, raw = [], []
    for _ in range(repeat):  # interleaved so drift in machine load hits both alike
        t = time.perf_counter()
        model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        raw.append(time.perf_counter() - t)
        t = time.perf_counter()
        emb.embed(texts)
        ours.append(time.perf_counter() - t)
    r, o = statistics.median(raw), statistics.median(ours)
    print(f"\nembedding {len(texts)} Lee documents with MiniLM on CPU (median of {repeat}):")
    print(f"  SentenceTransformer.encode: {len(texts) / r:7.1f} docs/s")
    print(f"  embedsearch embedder:       {len(texts) / o:7.1f} docs/s   ratio ours/raw throughput = {r / o:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    specs = "Flat;HNSW32;SQ8;IVF1024,Flat;IVF1024,SQ8;IVF1024,PQ48;IVF1024,PQ48,Refine"
    ap.add_argument("--specs", default=specs, help="';'-separated")
    ap.add_argument("--skip-embedding", action="store_true")
    args = ap.parse_args()
    specs = [s.strip() for s in args.specs.split(";") if s.strip()]
    bench_specs(args.n, args.queries, specs)
    if not args.skip_embedding:
        bench_embedding()


if __name__ == "__main__":
    main()
