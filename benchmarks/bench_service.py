"""A bounded load run against the HTTP service on loopback, beside the library in-process.

    python benchmarks/bench_service.py                       # 30 s each, 8 clients, MiniLM
    python benchmarks/bench_service.py --seconds 10 --clients 4 --model hashing

The service runs as its own process (``embedsearch serve``) over a collection of gensim's
Lee corpus (350 news documents); N client threads post text queries for ``--seconds``, once
with the service batching concurrent queries into one model call (the default) and once with
``--no-batching``. Then the same N threads call :func:`embedsearch.search.search` in this
process for the same time. Printed: throughput, p50/p99 latency, errors (must be 0), and
service/in-process throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from embedsearch.config import Settings
from embedsearch.demo import lee_documents
from embedsearch.embedders import load_embedder
from embedsearch.search import search
from embedsearch.store import Store

QUERIES = [
    "interest rates and inflation", "bushfires near Sydney", "cricket test match", "Middle East peace talks",
    "election campaign and voters", "Taliban and Afghanistan", "airline collapse and jobs", "stock market falls",
    "asylum seekers boat", "space station mission", "drought and farmers", "police investigation into murder",
    "world cup football", "hospital waiting lists", "company profit results", "tennis open final",
]  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def batching_metrics(text: str) -> dict:
    """The server's query-batching counters from its /metrics (Prometheus text format)."""
    from prometheus_client.parser import text_string_to_metric_families

    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return {
        "enabled": bool(values.get("embedsearch_query_batching_enabled")),
        "model_calls": int(values.get("embedsearch_query_batching_model_calls_total", 0)),
        "queries": int(values.get("embedsearch_query_batching_queries_total", 0)),
    }


def load(call, clients: int, seconds: float) -> dict:
    """``clients`` threads call ``call(query)`` until the deadline; latencies in ms."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_line = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        start_line.wait()
        n = i
        while time.perf_counter() < deadline:
            q = QUERIES[n % len(QUERIES)]
            n += clients
            t = time.perf_counter()
            try:
                ok = call(q)
            except Exception:  # counted, not hidden
                ok = False
            latencies[i].append((time.perf_counter() - t) * 1000)
            if not ok:
                errors[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    start_line.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    flat = [x for part in latencies for x in part]
    return {"requests": len(flat), "per_second": round(len(flat) / elapsed, 1), "p50_ms": round(percentile(flat, 0.5), 2),
            "p99_ms": round(percentile(flat, 0.99), 2), "errors": sum(errors)}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        settings = Settings.from_env(Path(tmp))
        embedder = load_embedder(args.model, device="cpu")
        coll = Store(settings).create("bench", embedder, "Flat")
        coll.add_documents(list(lee_documents()), embedder)
        env = {**os.environ, "EMBEDSEARCH_HOME": tmp}

        def in_process(q: str) -> bool:
            return len(search(coll, [q], args.k, embedder=embedder)[0]) == args.k

        def run_service(extra: list[str]) -> dict:
            port = free_port()
            cmd = [sys.executable, "-m", "embedsearch", "serve", "--port", str(port), "--device", "cpu", *extra]
            server = subprocess.Popen(cmd, env=env)
            base = f"http://127.0.0.1:{port}"
            local = threading.local()

            def via_service(q: str) -> bool:
                client = getattr(local, "client", None)
                if client is None:
                    client = local.client = httpx.Client(base_url=base, timeout=30)
                r = client.post("/collections/bench/search", json={"query": q, "k": args.k})
                return r.status_code == 200 and len(r.json()["hits"]) == args.k

            try:
                for _ in range(300):
                    try:
                        if httpx.get(base + "/health", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                for q in QUERIES:  # the server loads its model on the first query
                    via_service(q)
                result = load(via_service, args.clients, args.seconds)
                result["server_batching"] = batching_metrics(httpx.get(base + "/metrics").text)
                return result
            finally:
                server.terminate()
                server.wait(10)

        for q in QUERIES:
            in_process(q)
        service = run_service([])
        unbatched = run_service(["--no-batching"])
        library = load(in_process, args.clients, args.seconds)
    ratio = service["per_second"] / library["per_second"]
    print(
        f"model {args.model}, {coll.count()} documents, k={args.k}, {args.clients} concurrent clients, {args.seconds:.0f} s each"
    )
    print(f"service, batched queries (HTTP, loopback): {service}")
    print(f"service, one query per model call      : {unbatched}")
    print(f"library in-process, one query per call : {library}")
    plain = unbatched["per_second"] / library["per_second"]
    print(f"service / in-process throughput: {ratio:.3f} (batched), {plain:.3f} (unbatched)")
    print(json.dumps({"service": service, "service_unbatched": unbatched, "library": library, "ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
