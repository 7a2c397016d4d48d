"""Progress reaches a terminal, a log file and a program (issue 28 item 1): long runs are never
silent because stderr is not a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from embedsearch import progress


def _cli(tmp_path, *args, interval="0"):
    env = {**os.environ, "EMBEDSEARCH_PROGRESS_INTERVAL": interval, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "embedsearch", "--data-dir", str(tmp_path / "data"), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def docs(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i} about topic {i % 7}"}) + "\n" for i in range(3000)))
    return path


def test_a_run_whose_stderr_is_a_file_gets_progress_lines(tmp_path, docs):
    assert _cli(tmp_path, "index", "create", "news", "--model", "hashing").returncode == 0
    r = _cli(tmp_path, "index", "add", "news", str(docs), "--commit-every", "500")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("adding to news:")]
    assert any("/3,000 docs (" in line and "docs/s" in line and "ETA" in line for line in lines), r.stderr
    assert lines[-1].startswith("adding to news: done, 3,000 docs in "), lines[-1]
    assert "\r" not in r.stderr  # no bar redrawn into the file


def test_json_progress_is_for_programs_and_stdout_stays_clean(tmp_path, docs):
    assert _cli(tmp_path, "index", "create", "news", "--model", "hashing").returncode == 0
    r = _cli(tmp_path, "--json-progress", "index", "add", "news", str(docs), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["added"] == 3000  # stdout: the command's own JSON, nothing else
    events = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    assert events[-1]["done"] == events[-1]["total"] == 3000 and events[-1]["task"] == "adding to news"
    middle = [e for e in events if e["event"] == "progress"]
    assert middle and all(0 < e["done"] <= 3000 and e["unit"] == "doc" and e["rate"] > 0 for e in middle)
    assert [e["done"] for e in middle] == sorted(e["done"] for e in middle)


def test_quiet_and_json_output_stay_silent_unless_asked(tmp_path, docs):
    assert _cli(tmp_path, "index", "create", "news", "--model", "hashing").returncode == 0
    r = _cli(tmp_path, "--quiet", "index", "add", "news", str(docs))
    assert r.returncode == 0 and "adding to" not in r.stderr, r.stderr
    r = _cli(tmp_path, "index", "add", "news", str(docs), "--json")  # unchanged docs: still a run
    assert r.returncode == 0 and "adding to" not in r.stderr
    r = _cli(tmp_path, "--progress", "index", "add", "news", str(docs), "--json")
    assert r.returncode == 0 and "adding to news" in r.stderr and json.loads(r.stdout)["unchanged"] == 3000
    r = _cli(tmp_path, "--json-progress", "--quiet", "index", "list")
    assert r.returncode == 2 and "cannot be combined" in r.stderr


def test_records_wait_for_the_interval_and_a_quiet_run_ends_quietly(capsys, monkeypatch):
    monkeypatch.setenv("EMBEDSEARCH_PROGRESS_INTERVAL", "3600")
    progress.configure("auto")
    with progress.bar(10, "short", "doc") as bar:
        bar.update(10)
    assert capsys.readouterr().err == ""  # shorter than the interval: nothing, not even "done"
    monkeypatch.setenv("EMBEDSEARCH_PROGRESS_INTERVAL", "0")
    with progress.bar(None, "reading corpus", "doc") as bar:  # unknown total: no percentage, no ETA
        bar.set_postfix(loss="0.5")
        bar.update(5)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("reading corpus: 5 docs, ") and "ETA" not in err[0] and err[0].endswith("loss 0.5")
    assert err[-1].startswith("reading corpus: done, 5 docs in ")
    progress.configure("off")
    try:
        with progress.bar(10, "off", "doc") as bar:
            bar.update(10)
        assert capsys.readouterr().err == ""
    finally:
        progress.configure("auto")


def test_training_reports_progress_lines_too(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"the {w} sat on the mat with a {v} today\n" for w in ("cat", "dog", "fox") for v in range(400)))
    r = _cli(tmp_path, "train", "word2vec", str(corpus), "-o", str(tmp_path / "w2v"), "--dim", "16", "--min-count", "1",
             "--epochs", "3")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "reading corpus: " in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("word2vec CBOW:")]
    assert lines and lines[-1].startswith("word2vec CBOW: done, 100 % in "), r.stderr
