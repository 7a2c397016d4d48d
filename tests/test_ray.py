"""Scale-out on a real local Ray cluster (started by the tests, loopback node address):
sharded collections search exactly as unsharded ones, `--ray` ingest equals local ingest, a
killed shard is restarted and searched again, a failing embedding job changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from embedsearch.corpus import Document  # noqa: E402
from embedsearch.errors import ClusterUnavailable  # noqa: E402
from embedsearch.passages import Chunking  # noqa: E402
from embedsearch.search import search  # noqa: E402

BOOM = "\N{COLLISION SYMBOL}"


pytestmark = pytest.mark.slow  # starts a local Ray cluster


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _node_ip_address="127.0.0.1",
            # the failure injection of test_a_failing_embedding_job_leaves_the_collection_unchanged
            runtime_env={"env_vars": {"EMBEDSEARCH_TEST_CRASH_AT": "ray-embed"}},
        )
    yield
    ray.shutdown()


@pytest.fixture
def store(data_dir):
    """A store wired to the Ray cluster, as the CLI and the service wire theirs: sharded
    collections are searched through shard actors."""
    from embedsearch.cluster.shards import ShardSearchers
    from embedsearch.config import Settings
    from embedsearch.store import Store

    searchers = ShardSearchers()
    yield Store(Settings.from_env(data_dir), searchers=searchers)
    searchers.close()


def docs(n: int, offset: int = 0) -> list[Document]:
    topics = ["bushfire smoke firefighters", "interest rates bank", "cricket wickets batsman", "election votes minister"]
    return [
        Document(f"d{i}", f"{topics[i % 4]} story {i} words {i % 7} {i % 11} {i % 13}", {"topic": i % 4, "n": i})
        for i in range(offset, offset + n)
    ]


def hits_of(results) -> list[list[tuple[str, float]]]:
    return [[(h.id, round(float(h.score), 5)) for h in hits] for hits in results]


QUERIES = ["bushfire smoke", "bank interest rates story 17", "cricket words 3", "minister votes 12", "story 5"]


@pytest.fixture
def pair(store, hashing, monkeypatch):
    """The same documents in an unsharded and a 3-shard collection, several segments each."""
    monkeypatch.setenv("EMBEDSEARCH_SEAL_AT", "150")
    plain = store.create("plain", hashing, "Flat")
    sharded = store.create("sharded", hashing, "Flat", shards=3)
    for coll in (plain, sharded):
        coll.auto_merge = False
        coll.add_documents(docs(1000), hashing, batch_size=60, commit_every=60)
    return plain, sharded


def test_sharded_search_equals_unsharded_with_filters_deletes_and_new_commits(pair, hashing):
    plain, sharded = pair
    assert len(sharded.info()["segments"]) >= 5
    for where in (None, {"topic": 2}, {"n": {"$lt": 40}}, {"topic": {"$in": [0, 3]}, "n": {"$gte": 500}}):
        for k in (1, 10, 57):
            expect = hits_of(search(plain, QUERIES, k=k, embedder=hashing, where=where))
            assert hits_of(search(sharded, QUERIES, k=k, embedder=hashing, where=where)) == expect, (where, k)
    described = sharded.store.searcher_for(sharded).describe()
    assert len(described) == 3 and all(d["segments"] for d in described)
    owned = [s for d in described for s in d["segments"]]
    assert sorted(owned) == sorted(s["id"] for s in sharded.info()["segments"])  # each segment once
    assert sum(d["vectors"] for d in described) == sum(s["vectors"] for s in sharded.info()["segments"])
    for coll in (plain, sharded):  # the shards follow commits: tombstones and new segments
        coll.delete([f"d{i}" for i in range(0, 1000, 3)])
        coll.add_documents(docs(300, offset=1000), hashing, commit_every=100)
    for where in (None, {"topic": 1}):
        expect = hits_of(search(plain, QUERIES, k=20, embedder=hashing, where=where))
        assert hits_of(search(sharded, QUERIES, k=20, embedder=hashing, where=where)) == expect


def test_sharded_hnsw_and_passages_equal_unsharded(store, minilm, monkeypatch):
    monkeypatch.setenv("EMBEDSEARCH_SEAL_AT", "40")
    text = " ".join(f"Sentence {i} of the council minutes about budgets, parking and trees." for i in range(60))
    corpus = [Document(f"long{i}", f"{text} The pump number {i} overheats.", {}) for i in range(6)]
    corpus += [Document(f"s{i}", f"A short note {i} about volcanoes and lava.", {}) for i in range(30)]
    plain = store.create("plain", minilm, "HNSW16", chunking=Chunking(48))
    sharded = store.create("sharded", minilm, "HNSW16", chunking=Chunking(48), shards=2)
    for coll in (plain, sharded):
        coll.auto_merge = False
        coll.add_documents(corpus, minilm, commit_every=12)
    queries = ["pump overheats", "volcano lava note", "parking budget"]
    for k in (1, 5, 30):
        got = search(sharded, queries, k=k, embedder=minilm, mode="dense")
        want = search(plain, queries, k=k, embedder=minilm, mode="dense")
        assert hits_of(got) == hits_of(want)
        assert [[h.extras["start"] for h in x] for x in got] == [[h.extras["start"] for h in x] for x in want]


def test_a_killed_shard_is_restarted_and_the_search_waits_for_it(pair, hashing):
    plain, sharded = pair
    expect = hits_of(search(plain, QUERIES, k=10, embedder=hashing))
    assert hits_of(search(sharded, QUERIES, k=10, embedder=hashing)) == expect
    before = sharded.store.searcher_for(sharded).describe()
    ray.kill(sharded.store.searcher_for(sharded).actors[1], no_restart=False)  # Ray restarts it from its segments
    assert hits_of(search(sharded, QUERIES, k=10, embedder=hashing)) == expect
    after = sharded.store.searcher_for(sharded).describe()
    assert after[1]["pid"] != before[1]["pid"] and after[1]["segments"] == before[1]["segments"]
    assert after[0]["pid"] == before[0]["pid"]


def test_a_shard_that_stays_dead_fails_the_search_instead_of_answering_in_part(pair, hashing, monkeypatch):
    _, sharded = pair
    search(sharded, QUERIES[:1], k=5, embedder=hashing)
    ray.kill(sharded.store.searcher_for(sharded).actors[2], no_restart=True)
    monkeypatch.setenv("EMBEDSEARCH_SHARD_TIMEOUT", "20")
    with pytest.raises(ClusterUnavailable, match="shard"):
        search(sharded, QUERIES, k=10, embedder=hashing)
    sharded.store.searchers.forget(sharded)  # a new router starts new actors
    assert len(search(sharded, QUERIES, k=10, embedder=hashing)[0]) == 10


def _vectors_by_document(coll) -> dict[str, np.ndarray]:
    """Each document's vectors (its passages' in order), read from the segments."""
    from embedsearch.store import passage_rows

    view = coll.view()
    ids, vecs = [], []
    for seg in view.segments():
        i, v = seg.all_vectors(view.dead_in(seg))
        ids.append(np.asarray(i))
        vecs.append(np.asarray(v))
    ids, vecs = np.concatenate(ids), np.vstack(vecs)
    order = np.argsort(ids)
    ids, vecs = ids[order], vecs[order]
    if coll.chunking is None:
        doc_of = {int(r): int(r) for r in ids}
    else:
        doc_of = {v: d for v, (d, _, _) in passage_rows.lookup(coll.store.engine, coll.store.dialect, coll.id, ids).items()}
    names = {rid: ext for rid, (ext, _, _) in coll.fetch(set(doc_of.values()), ()).items()}
    out: dict[str, list] = {}
    for rid, vec in zip(ids.tolist(), vecs, strict=True):
        out.setdefault(names[doc_of[rid]], []).append(vec)
    return {k: np.vstack(v) for k, v in out.items()}


@pytest.mark.parametrize("model", ["hashing", "minilm"])
def test_ray_ingest_equals_local_ingest(store, model, request):
    from embedsearch.cluster.ingest import add_documents_on_ray

    embedder = request.getfixturevalue(model)
    corpus = docs(300) if model == "hashing" else docs(40)
    chunking = Chunking(16) if model == "minilm" else None
    if model == "minilm":  # some documents longer than a passage
        long_text = " ".join(f"bushfire smoke story {j} near town" for j in range(30))
        corpus += [Document(f"long{i}", f"{long_text} {i}", {}) for i in range(4)]
    corpus += [Document("d1", "a repeated id: the last version wins", {})]
    local = store.create("local", embedder, "Flat", chunking=chunking)
    remote = store.create("remote", embedder, "Flat", chunking=chunking)
    r_local = local.add_documents(corpus, embedder)
    r_remote = add_documents_on_ray(remote, corpus, workers=2, batch_size=16)
    assert (r_remote.added, r_remote.updated, r_remote.unchanged, r_remote.passages) == (
        r_local.added, r_local.updated, r_local.unchanged, r_local.passages)  # fmt: skip
    assert r_remote.commits == 1
    a, b = _vectors_by_document(local), _vectors_by_document(remote)
    assert sorted(a) == sorted(b) == sorted({d.id for d in corpus})
    for doc_id in a:
        assert a[doc_id].shape == b[doc_id].shape
        np.testing.assert_allclose(a[doc_id], b[doc_id], atol=1e-5)
    assert remote.get("d1").text == "a repeated id: the last version wins"
    # a second run skips what is unchanged and updates what changed: d1 (stored: its last version,
    # given here: its first) and d2 (given twice, the last version wins)
    again = add_documents_on_ray(remote, corpus[:5] + [Document("d2", "changed text", {})], workers=1)
    assert (again.added, again.updated, again.unchanged) == (0, 2, 3)
    assert remote.get("d2").text == "changed text"
    assert remote.verify().ok


def test_a_failing_embedding_job_leaves_the_collection_unchanged(store, hashing):
    from embedsearch.cluster.ingest import add_documents_on_ray

    coll = store.create("c", hashing, "Flat")
    add_documents_on_ray(coll, docs(50), workers=2, batch_size=10)
    gen, count, files = coll.generation, coll.count(), sorted(p.name for p in coll.dir.iterdir())
    bad = docs(200, offset=50)
    bad[150] = Document("poison", f"this one fails the worker {BOOM}", {})
    with pytest.raises(Exception, match="injected embedding failure"):
        add_documents_on_ray(coll, bad, workers=2, batch_size=10)
    coll.refresh()
    assert (coll.generation, coll.count()) == (gen, count)
    assert coll.verify().ok
    assert sorted(p.name for p in coll.dir.iterdir()) == files


def test_cli_creates_adds_with_ray_and_searches_a_sharded_collection(cli, tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": d.id, "text": d.text, **d.metadata}) + "\n" for d in docs(200)))
    assert cli("index", "create", "plain", "--model", "hashing").exit_code == 0
    r = cli("index", "create", "web", "--model", "hashing", "--shards", "2")
    assert r.exit_code == 0 and "2 shards on Ray" in r.output
    assert cli("index", "add", "plain", str(src)).exit_code == 0
    r = cli("index", "add", "web", str(src), "--ray", "--workers", "2", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["added"] == 200
    for where in ([], ["--where", '{"topic": 1}']):
        a = cli("search", "plain", "cricket wickets", "-k", "7", "--json", "--mode", "dense", *where)
        b = cli("search", "web", "cricket wickets", "-k", "7", "--json", "--mode", "dense", *where)
        assert a.exit_code == b.exit_code == 0, b.output
        assert [(h["id"], h["score"]) for h in json.loads(a.stdout)] == [(h["id"], h["score"]) for h in json.loads(b.stdout)]
    assert "2 Ray actors" in cli("index", "info", "web").output
    r = cli("index", "create", "bad", "--model", "hashing", "--shards", "0")
    assert r.exit_code == 2


def test_ray_never_writes_to_stdout_where_json_goes(capsys):
    """CI caught `search --json` output starting with Ray's "(raylet) WARNING: 8 PYTHON worker
    processes have been started": Ray prints the raylet's messages on stdout. connect() sends
    them to stderr."""
    from embedsearch.cluster import connect

    connect()
    capsys.readouterr()
    ray._private.worker.print_to_stdstream({"lines": ["a raylet warning"], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    out, err = capsys.readouterr()
    assert "a raylet warning" not in out and "a raylet warning" in err


def test_readme_ray_commands_run_as_written(cli, tmp_path, monkeypatch):
    """The README's 'Scale-out on Ray' block, its embedsearch lines (serve is started elsewhere)."""
    import shlex

    from tests.test_readme import _blocks

    block = next(b for b in _blocks("bash") if "--shards 4" in b and "--ray --workers 2" in b)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "pump.txt").write_text("The pump overheats when its coolant valve stays closed.")
    (tmp_path / "docs" / "lava.txt").write_text("Lava flows from volcanoes.")
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("embedsearch")]
    assert len(lines) == 4 and lines[-1] == "embedsearch serve --ray"
    for line in lines[:-1]:
        r = cli(*shlex.split(line)[1:])
        assert r.exit_code == 0, f"{line}\n{r.output}"
    assert r.output.splitlines()[2].split()[2].endswith("pump.txt")  # the table's first hit


def test_http_service_creates_and_searches_a_sharded_collection(data_dir, tmp_path):
    from fastapi.testclient import TestClient

    from embedsearch.config import Settings
    from embedsearch.service.app import create_app

    body = [{"id": d.id, "text": d.text, "metadata": d.metadata} for d in docs(120)]
    with TestClient(create_app(Settings.from_env(data_dir), models_dir=tmp_path / "models")) as c:
        assert c.put("/collections/plain", json={"model": "hashing"}).status_code == 201
        r = c.put("/collections/web", json={"model": "hashing", "shards": 2})
        assert r.status_code == 201 and r.json()["embedder_config"]["shards"] == 2
        assert c.put("/collections/bad", json={"model": "hashing", "shards": 0}).status_code == 422
        for name in ("plain", "web"):
            assert c.post(f"/collections/{name}/documents", json={"documents": body}).status_code == 200
        for where in (None, {"topic": 3}):
            q = {"query": "cricket wickets", "k": 8, "mode": "dense", **({"where": where} if where else {})}
            a = c.post("/collections/plain/search", json=q).json()["hits"]
            b = c.post("/collections/web/search", json=q).json()["hits"]
            assert [(h["id"], h["score"]) for h in a] == [(h["id"], h["score"]) for h in b] and len(b) == 8
