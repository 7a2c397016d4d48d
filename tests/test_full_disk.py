"""A full disk (issue 13, finding 3): the service answers 507 insufficient_storage with the
reason, the CLI one line (exit 1), and the collection keeps its last committed state; once there
is space again the same write succeeds.

Two ways in: the collection's own write (``os.write`` of the growing log, a real system call)
made to fail with ENOSPC, which runs everywhere; and a real full file system, a small tmpfs
mounted for the test, which needs root (skipped where mounting is not allowed)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess

import pytest
from fastapi.testclient import TestClient

from embedsearch.config import Settings
from embedsearch.errors import disk_full_reason
from embedsearch.service.app import create_app
from embedsearch.store import Store
from tests.conftest import topic_docs

pytestmark = pytest.mark.slow  # fills small loop-mounted volumes


def _docs(start: int, n: int, words: int = 20) -> dict:
    return {"documents": [{"id": f"d{i}", "text": f"story {i} " + "lorem ipsum " * words, "metadata": {"i": i}}
                          for i in range(start, start + n)]}  # fmt: skip


def _state(client) -> tuple:
    count = client.post("/collections/news/count", json={}).json()["count"]
    hits = client.post("/collections/news/search", json={"query": "interest rates bank", "k": 5}).json()["hits"]
    return count, [h["id"] for h in hits]


@pytest.fixture
def no_space_on_log_writes(monkeypatch):
    """``os.write`` to the growing log fails with ENOSPC while ``full[0]`` is set (the call the
    collection makes to append vectors; other writes go through)."""
    import embedsearch.store.growing as growing

    real_write = os.write
    full = [True]

    def write(fd, data):
        if full[0] and os.readlink(f"/proc/self/fd/{fd}").endswith(".log"):  # the growing log, nothing else
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(growing.os, "write", write)
    return full


def test_service_answers_507_on_enospc_and_keeps_the_collection(data_dir, hashing, no_space_on_log_writes):
    settings = Settings.from_env(data_dir)
    coll = Store(settings).create("news", hashing, "Flat")
    no_space_on_log_writes[0] = False
    coll.add_documents(topic_docs(40), hashing)
    with TestClient(create_app(settings)) as client:
        before = _state(client)
        no_space_on_log_writes[0] = True
        r = client.post("/collections/news/documents", json=_docs(100, 5))
        assert r.status_code == 507, r.text
        error = r.json()["error"]
        assert error["code"] == "insufficient_storage"
        assert error["message"].startswith("insufficient storage: ") and "No space left on device" in error["message"]
        assert ".log: No space left on device" in error["message"]  # the file, so the disk, is named
        assert _state(client) == before
        assert client.get("/collections/news/documents/d100").status_code == 404
        no_space_on_log_writes[0] = False
        r = client.post("/collections/news/documents", json=_docs(100, 5))
        assert r.status_code == 200 and r.json()["added"] == 5
        assert _state(client)[0] == before[0] + 5
    assert Store(settings).open("news").verify(check_model=False).ok


def test_cli_says_insufficient_storage_in_one_line(cli, tmp_path, no_space_on_log_writes):
    no_space_on_log_writes[0] = False
    assert cli("index", "create", "news", "--model", "hashing").exit_code == 0
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": f"n{i}", "text": f"note {i}"}) + "\n" for i in range(3)))
    no_space_on_log_writes[0] = True
    r = cli("index", "add", "news", str(src))
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines() == [r.output.strip()] and r.output.startswith("Error: insufficient storage: ")
    no_space_on_log_writes[0] = False
    assert cli("index", "count", "news").output.strip() == "0"
    assert cli("index", "add", "news", str(src)).exit_code == 0


def test_disk_full_reasons():
    from sqlalchemy.exc import OperationalError

    assert disk_full_reason(OSError(errno.ENOSPC, "No space left on device", "/x/y")) == "/x/y: No space left on device"
    assert disk_full_reason(OSError(errno.EDQUOT, "Disk quota exceeded")) == "Disk quota exceeded"
    assert disk_full_reason(OSError(errno.EACCES, "Permission denied")) is None
    sqlite_full = OperationalError("INSERT", {}, Exception("database or disk is full"))
    assert disk_full_reason(sqlite_full) == "the database: database or disk is full"

    class PgDiskFull(Exception):
        pgcode = "53100"

    assert disk_full_reason(OperationalError("INSERT", {}, PgDiskFull("could not extend file"))).startswith("the database")
    assert disk_full_reason(OperationalError("INSERT", {}, Exception("syntax error"))) is None


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MiB tmpfs (root only); yields (path, resize) where resize(size) remounts it."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)

    try:
        yield mnt, resize
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_really_full_disk_through_the_service(small_tmpfs, hashing):
    mnt, resize = small_tmpfs
    settings = Settings.from_env(mnt / "data")  # the vectors and the SQLite database both on the small disk
    Store(settings).create("news", hashing, "Flat").add_documents(topic_docs(40), hashing)
    with TestClient(create_app(settings)) as client:
        added, start = 0, 1000
        for _ in range(200):
            r = client.post("/collections/news/documents", json=_docs(start, 100))
            if r.status_code != 200:
                break
            added, start = added + 100, start + 100
        else:
            raise AssertionError("2 MiB never filled up")
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "insufficient_storage"
        assert r.json()["error"]["message"].startswith("insufficient storage: ")
        count, hits = _state(client)
        assert count == 40 + added and hits
        assert client.get(f"/collections/news/documents/d{start}").status_code == 404
        resize("16m")
        r = client.post("/collections/news/documents", json=_docs(start, 100))
        assert r.status_code == 200, r.text
        assert _state(client)[0] == 40 + added + 100
    assert Store(settings).open("news").verify(check_model=False).ok


def test_a_full_disk_gives_space_back_and_deletes_and_optimize_still_work(small_tmpfs, hashing, monkeypatch):
    """Issue 24 item 2: after adds fill the disk, the failed write's log tail and SQLite's WAL are
    given back, /health says so (503) while searches go on, a large delete and optimize succeed on
    the full disk (through the space reserve), space comes back and writes work again."""
    from embedsearch.store import space
    from embedsearch.store.growing import record_dtype

    mnt, resize = small_tmpfs
    resize("16m")
    monkeypatch.setenv("EMBEDSEARCH_DISK_RESERVE", str(6 << 20))
    data = mnt / "data"
    settings = Settings.from_env(data)
    Store(settings).create("news", hashing, "Flat").add_documents(topic_docs(40), hashing)
    assert (data / space.RESERVE_NAME).stat().st_size == 6 << 20
    coll = Store(settings).open("news")
    log = next((data / "news").glob("growing-*.log"))
    wal = data / "embedsearch.db-wal"
    with TestClient(create_app(settings)) as client:
        added, start, failures = 0, 1000, 0
        for _ in range(400):  # add until the disk is full: a 507, and /health saying so
            r = client.post("/collections/news/documents", json=_docs(start, 100, words=5))
            if r.status_code == 200:
                added, start = added + 100, start + 100
                continue
            assert r.status_code == 507, r.text
            failures += 1
            coll.refresh()
            assert log.stat().st_size == coll.view().growing.meta.count * record_dtype(coll.dim).itemsize  # no uncommitted tail
            assert not wal.exists() or wal.stat().st_size <= 4 << 20
            health = client.get("/health")
            if health.status_code == 503:  # else giving the WAL back made room: the next add goes through
                break
        else:
            raise AssertionError("16 MiB never filled up")
        assert health.json()["status"] == "insufficient_storage", health.text
        assert "bytes free on the disk of" in health.json()["storage"]
        count, hits = _state(client)
        assert count == 40 + added and hits  # searches go on
        free_before = shutil.disk_usage(mnt).free
        ids = [f"d{i}" for i in range(1000, 1000 + added, 2)]
        assert client.delete(f"/collections/news/documents/{ids.pop()}").status_code == 200
        assert coll.delete(ids) == (len(ids), [])  # thousands of ids in one commit, on the full disk
        coll.optimize()
        assert shutil.disk_usage(mnt).free > free_before + (2 << 20)  # the deleted vectors' space came back
        assert (data / space.RESERVE_NAME).exists()  # and the reserve is held again
        assert client.get("/health").status_code == 200
        assert _state(client)[0] == 40 + added - len(ids) - 1
        r = client.post("/collections/news/documents", json=_docs(start, 100, words=5))
        assert r.status_code == 200, r.text
    assert Store(settings).open("news").verify(check_model=False).ok
