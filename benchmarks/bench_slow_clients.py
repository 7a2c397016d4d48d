"""Searches while hostile clients hold connections (issue 24, item 1): `embedsearch serve` with its
defaults, 8 client threads searching, ABBA over rounds of an idle service (A) and one under attack
(B): 1,000 sockets that connect and send nothing, 20 slow-header senders (a header line
every second, never finishing) and 20 slow-body senders (headers, then a byte of body a second),
each sender reconnecting when it is closed. Prints the clients' p50/p99 and errors per condition,
the ratio B/A, and how long each idle socket stayed open against the header timeout.

    python benchmarks/bench_slow_clients.py [--seconds 20] [--rounds 2] [--idle 1000] [--model hashing]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "embedsearch", "--data-dir", str(data), "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the service did not become ready")


def _clients(port: int, seconds: float, n: int = 8) -> tuple[list[float], int]:
    body = json.dumps({"query": "interest rates and the bank", "k": 10}).encode()
    lat: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def run() -> None:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                conn.request("POST", "/collections/news/search", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except OSError:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            with lock:
                if ok:
                    lat.append(time.perf_counter() - t)
                else:
                    errors[0] += 1
        conn.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors[0]


class Attack:
    """Idle sockets (opened once, closing times recorded) and slow senders (reconnecting)."""

    def __init__(self, port: int, idle: int, slow: int) -> None:
        self.port, self.stop = port, threading.Event()
        self.opened = time.monotonic()
        self.idle = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(idle)]
        self.idle_open_s: list[float] = []
        self.threads = [threading.Thread(target=self._slow, args=(b"body" if i % 2 else b"headers",)) for i in range(2 * slow)]
        self.threads.append(threading.Thread(target=self._watch_idle))
        for t in self.threads:
            t.start()

    def _watch_idle(self) -> None:
        import selectors

        sel = selectors.DefaultSelector()
        for s in self.idle:
            sel.register(s, selectors.EVENT_READ)
        left = len(self.idle)
        while left and not self.stop.is_set():
            for key, _ in sel.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self.idle_open_s.append(time.monotonic() - self.opened)
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    left -= 1

    def _slow(self, kind: bytes) -> None:
        while not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
                if kind == b"body":
                    s.sendall(b"POST /collections/news/search HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
                else:
                    s.sendall(b"GET /health HTTP/1.1\r\n")
                while not self.stop.is_set():
                    time.sleep(1)
                    s.sendall(b" " if kind == b"body" else b"X-Slow: 1\r\n")
            except OSError:
                pass  # closed by the server: connect again

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        for s in self.idle:
            try:
                s.close()
            except OSError:
                pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=20)
    ap.add_argument("--model", default="hashing")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # this process holds the attack's sockets

    from embedsearch.config import Settings
    from embedsearch.corpus import Document
    from embedsearch.embedders import load_embedder
    from embedsearch.store import Store

    data = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    model = load_embedder(args.model)
    news = Store(Settings.from_env(data)).create("news", model, lexical=True)
    from embedsearch.datasets import lee_documents

    news.add_documents([Document(d.id, d.text, {}) for d in lee_documents()], model)
    port = _port()
    proc = _serve(data, port)
    print(f"load before: {os.getloadavg()}; {args.idle} idle sockets, {args.slow} slow-header and {args.slow} slow-body senders, "
          f"8 searching clients, {args.seconds:g} s per phase, model {args.model}")
    results = {"A": {"lat": [], "errors": 0}, "B": {"lat": [], "errors": 0}}
    idle_open = []
    try:
        _clients(port, 3)  # warm-up
        for _ in range(args.rounds):
            for cond in "ABBA":
                attack = Attack(port, args.idle, args.slow) if cond == "B" else None
                lat, errors = _clients(port, args.seconds)
                if attack is not None:
                    time.sleep(max(0.0, 12 - args.seconds))  # let every idle socket reach the 10 s timeout
                    attack.close()
                    idle_open.append((len(attack.idle_open_s), max(attack.idle_open_s, default=float("nan"))))
                results[cond]["lat"] += lat
                results[cond]["errors"] += errors
                print(f"  {cond}: {len(lat)} searches, p50 {statistics.median(lat) * 1e3:.2f} ms, "
                      f"p99 {statistics.quantiles(lat, n=100)[98] * 1e3:.2f} ms, errors {errors}", flush=True)
    finally:
        proc.terminate()
        err = proc.communicate(timeout=30)[1]
    print(f"load after: {os.getloadavg()}")
    for cond, r in results.items():
        lat = r["lat"]
        r["p50_ms"] = statistics.median(lat) * 1e3
        r["p99_ms"] = statistics.quantiles(lat, n=100)[98] * 1e3
        r["qps"] = len(lat) / (args.seconds * 2 * args.rounds)
        what = "idle service" if cond == "A" else "under attack"
        print(f"{cond} ({what}): p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, {r['qps']:.0f}/s, errors {r['errors']}")
    a, b = results["A"], results["B"]
    print(f"ratio B/A: p50 {b['p50_ms'] / a['p50_ms']:.2f}, p99 {b['p99_ms'] / a['p99_ms']:.2f}")
    for closed, longest in idle_open:
        print(f"idle sockets closed by the service: {closed} of {args.idle}, the last after {longest:.1f} s (timeout 10 s)")
    print("'Too many open files' in the service's log:", "Too many open files" in err)


if __name__ == "__main__":
    main()
