"""The lexical index and hybrid search through the library, on SQLite and on PostgreSQL: the index
follows every commit in its transaction, BM25 agrees with a reference implementation, filters and
the k guarantee hold in every mode, and no query text is ever SQL or FTS syntax."""

from __future__ import annotations

import math
import re
import uuid

import numpy as np
import pytest

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.errors import InvalidArgument
from embedsearch.highlights import highlights, mark
from embedsearch.search import search
from embedsearch.search_fusion import fuse, gap, query_alpha
from embedsearch.store import Store, lexical
from tests.conftest import pg_url, topic_docs

DBS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(not pg_url(), reason="no PostgreSQL configured"))]

#: what users type into a search box; none of it may become SQL or FTS syntax
BAD_QUERIES = [
    '"',
    '"unbalanced quote',
    "'single",
    "AND",
    "OR",
    "NOT",
    "cricket AND",
    "OR cricket",
    "NOT cricket",
    "cricket NOT",
    "*",
    "crick*",
    "-cricket",
    "--",
    ":",
    "text:cricket",
    "collection_id:1",
    "(",
    ")",
    "(cricket",
    "cricket)",
    "NEAR(cricket rates)",
    "NEAR(cricket, 2",
    "cricket NEAR rates",
    "^cricket",
    "{text}: cricket",
    "'; DROP TABLE documents; --",
    "1 OR 1=1",
    '" OR ""="',
    "cricket' || '",
    "rates & | ! <-> :* cricket",
    "\\",
    "%_%",
    "🙂🔥",
    "cricket 🙂",
    "\u0000",
    "   ",
    "é ü ß Ω 中文",
]


@pytest.fixture(params=DBS)
def store(request, tmp_path):
    url = pg_url() if request.param == "postgresql" else None
    return Store(Settings.from_env(tmp_path, url) if url else Settings.from_env(tmp_path))


@pytest.fixture
def new_name(store):
    names = []

    def make(prefix: str = "lx") -> str:
        names.append(f"{prefix}-{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield make
    for n in names:
        if store.exists(n):
            store.drop(n)


def _lexical_ids(coll, query: str, k: int = 10) -> list[str]:
    return [h.id for h in search(coll, [query], k, mode="lexical")[0]]


def test_the_index_follows_adds_upserts_and_deletes_in_the_same_commit(store, new_name, hashing):
    coll = store.create(new_name(), hashing, lexical=True)
    coll.add_documents(
        [Document("a", "error E1234 on startup", {}), Document("b", "the pump overheats", {}), Document("c", "E1234 again", {})],
        hashing,
    )
    assert _lexical_ids(coll, "e1234") == ["a", "c"] or _lexical_ids(coll, "e1234") == ["c", "a"]
    coll.add_documents([Document("a", "a calm morning", {})], hashing)  # upsert: the old words go
    assert _lexical_ids(coll, "E1234") == ["c"]
    assert _lexical_ids(coll, "calm") == ["a"]
    coll.delete(["c"])
    assert _lexical_ids(coll, "E1234") == []
    with store.engine.connect() as conn:
        assert lexical.row_count(conn, coll.id) == coll.count() == 2
    assert coll.verify(check_model=False).ok
    assert coll.info()["lexical"]["documents"] == 2


def test_a_failed_commit_leaves_the_index_as_it_was(store, new_name, hashing, monkeypatch):
    coll = store.create(new_name(), hashing, lexical=True)
    coll.add_documents([Document("a", "bushfire smoke", {})], hashing)
    monkeypatch.setenv("EMBEDSEARCH_TEST_CRASH_AT", "never")
    from embedsearch.store import commit as collection_module  # the commit protocol owns the crash points

    def boom(name):
        if name == "before-commit":
            raise RuntimeError("injected")

    monkeypatch.setattr(collection_module, "crash_point", boom)
    with pytest.raises(RuntimeError):
        coll.add_documents([Document("b", "bushfire rain", {})], hashing)
    with pytest.raises(RuntimeError):
        coll.delete(["a"])
    monkeypatch.undo()
    assert _lexical_ids(coll, "bushfire") == ["a"]
    assert coll.verify(check_model=False).ok


def test_collections_do_not_share_an_index_and_drop_removes_it(store, new_name, hashing):
    one, two = store.create(new_name(), hashing, lexical=True), store.create(new_name(), hashing, lexical=True)
    one.add_documents([Document("x", "cricket wickets", {})], hashing)
    two.add_documents([Document("y", "cricket bats", {})], hashing)
    assert _lexical_ids(one, "cricket") == ["x"] and _lexical_ids(two, "cricket") == ["y"]
    table = lexical.table_name(one.id)
    store.drop(one.name)
    from sqlalchemy import inspect

    assert table not in inspect(store.engine).get_table_names()
    assert _lexical_ids(two, "cricket") == ["y"]


def test_an_existing_collection_gains_and_loses_the_index(store, new_name, hashing):
    coll = store.create(new_name(), hashing)
    coll.add_documents(topic_docs(200), hashing)
    assert not coll.has_lexical()
    with pytest.raises(InvalidArgument, match="no lexical index.*index alter .* --lexical"):
        search(coll, ["cricket"], 5, mode="lexical")
    assert search(coll, ["cricket"], 5, embedder=hashing)[0][0].extras["mode"] == "dense"  # the default without one
    out = coll.set_lexical(True)
    assert out["documents_indexed"] == 200 and coll.has_lexical()
    assert len(search(coll, ["cricket"], 5, mode="lexical")[0]) == 5
    assert search(coll, ["cricket"], 5, embedder=hashing)[0][0].extras["mode"] == "hybrid"  # the default with one
    assert coll.set_lexical(True, rebuild=True)["documents_indexed"] == 200
    assert coll.verify(check_model=False).ok
    coll.set_lexical(False)
    assert not coll.has_lexical() and coll.info()["lexical"] is None
    coll.add_documents(topic_docs(210), hashing)  # commits go on without an index
    assert coll.verify(check_model=False).ok


def test_verify_finds_an_index_that_disagrees_and_repair_rebuilds_it(store, new_name, hashing):
    coll = store.create(new_name(), hashing, lexical=True)
    coll.add_documents(topic_docs(20), hashing)
    from sqlalchemy import text

    with store.engine.begin() as conn:  # damage it behind the collection's back
        if store.dialect == "postgresql":
            conn.execute(text(f"DELETE FROM {lexical.table_name(coll.id)} WHERE row_id = 3"))
        else:
            conn.execute(text(f"DELETE FROM {lexical.table_name(coll.id)}_docsize WHERE id = 3"))
    report = coll.verify(check_model=False)
    assert not report.ok and any("lexical index holds 19 documents, SQL 20" in p for p in report.problems)
    coll.set_lexical(True, rebuild=True)
    assert coll.verify(check_model=False).ok


# ---- ranking ------------------------------------------------------------------------------
def _bm25_reference(docs: list[str], terms: list[str], k1: float = 1.2, b: float = 0.75) -> dict[int, float]:
    """Okapi BM25 as SQLite's FTS5 documents it (idf floored at 1e-6), written independently."""
    toks = [[w.lower() for w in re.findall(r"[^\W_]+", d)] for d in docs]
    n = len(toks)
    avgdl = sum(map(len, toks)) / n
    out = {}
    for i, t in enumerate(toks):
        s, hit = 0.0, False
        for term in terms:
            nt = sum(1 for d in toks if term in d)
            f = t.count(term)
            if not f:
                continue
            hit = True
            idf = math.log((n - nt + 0.5) / (nt + 0.5))
            idf = idf if idf > 0 else 1e-6
            s += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(t) / avgdl))
        if hit:
            out[i] = s
    return out


def _check_bm25(coll, texts: dict[int, str]) -> None:
    ids = sorted(texts)
    for query in ["w1", "w2 w3", "W4 w5 w6 nothere", "w7 w7 w8"]:
        expected = {ids[i]: v for i, v in _bm25_reference([texts[j] for j in ids], lexical.query_terms(query)).items()}
        hits = search(coll, [query], len(texts), mode="lexical")[0]
        got = {int(h.id): h.score for h in hits}
        assert set(got) == set(expected), query
        for i, s in expected.items():
            assert got[i] == pytest.approx(s, rel=1e-6, abs=1e-9), (query, i)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)


def test_bm25_scores_equal_a_reference_implementation_on_both_databases(store, new_name, hashing):
    """FTS5's bm25() on SQLite, our SQL on PostgreSQL (its statistics kept through adds, upserts
    and deletes, and counted afresh for an index that has none, as older versions made them)."""
    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(60)]
    texts = {i: " ".join(rng.choice(vocab, size=int(rng.integers(3, 40)))) for i in range(150)}
    coll = store.create(new_name(), hashing, lexical=True)
    coll.add_documents([Document(str(i), t, {}) for i, t in texts.items()], hashing)
    _check_bm25(coll, texts)
    coll.delete([str(i) for i in range(0, 150, 7)])
    changed = {i: " ".join(rng.choice(vocab, size=int(rng.integers(3, 40)))) for i in range(1, 150, 11)}
    coll.add_documents([Document(str(i), t, {}) for i, t in changed.items()], hashing)
    texts = {i: changed.get(i, t) for i, t in texts.items() if i % 7 or i in changed}
    _check_bm25(coll, texts)
    if store.dialect == "postgresql":
        from sqlalchemy import delete

        from embedsearch.store.metadata import lexical_stats

        with store.engine.begin() as conn:
            conn.execute(delete(lexical_stats).where(lexical_stats.c.collection_id == coll.id))
        _check_bm25(coll, texts)  # counted in the query
        coll.add_documents([Document("new", "w1 w2 w2", {})], hashing)
        texts[10_000] = "w1 w2 w2"
        with store.engine.connect() as conn:
            assert conn.execute(lexical_stats.select().where(lexical_stats.c.collection_id == coll.id)).one()[1] == len(texts)
        assert coll.verify().ok
        with store.engine.begin() as conn:
            conn.execute(lexical_stats.update().where(lexical_stats.c.collection_id == coll.id).values(docs=5))
        report = coll.verify()
        assert not report.ok and "BM25 statistics count 5 documents" in " ".join(report.problems)
        coll.set_lexical(True, rebuild=True)  # what index repair --lexical does
        assert coll.verify().ok


def test_clear_cases_rank_the_same_on_both_databases(store, new_name, hashing):
    """A rare word beats a common one, more occurrences beat fewer, a short document beats a long
    one with the same count."""
    coll = store.create(new_name(), hashing, lexical=True)
    filler = " ".join(f"pad{i}" for i in range(40))
    docs = [
        Document("rare", "zebra apple", {}),
        Document("twice", "apple apple banana", {}),
        Document("once-short", "apple banana", {}),
        Document("once-long", "apple banana " + filler, {}),
    ] + [Document(f"common-{i}", f"banana filler{i}", {}) for i in range(8)]
    coll.add_documents(docs, hashing)
    assert _lexical_ids(coll, "zebra banana")[0] == "rare"
    ranked = _lexical_ids(coll, "apple")
    assert ranked.index("twice") < ranked.index("once-short") < ranked.index("once-long")


# ---- modes, filters, the k guarantee -----------------------------------------------------
@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_filters_apply_and_k_holds_in_every_mode(store, new_name, hashing, mode, fusion):
    if mode != "hybrid" and fusion == "weighted":
        pytest.skip("fusion only applies to hybrid")
    coll = store.create(new_name(), hashing, lexical=True)
    docs = topic_docs(400, rare_every=40)  # 10 rare documents, of all four topics
    coll.add_documents(docs, hashing, commit_every=150)
    where = {"rare": True}
    for k in (1, 5, 10, 20):
        hits = search(coll, ["story wickets"], k, where=where, mode=mode, fusion=fusion, embedder=hashing)[0]
        assert all(h.metadata["rare"] for h in hits)
        assert len({h.id for h in hits}) == len(hits) == min(k, 10), (mode, k)  # every doc says "story"
    # a term only a few filtered documents hold: lexical gives those, hybrid still gives k
    hits = search(coll, ["cricket"], 10, where=where, mode=mode, fusion=fusion, embedder=hashing)[0]
    rare_cricket = {d.id for d in docs if d.metadata["rare"] and "cricket" in d.text}
    if mode == "lexical":
        assert {h.id for h in hits} == rare_cricket
    else:
        assert len(hits) == 10
    assert search(coll, ["cricket"], 5, where={"year": 1800}, mode=mode, embedder=hashing) == [[]]


def test_hybrid_finds_what_either_side_finds(store, new_name, minilm):
    coll = store.create(new_name(), minilm, lexical=True)
    docs = [
        Document("code", "Fault XR-7781 reported by the controller.", {}),
        Document("heat", "The pump gets very hot after running for an hour.", {}),
        Document("rain", "Heavy rain flooded the valley overnight.", {}),
        Document("vote", "Parliament votes on the budget today.", {}),
    ]
    coll.add_documents(docs, minilm)
    # the code is a rare token: lexical finds it first, hybrid keeps it first
    assert _lexical_ids(coll, "xr 7781")[0] == "code"
    assert search(coll, ["xr 7781"], 1, embedder=minilm)[0][0].id == "code"
    # a paraphrase with no shared word: dense finds it, hybrid keeps it
    assert search(coll, ["why does the motor overheat"], 1, mode="dense", embedder=minilm)[0][0].id == "heat"
    assert search(coll, ["why does the motor overheat"], 1, embedder=minilm)[0][0].id == "heat"


def test_bad_arguments_are_refused(store, new_name, hashing):
    coll = store.create(new_name(), hashing, lexical=True)
    for kwargs, message in [
        ({"mode": "fuzzy"}, "unknown search mode"),
        ({"fusion": "max"}, "unknown fusion"),
        ({"fusion": "weighted", "alpha": 1.5}, "alpha must be"),
        ({"fusion": "rrf", "alpha": 0.5}, "alpha applies to fusion relative and weighted only"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            search(coll, ["x"], 3, embedder=hashing, **kwargs)


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_no_query_text_is_ever_sql_or_fts_syntax(store, new_name, hashing, mode):
    coll = store.create(new_name(), hashing, lexical=True)
    docs = topic_docs(40) + [Document("quoted", 'He said "AND" OR NOT; NEAR the (end) -- text:cricket', {})]
    coll.add_documents(docs, hashing)
    for q in BAD_QUERIES:
        hits = search(coll, [q], 5, mode=mode, embedder=hashing)[0]
        words = lexical.query_terms(q)
        if mode == "lexical":
            holding = {d.id for d in docs if set(words) & set(lexical.query_terms(d.text))}
            assert len(hits) == min(5, len(holding)) and {h.id for h in hits} <= holding, q
            for h in hits:
                assert {x["term"] for x in h.extras["highlights"]} <= set(words)
        else:
            assert len(hits) == 5, q
    # the operators are plain words: the document holding them is found by them
    assert _lexical_ids(coll, "NEAR")[0] == "quoted"
    assert _lexical_ids(coll, '"AND" OR NOT')[0] == "quoted"
    assert coll.verify(check_model=False).ok  # and nothing was dropped


# ---- fusion and highlights (pure functions) --------------------------------------------------
def test_rrf_and_weighted_fusion_by_hand():
    dense = (np.array([10, 11, 12]), np.array([0.9, 0.8, 0.1]))
    lex = (np.array([12, 13]), np.array([5.0, 1.0]))
    f = fuse(dense, lex, 4, fusion="rrf")
    expected = {10: 1 / 61, 11: 1 / 62, 12: 1 / 63 + 1 / 61, 13: 1 / 62}
    assert f.ids.tolist() == [12, 10, 11, 13]  # 11 and 13 tie: dense rank 2 vs lexical rank 2, then row id
    assert f.scores.tolist() == pytest.approx([expected[i] for i in f.ids.tolist()])
    assert f.dense_rank.tolist() == [3, 1, 2, 0] and f.lexical_rank.tolist() == [1, 0, 0, 2]
    w = fuse(dense, lex, 4, fusion="weighted", alpha=0.25)
    # dense normalised: 10 -> 1, 11 -> 0.875, 12 -> 0; lexical: 12 -> 1, 13 -> 0
    got = dict(zip(w.ids.tolist(), w.scores.tolist(), strict=True))
    assert got == pytest.approx({10: 0.25, 11: 0.21875, 12: 0.75, 13: 0.0})
    assert w.ids.tolist()[0] == 12
    assert fuse((np.array([], dtype=np.int64), np.array([])), lex, 5).ids.tolist() == [12, 13]


def test_relative_fusion_by_hand():
    """The default: each side's scores over its best; the dense weight is alpha (0.85) moved up by
    the dense side's confidence (gap of its two best scores) and down by the lexical side's."""
    dense = (np.array([10, 11, 12]), np.array([0.9, 0.8, 0.1]))
    lex = (np.array([12, 13]), np.array([5.0, 1.0]))
    a = 0.85 + 0.5 * (0.9 - 0.8) / 0.9 - 0.2 * (5.0 - 1.0) / 5.0
    assert query_alpha(0.85, dense[1], lex[1]) == pytest.approx(a)
    r = fuse(dense, lex, 4)  # relative, alpha 0.85
    got = dict(zip(r.ids.tolist(), r.scores.tolist(), strict=True))
    assert got == pytest.approx({10: a, 11: a * 0.8 / 0.9, 12: a * 0.1 / 0.9 + (1 - a), 13: (1 - a) * 0.2})
    assert r.ids.tolist() == [10, 11, 12, 13]
    # alpha 0.5: the lexical side's best (12) overtakes dense's best (10)
    assert fuse(dense, lex, 4, fusion="relative", alpha=0.5).ids.tolist()[:3] == [12, 10, 11]
    # a side with one candidate is sure of it (gap 1); negative dense scores count as 0; the
    # weight stays within [0, 1]
    assert gap(np.array([2.0])) == 1.0 and gap(np.array([])) == 0.0 and gap(np.array([0.0, 0.0])) == 0.0
    assert query_alpha(1.0, np.array([0.5, -0.5]), np.array([])) == 1.0
    assert query_alpha(0.0, np.array([]), np.array([3.0])) == 0.0
    neg = fuse((np.array([1, 2]), np.array([0.5, -0.5])), (np.array([3]), np.array([2.0])), 3, alpha=0.5)
    assert dict(zip(neg.ids.tolist(), neg.scores.tolist(), strict=True)) == pytest.approx({1: 0.8, 2: 0.0, 3: 0.2})


def test_highlights_give_offsets_of_the_words_as_written():
    text = "Error E1234: the E1234-handler (e1234) failed; errors_ok"
    spans = highlights(text, lexical.query_terms("e1234 ERROR"))
    assert [(s["term"], text[s["start"] : s["end"]]) for s in spans] == [
        ("error", "Error"),
        ("e1234", "E1234"),
        ("e1234", "E1234"),
        ("e1234", "e1234"),
    ]
    assert mark("a cat", highlights("a cat", ["cat"])) == "a **cat**"
    assert highlights("anything", lexical.query_terms('"( NEAR *')) == []


def test_stop_words_stay_out_of_matching_and_highlights(store, new_name, hashing):
    """English stop words by default: a question's function words neither match nor get marked,
    unless the query has nothing else; a collection can choose another language or none."""
    from embedsearch.search import set_defaults

    coll = store.create(new_name(), hashing, lexical=True)
    docs = [
        Document("copy", "To copy a file, use cp with the name of the file and of the copy.", {}),
        Document("noise", "Do it the way I did, of course, or do what a friend does.", {}),
        Document("hamlet", "To be, or not to be, that is the question.", {}),
        Document("gaps", "Fill the gaps in a wall with plaster.", {}),
    ]
    coll.add_documents(docs, hashing)
    hits = search(coll, ["how do I make a copy of a file"], 4, mode="lexical")[0]
    assert [h.id for h in hits] == ["copy"]  # "noise" shares only stop words with the query
    assert {x["term"] for x in hits[0].extras["highlights"]} == {"copy", "file"}
    # nothing but stop words: they are the query
    assert _lexical_ids(coll, "to be or not to be")[0] == "hamlet"
    # hybrid marks the same words, on both sides' hits
    for h in search(coll, ["how do I make a copy of a file"], 4, mode="hybrid", embedder=hashing)[0]:
        assert {x["term"] for x in h.extras.get("highlights", [])} <= {"copy", "file"}
    # another language's list, or none: every word counts again
    set_defaults(coll, stop_words="none")
    hits = search(coll, ["how do I make a copy of a file"], 4, mode="lexical")[0]
    assert {"copy", "noise"} <= {h.id for h in hits}
    assert "of" in {x["term"] for x in hits[0].extras["highlights"]}
    set_defaults(coll, stop_words="german")
    assert {"copy", "noise"} <= set(_lexical_ids(coll, "how do I make a copy of a file"))
    hits = search(coll, ["die gaps in der wall"], 4, mode="lexical")[0]  # die, in, der: German stop words
    assert [h.id for h in hits] == ["gaps"] and {x["term"] for x in hits[0].extras["highlights"]} == {"gaps", "wall"}
    with pytest.raises(InvalidArgument, match="no stop-word list for 'klingon'"):
        set_defaults(coll, stop_words="klingon")
