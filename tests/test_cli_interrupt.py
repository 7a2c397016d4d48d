"""Ctrl-C during `index add` says what was kept and exits 130 (it printed only "Aborted!")."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from embedsearch.config import Settings
from embedsearch.store import Store

pytestmark = pytest.mark.slow  # a real process interrupted mid-add


def _generation(db) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            row = conn.execute("select generation from collections where name = 'big'").fetchone()
            return row[0] if row else 0
    except sqlite3.Error:
        return 0


def test_ctrl_c_during_add_reports_the_committed_batches_and_exits_130(tmp_path):
    data = tmp_path / "data"
    src = tmp_path / "big.jsonl"
    n = 150_000
    with open(src, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"d{i}", "text": f"document {i} about topic {i % 97} and {i % 13}"}) + "\n")
    base = [sys.executable, "-m", "embedsearch", "--data-dir", str(data)]
    create = [*base, "index", "create", "big", "--model", "hashing", "--index", "Flat"]
    assert subprocess.run(create, capture_output=True).returncode == 0
    proc = subprocess.Popen(
        [*base, "index", "add", "big", str(src), "--commit-every", "2000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 240
    while _generation(data / "embedsearch.db") < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the add finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    m = re.search(r"interrupted: ([\d,]+) documents committed in (\d+) batch(?:es)?.*; ([\d,]+) not added", err)
    assert m, err[-2000:]
    done, batches, left = int(m.group(1).replace(",", "")), int(m.group(2)), int(m.group(3).replace(",", ""))
    assert "run the same command again to continue" in err and "Traceback" not in err and "Aborted" not in err
    coll = Store(Settings.from_env(data)).open("big")
    assert coll.count() == done and done + left == n and batches >= 2
    assert coll.verify(check_model=False).ok
    r = subprocess.run([*base, "index", "add", "big", str(src), "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and json.loads(r.stdout)["unchanged"] == done and json.loads(r.stdout)["added"] == left
