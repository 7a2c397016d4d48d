"""Hot snapshots, verify-snapshot and restore (store/snapshot.py, store/restore.py), on SQLite and
PostgreSQL and from one to the other."""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
import uuid

import numpy as np
import pytest

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.errors import CollectionExists
from embedsearch.search import search
from embedsearch.store import Store
from embedsearch.store.restore import restore, verify_snapshot
from embedsearch.store.snapshot import take_snapshot
from embedsearch.store.snapshot_format import SnapshotError
from tests.conftest import pg_url, topic_docs

DBS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not pg_url(), reason="no PostgreSQL configured"))]
QUERIES = [f"{w} story {i}" for i, w in enumerate(["bushfire", "rates", "cricket", "election", "smoke", "votes", "bank"] * 3)]


def _store(kind: str, path) -> Store:
    url = pg_url() if kind == "postgresql" else None
    return Store(Settings.from_env(path, url) if url else Settings.from_env(path))


@pytest.fixture
def names():
    made: list[tuple[Store, str]] = []

    def make(store: Store, prefix: str = "snap") -> str:
        made.append((store, f"{prefix}-{uuid.uuid4().hex[:8]}"))
        return made[-1][1]

    yield make
    for store, n in made:
        if store.exists(n):
            store.drop(n)


def vectors_of(coll) -> dict[int, bytes]:
    """Every live vector of a collection, by row id, as raw bytes (bit-for-bit comparisons)."""
    view = coll.view()
    out = {}
    for seg in view.segments():
        ids = np.setdiff1d(seg.ids(), view.dead_in(seg))
        for rid, vec in zip(ids.tolist(), seg.vectors(ids), strict=True):
            out[rid] = np.asarray(vec, dtype=np.float32).tobytes()
    return out


def documents_of(coll) -> dict[str, tuple]:
    return {d.id: (d.text, json.dumps(d.metadata, sort_keys=True)) for d in _all_docs(coll)}


def _all_docs(coll):
    from embedsearch.store.documents_api import list_documents

    cursor = None
    while True:
        page = list_documents(coll, limit=500, cursor=cursor)
        for d in page.documents:
            yield Document(d["id"], d["text"], d["metadata"])
        cursor = page.next_cursor
        if not cursor:
            return


def results_of(coll, embedder) -> list:
    hits = coll.search_vectors(embedder.embed(QUERIES), 5)
    return [[(h.id, round(h.score, 5)) for h in row] for row in hits]


def _filled(store, name, embedder, monkeypatch, n=1500, **kwargs):
    monkeypatch.setenv("EMBEDSEARCH_SEAL_AT", "300")
    coll = store.create(name, embedder, index_fields=["source"], lexical=True, **kwargs)
    coll.add_documents(topic_docs(n), embedder, commit_every=400)
    coll.delete([f"doc-{i}" for i in range(0, 60, 7)])
    return coll


@pytest.mark.parametrize("kind", DBS)
def test_snapshot_restores_an_equal_collection(kind, tmp_path, hashing, names, monkeypatch):
    store = _store(kind, tmp_path / "data")
    src = _filled(store, names(store), hashing, monkeypatch)
    src.update_search_settings(lambda current: {**current, "mode": "hybrid", "alpha": 0.7})
    out = take_snapshot(src, tmp_path / "s.tar")
    assert out["generation"] == src.committed_generation()
    assert out["counts"]["documents"] == src.count() and out["counts"]["tombstones"] > 0
    assert verify_snapshot(tmp_path / "s.tar")["generation"] == out["generation"]
    copy = names(store, "copy")
    result = restore(store, tmp_path / "s.tar", copy)
    assert result["collection"] == copy and not result["replaced"]
    dst = store.open(copy)
    assert dst.verify().ok
    assert documents_of(dst) == documents_of(src)
    assert vectors_of(dst) == vectors_of(src)
    assert results_of(dst, hashing) == results_of(src, hashing)
    assert dst.index_fields() == src.index_fields()
    assert dst.has_lexical()
    assert dst.search_settings() == src.search_settings()
    def lexical(coll):  # ties in any order
        return [sorted((-round(h.score, 4), h.id) for h in r) for r in search(coll, QUERIES[:5], 5, mode="lexical")]

    assert lexical(dst) == lexical(src)
    assert sorted(p.name for p in (tmp_path / "data" / ".snapshots").iterdir()) == []


def test_snapshot_compressed_with_zstd(tmp_path, hashing, names, monkeypatch):
    store = _store("sqlite", tmp_path / "data")
    src = _filled(store, names(store), hashing, monkeypatch, n=600)
    out = take_snapshot(src, tmp_path / "p.tar.zst")
    assert out["bytes"] < take_snapshot(src, tmp_path / "p.tar")["bytes"]
    dst = store.open(restore(store, tmp_path / "p.tar.zst", names(store))["collection"])
    assert dst.verify().ok
    assert vectors_of(dst) == vectors_of(src)
    assert results_of(dst, hashing) == results_of(src, hashing)


def _hot_snapshot(src_store, dst_store, tmp_path, hashing, names, monkeypatch):
    monkeypatch.setenv("EMBEDSEARCH_SEAL_AT", "200")
    src = src_store.create(names(src_store), hashing)
    committed: list[tuple[int, int]] = []  # (generation of an add's commit, documents added so far)
    stop = threading.Event()
    errors: list[BaseException] = []
    pool = topic_docs(4000)

    def writer():
        try:
            n = 0
            while not stop.is_set() and n < len(pool):
                r = src.add_documents(pool[n : n + 150], hashing, commit_every=150)
                n += 150
                committed.append((r.generation, n))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def merger():
        try:
            while not stop.is_set():
                src.merge(force=True)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=merger)]
    for t in threads:
        t.start()
    try:
        while len(committed) < 6:
            stop.wait(0.02)
        out = take_snapshot(src, tmp_path / "hot.tar")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    gen = out["generation"]
    expected = max((n for g, n in committed if g <= gen), default=0)
    dst = dst_store.open(restore(dst_store, tmp_path / "hot.tar", names(dst_store))["collection"])
    assert dst.verify().ok
    assert dst.generation == gen
    docs = documents_of(dst)
    assert set(docs) == {d.id for d in pool[:expected]}
    # vectors bit for bit: what the model gives for each document's text
    want = hashing.embed([d.text for d in pool[:expected]])
    got = vectors_of(dst)
    by_id = dict(zip((d.id for d in pool[:expected]), want, strict=True))
    rows = dst.fetch(list(got), ("text",))
    assert len(got) == expected
    for rid, raw in got.items():
        assert raw == np.asarray(by_id[rows[rid][0]], dtype=np.float32).tobytes()
    # the same results as an exact search over the documents of that generation
    ids = list(by_id)
    matrix = np.stack([by_id[i] for i in ids])
    q = hashing.embed(QUERIES)
    for row, scores in zip(dst.search_vectors(q, 5), q @ matrix.T, strict=True):
        best = np.sort(scores)[::-1][:5]
        assert [round(h.score, 4) for h in row] == [round(float(s), 4) for s in best]
        for h in row:
            assert abs(float(scores[ids.index(h.id)]) - h.score) < 1e-5


@pytest.mark.parametrize("kind", DBS)
def test_hot_snapshot_during_writes_and_merges(kind, tmp_path, hashing, names, monkeypatch):
    store = _store(kind, tmp_path / "data")
    _hot_snapshot(store, store, tmp_path, hashing, names, monkeypatch)


@pytest.mark.skipif(not pg_url(), reason="no PostgreSQL configured")
def test_restore_from_sqlite_into_postgresql(tmp_path, hashing, names, monkeypatch):
    _hot_snapshot(_store("sqlite", tmp_path / "a"), _store("postgresql", tmp_path / "b"), tmp_path, hashing, names, monkeypatch)


def _rewrite(src, dst, change):
    """Copy a snapshot, passing each member's (name, bytes) through ``change``."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            name, data = change(m.name, tin.extractfile(m).read())
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


def _nothing_left(store, data_dir, before):
    assert sorted(c["name"] for c in store.list()) == before
    assert sorted(p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) == before
    assert not any((data_dir / ".snapshots").iterdir())


def test_damaged_snapshots_are_refused_naming_the_member(tmp_path, hashing, names, monkeypatch, cli):
    store = _store("sqlite", cli.data_dir)
    src = _filled(store, "src", hashing, monkeypatch, n=400)
    take_snapshot(src, tmp_path / "s.tar")

    def flip(name, data):
        if name.startswith("files/seg-"):
            data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
        return name, data

    _rewrite(tmp_path / "s.tar", tmp_path / "bad.tar", flip)
    with pytest.raises(SnapshotError, match=r"member 'files/seg-\d+\.faiss': checksum mismatch"):
        restore(store, tmp_path / "bad.tar", "other")
    _nothing_left(store, cli.data_dir, ["src"])
    r = cli("index", "verify-snapshot", str(tmp_path / "bad.tar"))
    assert r.exit_code == 1 and "checksum mismatch" in r.output

    raw = (tmp_path / "s.tar").read_bytes()
    (tmp_path / "short.tar").write_bytes(raw[: len(raw) // 2])
    r = cli("index", "restore", str(tmp_path / "short.tar"), "--as", "other")
    assert r.exit_code == 1 and "member '" in r.output and "truncated" in r.output, r.output
    _nothing_left(store, cli.data_dir, ["src"])

    def future(name, data):
        if name == "manifest.json":
            doc = json.loads(data)
            doc["format_version"] = 99
            data = json.dumps(doc).encode()
        return name, data

    _rewrite(tmp_path / "s.tar", tmp_path / "v99.tar", future)
    r = cli("index", "restore", str(tmp_path / "v99.tar"), "--as", "other")
    assert r.exit_code == 1 and "format version 99" in r.output, r.output
    _nothing_left(store, cli.data_dir, ["src"])


def test_restore_cli_names_and_replace(tmp_path, hashing, monkeypatch, cli):
    store = _store("sqlite", cli.data_dir)
    src = _filled(store, "news", hashing, monkeypatch, n=300)
    r = cli("index", "snapshot", "news", "-o", str(tmp_path / "n.tar"), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["counts"]["documents"] == src.count()
    r = cli("index", "info", "news", "--json")
    last = json.loads(r.output)["last_snapshot"]
    assert last["generation"] == src.generation and last["file"] == str((tmp_path / "n.tar").resolve())
    assert "last snapshot" in cli("index", "info", "news").output
    r = cli("index", "verify-snapshot", str(tmp_path / "n.tar"))
    assert r.exit_code == 0 and "ok" in r.output
    r = cli("index", "restore", str(tmp_path / "n.tar"))
    assert r.exit_code == 2 and "already exists" in r.output
    with pytest.raises(CollectionExists):
        restore(store, tmp_path / "n.tar")
    src.delete(["doc-1"])
    r = cli("index", "restore", str(tmp_path / "n.tar"), "--replace")
    assert r.exit_code == 0 and "replaced" in r.output, r.output
    again = store.open("news")
    assert again.get("doc-1") is not None and again.verify().ok
    r = cli("index", "restore", str(tmp_path / "n.tar"), "--as", "bad/name")
    assert r.exit_code == 2
    assert sorted(c["name"] for c in store.list()) == ["news"]


# ---- export / import ---------------------------------------------------------------------------
def _same_results(a, b, embedder):
    """Equal scores; equal ids except among hits tied at the last score (tie order may differ)."""
    for ra, rb in zip(results_of(a, embedder), results_of(b, embedder), strict=True):
        assert [s for _, s in ra] == [s for _, s in rb]
        last = ra[-1][1] if ra else None
        assert [i for i, s in ra if s != last] == [i for i, s in rb if s != last]


@pytest.fixture
def embed_calls(hashing, monkeypatch):
    """How many times the hashing model is asked for vectors (it is called through, not replaced)."""
    calls = []
    cls = type(hashing)
    original = cls.embed_batch

    def counted(self, texts):
        calls.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(cls, "embed_batch", counted)
    return calls


ROUND_TRIPS = [("sqlite", ".parquet"), ("sqlite", ".jsonl"), pytest.param("postgresql", ".parquet", marks=DBS[1].marks)]


@pytest.mark.parametrize(("kind", "suffix"), ROUND_TRIPS)
def test_export_import_round_trip_without_embedding(kind, suffix, tmp_path, hashing, names, monkeypatch, embed_calls):
    from embedsearch.store.importing import import_file
    from embedsearch.store.portable import export

    store = _store(kind, tmp_path / "data")
    src = _filled(store, names(store), hashing, monkeypatch, n=900)
    out = export(src, tmp_path / f"e{suffix}")
    assert out["documents"] == src.count()
    embed_calls.clear()
    result = import_file(store, tmp_path / f"e{suffix}", names(store, "imp"))
    assert embed_calls == [] and result["reused_vectors"] and result["created"]
    dst = store.open(result["collection"])
    assert dst.verify().ok
    assert documents_of(dst) == documents_of(src)
    assert sorted(vectors_of(dst).values()) == sorted(vectors_of(src).values())
    _same_results(dst, src, hashing)
    part = export(src, tmp_path / f"lee{suffix}", where={"source": "lee"})
    assert part["documents"] == src.count() - len([d for d in documents_of(src).values() if '"source": "bbc"' in d[1]])


def test_exported_parquet_is_readable_by_pandas_and_duckdb(tmp_path, hashing, names, monkeypatch):
    import pandas as pd
    import pyarrow.parquet as pq

    from embedsearch.store.portable import export

    store = _store("sqlite", tmp_path / "data")
    src = _filled(store, names(store), hashing, monkeypatch, n=300)
    export(src, tmp_path / "e.parquet")
    schema = pq.read_schema(tmp_path / "e.parquet")
    assert str(schema.field("vector").type) == "fixed_size_list<element: float>[256]"
    assert json.loads(schema.metadata[b"embedsearch"])["model_fingerprint"] == src.model_fingerprint
    df = pd.read_parquet(tmp_path / "e.parquet")
    assert len(df) == src.count() and df["vector"].iloc[0].dtype == np.float32 and len(df["vector"].iloc[0]) == 256
    row = df[df["id"] == "doc-1"].iloc[0]
    assert json.loads(row["metadata"]) == src.get("doc-1").metadata
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    n, dim = con.execute(f"SELECT count(*), max(len(vector)) FROM read_parquet('{tmp_path / 'e.parquet'}')").fetchall()[0]
    assert (n, dim) == (src.count(), 256)


def test_import_refuses_bad_vectors_and_re_embeds_other_models(tmp_path, hashing, names, monkeypatch, embed_calls, cli):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embedsearch.store.importing import import_file
    from embedsearch.store.portable import arrow_schema

    store = _store("sqlite", cli.data_dir)
    target = store.create("target", hashing)
    head = {"model": "hashing", "model_fingerprint": hashing.fingerprint, "dim": 256, "metric": "cosine"}

    def write(path, vectors, dim=256, meta=head):
        flat = pa.array(np.asarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
        cols = {"id": [f"x{i}" for i in range(len(vectors))], "text": [f"text {i}" for i in range(len(vectors))],
                "metadata": ["{}"] * len(vectors), "vector": pa.FixedSizeListArray.from_arrays(flat, dim)}  # fmt: skip
        pq.write_table(pa.table(cols, schema=arrow_schema(dim, False, meta)), path)

    write(tmp_path / "dim.parquet", np.ones((3, 8)), dim=8)
    r = cli("index", "import", str(tmp_path / "dim.parquet"), "--into", "target")
    assert r.exit_code == 1 and "row 1 (id 'x0'): a 8-d vector; the collection is 256-d" in r.output, r.output
    bad = np.ones((4, 256))
    bad[2, 5] = np.nan
    write(tmp_path / "nan.parquet", bad)
    r = cli("index", "import", str(tmp_path / "nan.parquet"), "--into", "target")
    assert r.exit_code == 1 and "row 3 (id 'x2'): the vector holds NaN or infinity" in r.output, r.output
    assert target.count() == 0
    write(tmp_path / "other.parquet", np.ones((5, 256)), meta={**head, "model_fingerprint": "0" * 64, "model": "other"})
    embed_calls.clear()
    result = import_file(store, tmp_path / "other.parquet", "target")
    assert not result["reused_vectors"] and "different model" in result["re_embedded_because"]
    assert sum(embed_calls) == 5 and target.count() == 5
    r = cli("index", "import", str(tmp_path / "other.parquet"), "--into", "target")
    assert r.exit_code == 0 and "embedding the text again" in r.output


@pytest.mark.parametrize("kind", DBS)
def test_a_pinned_generation_does_not_see_later_commits(kind, tmp_path, hashing, names, monkeypatch):
    """The read transaction a snapshot reads its rows in sees the generation it pinned, while a
    commit and a merge (which deletes the files it linked) land."""
    from sqlalchemy import func, select

    from embedsearch.store.metadata import documents
    from embedsearch.store.snapshot import pinned, staging_dir

    store = _store(kind, tmp_path / "data")
    src = _filled(store, names(store), hashing, monkeypatch, n=700)
    before = src.count()
    with pinned(src, staging_dir(src, "test")) as pin:
        linked = sorted(p.name for p in pin.files.iterdir())
        src.add_documents([Document("late", "a late document", {})], hashing)
        src.optimize()
        assert src.count() == before + 1
        n = pin.conn.execute(select(func.count()).select_from(documents).where(documents.c.collection_id == src.id)).scalar()
        assert n == before and pin.generation < src.committed_generation()
        assert not all((src.dir / name).exists() for name in linked)  # the merge removed some of them
        assert all((pin.files / name).stat().st_size > 0 for name in linked if not name.startswith("growing"))


@pytest.fixture
def tiny_disk(tmp_path):
    import os
    import shutil
    import subprocess

    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_leaves_no_snapshot_and_no_restored_collection(tiny_disk, tmp_path, hashing, monkeypatch, cli):
    store = _store("sqlite", cli.data_dir)
    src = _filled(store, "src", hashing, monkeypatch, n=1500)
    r = cli("index", "snapshot", "src", "-o", str(tiny_disk / "s.tar"))
    assert r.exit_code == 1 and "space" in r.output.lower(), r.output
    assert list(tiny_disk.iterdir()) == []
    assert src.verify().ok
    take_snapshot(src, tmp_path / "s.tar")
    small = Store(Settings.from_env(tiny_disk / "data"))
    with pytest.raises(Exception, match="(?i)full|space"):
        restore(small, tmp_path / "s.tar", "copy")
    assert small.list() == []
    assert sorted(p.name for p in (tiny_disk / "data").iterdir() if p.is_dir() and not p.name.startswith(".")) == []
    assert not any((tiny_disk / "data" / ".snapshots").iterdir())


def test_snapshot_over_http_restores(tmp_path, hashing, monkeypatch):
    from fastapi.testclient import TestClient

    from embedsearch.service.app import create_app

    config = Settings.from_env(tmp_path / "data")
    src = _filled(Store(config), "news", hashing, monkeypatch, n=300)
    with TestClient(create_app(config, models_dir=tmp_path / "models")) as client:
        r = client.post("/collections/news/snapshot?zstd=true")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/zstd"
        assert int(r.headers["x-embedsearch-generation"]) == src.generation
        (tmp_path / "got.tar.zst").write_bytes(r.content)
        assert client.post("/collections/nope/snapshot").status_code == 404
    assert not any((tmp_path / "data" / ".snapshots").iterdir())
    other = Store(Settings.from_env(tmp_path / "other"))
    dst = other.open(restore(other, tmp_path / "got.tar.zst")["collection"])
    assert dst.verify().ok and vectors_of(dst) == vectors_of(src)


@pytest.mark.skipif(not pg_url(), reason="no PostgreSQL configured")
def test_restore_from_postgresql_into_sqlite(tmp_path, hashing, names, monkeypatch):
    _hot_snapshot(_store("postgresql", tmp_path / "a"), _store("sqlite", tmp_path / "b"), tmp_path, hashing, names, monkeypatch)


def test_a_snapshot_of_a_model_this_machine_lacks_restores_and_search_names_it(tmp_path, hashing, monkeypatch, cli):
    store = _store("sqlite", tmp_path / "source")
    src = _filled(store, "news", hashing, monkeypatch, n=200)
    take_snapshot(src, tmp_path / "s.tar")

    def elsewhere(name, data):  # as if taken where a model "team-encoder" was installed
        if name == "manifest.json":
            doc = json.loads(data)
            doc["collection"]["model"] = "team-encoder"
            data = json.dumps(doc).encode()
        return name, data

    _rewrite(tmp_path / "s.tar", tmp_path / "team.tar", elsewhere)
    r = cli("index", "restore", str(tmp_path / "team.tar"))
    assert r.exit_code == 0, r.output
    r = cli("search", "news", "cricket")
    assert r.exit_code == 2 and "unknown model 'team-encoder'" in r.output, r.output
    assert cli("index", "verify", "news", "--no-model-check").exit_code == 0


def test_staging_left_by_a_killed_snapshot_is_removed_by_the_next(tmp_path, hashing, monkeypatch):
    import subprocess

    store = _store("sqlite", tmp_path / "data")
    src = _filled(store, "news", hashing, monkeypatch, n=200)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "data" / ".snapshots" / f"snapshot-news-{dead.pid}-0badf00d"
    (stale / "files").mkdir(parents=True)
    live = tmp_path / "data" / ".snapshots" / f"export-news-{os.getpid()}-0badf00d"
    live.mkdir()
    take_snapshot(src, tmp_path / "s.tar")
    assert not stale.exists() and live.exists()
