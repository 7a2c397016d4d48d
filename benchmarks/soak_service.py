"""Soak the HTTP service under concurrent clients: correctness under load, not speed.

    python benchmarks/soak_service.py --minutes 10                        # SQLite
    python benchmarks/soak_service.py --minutes 10 --db postgresql+psycopg2://...   # PostgreSQL
    python benchmarks/soak_service.py --minutes 1 --clients 4             # a quick look

Starts ``embedsearch serve`` on 127.0.0.1 over a fresh data directory (seals at 64 vectors, so
seals and merges run all the time) with a collection of 200 documents that are never deleted.
Then ``--clients`` threads, each with its own documents, send 80% searches (k=10), 15% upserts
and 5% deletes of their own documents for ``--minutes``, while a merge-forcing writer (another
process) runs ``embedsearch index optimize`` in a loop. Every client remembers what the service
told it (the text of each document it wrote and got 200 for, and what it deleted).

Checks, printed and saved as JSON: no 5xx or transport errors, every search returned exactly 10
distinct documents (200 always exist, so a short answer is a bug), every hit's text is one its
writer was told it committed, at the end every client's documents are exactly what it was told,
and ``index verify`` passes. Exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

STABLE = 200
K = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(base: list[str], *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "embedsearch", *base, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)


class Client(threading.Thread):
    def __init__(self, n: int, url: str, name: str, stop: threading.Event, seed: int) -> None:
        super().__init__(daemon=True)
        self.n, self.url, self.name, self.stop = n, url, name, stop
        self.rng = random.Random(seed)
        self.told: dict[str, str] = {}  # id -> text the service acknowledged
        self.ever: set[str] = set()  # every text this client sent (a hit may show an earlier one while others run)
        self.counts = {"search": 0, "upsert": 0, "delete": 0, "short": 0, "errors": 0, "foreign_text": 0}
        self.problems: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            version = 0
            while not self.stop.is_set():
                r = self.rng.random()
                try:
                    if r < 0.80:
                        q = f"topic {self.rng.randrange(50)} words {self.rng.randrange(13)}"
                        resp = http.post(f"/collections/{self.name}/search", json={"query": q, "k": K, "mode": "dense"})
                        self.counts["search"] += 1
                        if resp.status_code != 200:
                            raise RuntimeError(f"search: {resp.status_code} {resp.text[:200]}")
                        hits = resp.json()["hits"]
                        ids = [h["id"] for h in hits]
                        if len(hits) != K or len(set(ids)) != K:
                            self.counts["short"] += 1
                            self.problems.append(f"search returned {len(hits)} hits ({len(set(ids))} distinct)")
                        for h in hits:
                            if h["id"].startswith(f"c{self.n}-") and h["text"] not in self.ever:
                                self.counts["foreign_text"] += 1
                                self.problems.append(f"{h['id']} has text {h['text']!r}, which its writer never sent")
                            if h["id"].startswith("s") and h["text"] != f"{h['id']} topic {int(h['id'][1:]) % 50}":
                                self.counts["foreign_text"] += 1
                                self.problems.append(f"stable document {h['id']} has text {h['text']!r}")
                    elif r < 0.95:
                        version += 1
                        doc_id = f"c{self.n}-{self.rng.randrange(20)}"
                        text = f"{doc_id} v{version} topic {self.rng.randrange(50)} words {version % 13}"
                        self.ever.add(text)
                        body = {"documents": [{"id": doc_id, "text": text}]}
                        resp = http.post(f"/collections/{self.name}/documents", json=body)
                        self.counts["upsert"] += 1
                        if resp.status_code != 200:
                            raise RuntimeError(f"upsert: {resp.status_code} {resp.text[:200]}")
                        self.told[doc_id] = text
                    else:
                        mine = sorted(self.told)
                        if not mine:
                            continue
                        doc_id = self.rng.choice(mine)
                        resp = http.delete(f"/collections/{self.name}/documents/{doc_id}")
                        self.counts["delete"] += 1
                        if resp.status_code != 200:
                            raise RuntimeError(f"delete: {resp.status_code} {resp.text[:200]}")
                        del self.told[doc_id]
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    self.counts["errors"] += 1
                    self.problems.append(f"{type(exc).__name__}: {exc}")


def optimizer(base: list[str], name: str, stop: threading.Event, log: list[str]) -> None:
    """The merge-forcing writer: seal, merge and purge in a loop, from another process."""
    while not stop.is_set():
        r = cli(base, "index", "optimize", name, "--json")
        log.append("ok" if r.returncode == 0 else f"exit {r.returncode}: {r.stderr[-300:]}")
        stop.wait(5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--db", default=None, help="a SQLAlchemy URL (default: SQLite in the data directory)")
    ap.add_argument("--seal-at", type=int, default=64)
    ap.add_argument("--save", default=None)
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="soak-"))
    name = f"soak{os.getpid()}"
    base = ["--data-dir", str(data)] + (["--db", args.db] if args.db else [])
    env = {**os.environ, "EMBEDSEARCH_SEAL_AT": str(args.seal_at)}
    assert cli(base, "index", "create", name, "--model", "hashing", "--index", "Flat", env=env).returncode == 0
    seed = data / "seed.jsonl"
    seed.write_text("".join(json.dumps({"id": f"s{i}", "text": f"s{i} topic {i % 50}"}) + "\n" for i in range(STABLE)))
    assert cli(base, "index", "add", name, str(seed), env=env).returncode == 0
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "embedsearch", *base, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    load_before = os.getloadavg()
    stop = threading.Event()
    clients = [Client(i, url, name, stop, seed=1000 + i) for i in range(args.clients)]
    opt_log: list[str] = []
    opt = threading.Thread(target=optimizer, args=(base, name, stop, opt_log), daemon=True)
    started = time.time()
    for c in clients:
        c.start()
    opt.start()
    time.sleep(args.minutes * 60)
    stop.set()
    for c in clients:
        c.join(120)
    opt.join(300)
    elapsed = time.time() - started
    # what the service holds now, against what every client was told
    mismatches = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for c in clients:
            for i in range(20):
                doc_id = f"c{c.n}-{i}"
                r = http.get(f"/collections/{name}/documents/{doc_id}")
                want = c.told.get(doc_id)
                got = r.json().get("text") if r.status_code == 200 else None
                if got != want:
                    mismatches.append({"id": doc_id, "told": want, "holds": got, "status": r.status_code})
        count = http.post(f"/collections/{name}/count", json={}).json()
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
    verify = cli(base, "index", "verify", name, "--json")
    raw = verify.stdout.strip()
    report = json.loads(raw) if raw.startswith("{") else {"ok": False, "raw": verify.stdout + verify.stderr}
    totals = {k: sum(c.counts[k] for c in clients) for k in clients[0].counts}
    expected_docs = STABLE + sum(len(c.told) for c in clients)
    out = {
        "db": "postgresql" if args.db else "sqlite",
        "minutes": round(elapsed / 60, 2),
        "clients": args.clients,
        "seal_at": args.seal_at,
        "requests": totals,
        "optimize_runs": len(opt_log),
        "optimize_failures": [x for x in opt_log if x != "ok"][:5],
        "content_mismatches": mismatches[:20],
        "documents": count,
        "documents_expected": expected_docs,
        "verify_ok": bool(report.get("ok")),
        "verify_problems": report.get("problems"),
        "problems": [p for c in clients for p in c.problems][:20],
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out, indent=2))
    if args.save:
        Path(args.save).write_text(json.dumps(out, indent=2) + "\n")
    ok = (
        totals["errors"] == 0
        and totals["short"] == 0
        and totals["foreign_text"] == 0
        and not mismatches
        and out["verify_ok"]
        and not out["optimize_failures"]
        and (count.get("count") if isinstance(count, dict) else None) == expected_docs
    )
    print("soak:", "ok" if ok else "FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
