"""Documents without a query (get, list with a cursor, count) and collections by name, on a real
SQLite file and on the PostgreSQL server when one is configured; then the CLI commands over them."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.errors import (
    CollectionExists,
    CollectionNotFound,
    DocumentNotFound,
    InvalidArgument,
    InvalidCursor,
    InvalidFilter,
    InvalidIndexSpec,
)
from embedsearch.store import Store
from embedsearch.store.documents_api import (
    count_documents,
    create_collection,
    drop_collection,
    get_document,
    get_documents,
    list_documents,
)
from tests.conftest import pg_url, topic_docs

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not pg_url(), reason="no EMBEDSEARCH_TEST_PG_URL"))]


@pytest.fixture(params=BACKENDS)
def backend_store(request, tmp_path):
    url = pg_url() if request.param == "postgresql" else None
    store = Store(Settings.from_env(tmp_path / "data", url))
    made: list[str] = []

    def new(hashing, n: int = 50, spec: str = "Flat"):
        name = f"a12_{uuid.uuid4().hex[:10]}"
        made.append(name)
        coll = store.create(name, hashing, spec)
        if n:
            coll.add_documents(topic_docs(n), hashing)
        return coll

    store.new = new
    yield store
    for name in made:
        if store.exists(name):
            store.drop(name)


def listing(coll, where=None, limit=7, between=None) -> list[dict]:
    """Every page of a listing; ``between(page_number, listed_so_far)`` runs after each page
    that has a next one."""
    out, cursor, page_no = [], None, 0
    while True:
        page = list_documents(coll, where, limit, cursor)
        assert len(page.documents) <= limit
        out += page.documents
        page_no += 1
        if page.next_cursor is None:
            return out
        assert page.documents, "a page with a next cursor holds documents"
        if between is not None:
            between(page_no, out)
        cursor = page.next_cursor


def test_get_documents_in_the_order_asked(backend_store, hashing):
    coll = backend_store.new(hashing, 10)
    coll.add_documents([Document("café/ü \"q\"", "unicode id", {"k": [1, 2]})], hashing)
    docs, missing = get_documents(coll, ["doc-3", "nope", "café/ü \"q\"", "doc-3", "doc-0"])
    assert [d["id"] for d in docs] == ["doc-3", "café/ü \"q\"", "doc-0"]
    assert missing == ["nope"]
    assert docs[1] == {"id": "café/ü \"q\"", "text": "unicode id", "metadata": {"k": [1, 2]}}
    assert docs[0]["metadata"] == topic_docs(10)[3].metadata
    assert get_document(coll, "doc-0")["text"] == topic_docs(1)[0].text
    with pytest.raises(DocumentNotFound, match="no document 'nope'"):
        get_document(coll, "nope")
    with pytest.raises(InvalidArgument):
        get_documents(coll, [])


def test_listing_pages_through_everything_once(backend_store, hashing):
    coll = backend_store.new(hashing, 50)
    docs = listing(coll, limit=7)
    assert [d["id"] for d in docs] == [f"doc-{i}" for i in range(50)]  # row-id order: the order written
    assert listing(coll, limit=50) == docs and listing(coll, limit=1000) == docs
    lee = listing(coll, {"source": "lee"}, limit=4)
    assert [d["id"] for d in lee] == [f"doc-{i}" for i in range(1, 50, 2)]
    assert all(d["metadata"]["source"] == "lee" for d in lee)
    assert count_documents(coll, {"source": "lee"}) == 25 == len(coll.matching_ids({"source": "lee"}))
    assert count_documents(coll) == count_documents(coll, {}) == 50
    assert count_documents(coll, {"year": {"$gte": 2001}, "topic": {"$in": [0, 1]}}) == sum(
        1 for d in topic_docs(50) if d.metadata["year"] >= 2001 and d.metadata["topic"] in (0, 1)
    )
    empty = list_documents(coll, {"source": "nobody"})
    assert empty.documents == [] and empty.next_cursor is None


@pytest.mark.parametrize("where", [None, {"source": "lee"}])
def test_writes_between_pages_neither_skip_nor_repeat(backend_store, hashing, where):
    """Adds, updates (of documents already listed and not yet listed) and deletes between pages:
    every document that exists from start to end is listed once (the updated-after-listing one
    again, with its new text), new ones are listed, deleted ones are not, and no row repeats."""
    coll = backend_store.new(hashing, 60)
    keep = (lambda d: d.metadata["source"] == "lee") if where else (lambda d: True)
    before = {d.id: d for d in topic_docs(60) if keep(d)}
    first_listed: list[str] = []

    def between(page_no: int, listed: list[dict]) -> None:
        if page_no == 1:
            first_listed.extend(d["id"] for d in listed)
            coll.add_documents([Document(f"new-{i}", f"new story {i}", {"source": "lee"}) for i in range(5)], hashing)
            # an update of a document already listed, and of one not yet listed
            coll.add_documents([Document(first_listed[0], "rewritten early", {"source": "lee"}),
                                Document("doc-51", "rewritten late", {"source": "lee"})], hashing)  # fmt: skip
            assert coll.delete(["doc-57"]) == (1, [])  # not listed yet: must not appear
        elif page_no == 3:
            coll.add_documents([Document(f"late-{i}", f"late story {i}", {"source": "lee"}) for i in range(3)], hashing)
            coll.delete([first_listed[1]])  # listed already: stays listed once

    got = listing(coll, where, 6, between)
    pairs = [(d["id"], d["text"]) for d in got]
    assert len(pairs) == len(set(pairs)), "a row was listed twice"
    ids = [d["id"] for d in got]
    survivors = set(before) - {"doc-57", first_listed[1]}
    assert survivors <= set(ids), f"skipped: {survivors - set(ids)}"
    assert "doc-57" not in ids
    assert {f"new-{i}" for i in range(5)} | {f"late-{i}" for i in range(3)} <= set(ids)
    assert ids.count(first_listed[0]) == 2  # its old version, then the rewritten one
    assert [d["text"] for d in got if d["id"] == first_listed[0]][-1] == "rewritten early"
    assert [d["text"] for d in got if d["id"] == "doc-51"] == ["rewritten late"]
    for i in set(ids) - {first_listed[0]}:
        assert ids.count(i) == 1, i
    # everything in the collection now was listed, in its current version
    now = listing(coll, where, 1000)
    assert {(d["id"], d["text"]) for d in now} <= set(pairs)
    assert len(now) == count_documents(coll, where)


def _forge(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_bad_cursors_are_refused(backend_store, hashing):
    coll = backend_store.new(hashing, 20)
    other = backend_store.new(hashing, 20)
    cursor = list_documents(coll, {"source": "lee"}, 3).next_cursor
    assert list_documents(coll, {"source": "lee"}, 3, cursor).documents  # good
    payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    bad = [
        ("garbage", "invalid cursor"),
        ("!!!!", "invalid cursor"),
        (_forge([1, 2]), "invalid cursor"),
        (_forge({**payload, "after": "5"}), "invalid cursor"),
        (_forge({**payload, "after": True}), "invalid cursor"),
        (_forge({**payload, "v": 99}), "invalid cursor"),
        ("x" * 600, "invalid cursor"),
    ]
    for c, message in bad:
        with pytest.raises(InvalidCursor, match=message):
            list_documents(coll, {"source": "lee"}, 3, c)
    with pytest.raises(InvalidCursor, match="another filter"):
        list_documents(coll, {"source": "bbc"}, 3, cursor)
    with pytest.raises(InvalidCursor, match="another filter"):
        list_documents(coll, None, 3, cursor)
    with pytest.raises(InvalidCursor, match="another collection"):
        list_documents(other, {"source": "lee"}, 3, cursor)
    # the same filter written with its keys in another order is the same filter
    c2 = list_documents(coll, {"source": "lee", "year": {"$gte": 0}}, 3).next_cursor
    assert list_documents(coll, {"year": {"$gte": 0}, "source": "lee"}, 3, c2).documents
    for limit in (0, 1001, -1, True):
        with pytest.raises(InvalidArgument, match="limit"):
            list_documents(coll, None, limit)
    with pytest.raises(InvalidFilter):
        list_documents(coll, {"year": {"$near": 1}})
    with pytest.raises(InvalidFilter):
        count_documents(coll, "{not json")


def test_create_and_drop_collections(backend_store, hashing):
    name = f"a12_{uuid.uuid4().hex[:10]}"
    coll = create_collection(backend_store, name, "hashing", "HNSW32", "ip")
    try:
        assert (coll.row["model"], coll.row["index_spec"], coll.row["metric"]) == ("hashing", "HNSW32", "ip")
        with pytest.raises(CollectionExists):
            create_collection(backend_store, name, "hashing")
        # cheap checks before the model loads: a bad spec wins over an unknown model
        with pytest.raises(InvalidIndexSpec):
            create_collection(backend_store, f"{name}x", "no-such-model", "IVF,Foo")
        assert not backend_store.exists(f"{name}x")
        coll.add_documents(topic_docs(5), hashing)
        assert drop_collection(backend_store, name) == {"dropped": name, "documents": 5}
    finally:
        if backend_store.exists(name):
            backend_store.drop(name)
    assert not backend_store.exists(name)
    with pytest.raises(CollectionNotFound):
        drop_collection(backend_store, name)


# ---- the CLI --------------------------------------------------------------------------------


@pytest.fixture
def news(cli, tmp_path):
    src = tmp_path / "news.jsonl"
    src.write_text("".join(json.dumps({"id": d.id, "text": d.text, **d.metadata}) + "\n" for d in topic_docs(25)))
    assert cli("index", "create", "news", "--model", "hashing").exit_code == 0
    assert cli("index", "add", "news", str(src)).exit_code == 0
    return src


def test_cli_get(cli, news):
    r = cli("index", "get", "news", "--id", "doc-2", "--id", "doc-1", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [d["id"] for d in out["documents"]] == ["doc-2", "doc-1"] and out["not_found"] == []
    assert out["documents"][0] == {"id": "doc-2", "text": topic_docs(3)[2].text, "metadata": topic_docs(3)[2].metadata}
    r = cli("index", "get", "news", "--id", "doc-1", "--id", "ghost")
    assert r.exit_code == 1
    assert "doc-1" in r.stdout and "interest rates" in r.stdout
    assert "not found in 'news': ghost" in r.stderr and "Traceback" not in r.output
    r = cli("index", "get", "news", "--id", "ghost", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["not_found"] == ["ghost"]
    assert cli("index", "get", "news").exit_code == 2  # --id is required
    assert cli("index", "get", "nope", "--id", "x").exit_code == 1


def test_cli_docs_follows_cursors_and_count(cli, news):
    seen, cursor = [], None
    while True:
        r = cli("index", "docs", "news", "--where", '{"source": "lee"}', "--limit", "5", "--json",
                *(["--cursor", cursor] if cursor else []))  # fmt: skip
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        seen += [d["id"] for d in out["documents"]]
        cursor = out["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"doc-{i}" for i in range(1, 25, 2)]
    r = cli("index", "docs", "news", "--limit", "3")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["id", "text", "metadata"] and len(lines) == 2 + 3
    assert lines[2].startswith("doc-0 ") and '{"source": "bbc"' in lines[2]
    assert "more: --cursor " in r.stderr
    assert cli("index", "count", "news").stdout.strip() == "25"
    r = cli("index", "count", "news", "--where", '{"year": {"$gte": 2001}}', "--json")
    assert json.loads(r.stdout) == {
        "collection": "news",
        "where": {"year": {"$gte": 2001}},
        "count": sum(1 for d in topic_docs(25) if d.metadata["year"] >= 2001),
    }
    r = cli("index", "docs", "news", "--where", '{"source": "nobody"}')
    assert r.exit_code == 0 and r.stdout.strip() == "news: no documents match the filter"


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["index", "docs", "news", "--cursor", "garbage"], 2, "invalid cursor"),
        (["index", "docs", "news", "--limit", "0"], 2, "0 is not in the range"),
        (["index", "docs", "news", "--limit", "1001"], 2, "1001 is not in the range"),
        (["index", "docs", "news", "--where", "{bad"], 2, "filter is not valid JSON"),
        (["index", "count", "news", "--where", '{"a": {"$regex": "x"}}'], 2, "$regex"),
        (["index", "count", "nope"], 1, "no collection named 'nope'"),
        (["index", "docs", "nope"], 1, "no collection named 'nope'"),
    ],
)
def test_cli_bad_document_commands(cli, news, args, code, message):
    r = cli(*args)
    assert r.exit_code == code, r.output
    assert message in r.output and "Traceback" not in r.output


def test_cli_cursor_of_another_filter_is_a_usage_error(cli, news):
    cursor = json.loads(cli("index", "docs", "news", "--limit", "2", "--json").stdout)["next_cursor"]
    r = cli("index", "docs", "news", "--where", '{"source": "lee"}', "--cursor", cursor)
    assert r.exit_code == 2 and "another filter" in r.output
