"""Recall@10 and queries/s of a Refine collection against the refine factor and nprobe.

    python benchmarks/bench_scale.py large --n 1000000 --spec IVF1024,PQ48,Refine   # builds DATA_DIR
    python benchmarks/refine_sweep.py DATA_DIR

Regenerates bench_scale's data set (1M clustered 384-d vectors) and 300 of its queries, computes
the exact top 10, and searches the collection ``large`` in DATA_DIR at each setting.
"""

import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
import bench_scale as b

import embedsearch.store.segments as segmod
from embedsearch.config import Settings
from embedsearch.store import Store
from embedsearch.store.specs import parse_spec

n, dim, nq, k = 1_000_000, 384, 300, 10
q = b.clustered(1000, dim, seed=999)[:nq]
first = min(n, parse_spec("IVF1024,PQ48,Refine", dim).max_train_points())
best_i = b.exact_truth(q, k, n, dim, 250_000, first)
coll = Store(Settings.from_env(sys.argv[1])).open("large")
view = coll.view()
for nprobe in (128, 256):
    for rf in (4, 10, 25, 50):
        segmod.REFINE_FACTOR = rf
        t = time.perf_counter()
        _, ids = view.search(q, k, nprobe=nprobe)
        dt = time.perf_counter() - t
        r = np.mean([len(set(f) & set(g)) / k for f, g in zip(ids, best_i, strict=True)])
        print(f"nprobe {nprobe:4} refine x{rf:3}: recall@10 {r:.3f}  {nq / dt:7.0f} q/s", flush=True)
