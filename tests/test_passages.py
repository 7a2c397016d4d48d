"""Passages: long documents split in the model's tokenizer, one vector per passage, a document
scored by its best passage, k distinct documents, replaced and removed whole in one commit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedsearch.corpus import Document
from embedsearch.errors import InvalidArgument
from embedsearch.passages import MIN_TOKENS, Chunker, Chunking, resolve_chunking
from embedsearch.search import search
from tests.conftest import pg_url

FILLER = [
    "The council met on Tuesday to discuss the annual budget and the new parking rules for the town centre.",
    "Several residents asked why the library would close early during the winter months.",
    "A proposal to plant trees along the river path was approved after a short debate.",
    "The treasurer reported that rates income rose slightly compared with the previous year.",
    "Members agreed to review the bus timetable with the regional transport authority in spring.",
]
NEEDLE = "The centrifugal pump overheats whenever the coolant valve is left closed during start-up."


def long_text(paragraphs: int = 12, needle_at: int | None = None) -> str:
    paras = []
    for p in range(paragraphs):
        body = " ".join(FILLER[(p + i) % len(FILLER)] for i in range(4))
        if p == needle_at:
            body += " " + NEEDLE
        paras.append(body)
    return "\n\n".join(paras)


def tokens_in(tokenizer, text: str, a: int, b: int) -> int:
    enc = tokenizer.encode(text, add_special_tokens=False)
    return sum(1 for s, e in enc.offsets if s >= a and e <= b and e > s)


# ---- the splitter ---------------------------------------------------------------------------
def test_passages_respect_the_size_in_model_tokens_cover_the_text_and_overlap(minilm):
    tok = minilm.chunk_tokenizer()
    text = long_text(12)
    for size, overlap in [(64, 0), (64, 16), (200, 40), (254, 0)]:
        spans = Chunker(tok, Chunking(size, overlap)).spans([text])[0]
        assert len(spans) > 1
        assert spans[0][0] == 0 and spans[-1][1] == len(text)
        for (a, b), (c, _d) in zip(spans, spans[1:], strict=False):
            assert c <= b or not text[b:c].strip(), "passages leave out nothing but white space"
            assert c > a, "passages advance"
            shared = tokens_in(tok, text, c, b)
            assert shared <= overlap + 1
            if overlap:
                assert shared >= 1
        for a, b in spans:
            # counted the way the model will count the passage's own text
            assert len(tok.encode(text[a:b], add_special_tokens=False).ids) <= size
            assert tokens_in(tok, text, a, b) >= size // 2 or (a, b) == spans[-1]


def test_cuts_prefer_paragraphs_then_sentences_and_never_split_a_word(minilm):
    tok = minilm.chunk_tokenizer()
    text = long_text(12)
    spans = Chunker(tok, Chunking(120, 0)).spans([text])[0]
    for _a, b in spans[:-1]:
        assert text[b - 1] == "." and text[b : b + 1] in ("\n", " "), text[b - 20 : b + 5]
    words = "supercalifragilistic " * 300  # no sentence ends: cuts fall between words
    for _a, b in Chunker(tok, Chunking(64, 8)).spans([words])[0][:-1]:
        assert words[b - 1] == "c" and words[b] == " "


def test_a_document_that_fits_is_one_passage_spanning_all_its_text(minilm):
    tok = minilm.chunk_tokenizer()
    texts = ["  Short text with spaces around.  ", "", "é" * 10]
    assert Chunker(tok, Chunking(64)).spans(texts) == [[(0, len(t))] for t in texts]


def test_offsets_are_character_offsets_in_non_ascii_text(minilm):
    tok = minilm.chunk_tokenizer()
    text = "\n\n".join(f"Café naïve coöperation — 😀 paragraph {i}. " * 6 for i in range(10))
    spans = Chunker(tok, Chunking(40, 0)).spans([text])[0]
    assert "".join(text[a:b] for a, b in spans).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


def test_chunk_sizes_are_checked_against_the_model(minilm, hashing):
    window = minilm.token_window()
    assert window == 254  # MiniLM reads 256 word pieces, two of them [CLS] and [SEP]
    assert resolve_chunking(minilm, None, None) == Chunking(254, 0)
    assert resolve_chunking(minilm, 200, 40) == Chunking(200, 40)
    assert resolve_chunking(minilm, None, None, False) is None
    with pytest.raises(InvalidArgument, match="above model .* window of 254"):
        resolve_chunking(minilm, 255, None)
    with pytest.raises(InvalidArgument, match=f"below {MIN_TOKENS}"):
        resolve_chunking(minilm, MIN_TOKENS - 1, None)
    with pytest.raises(InvalidArgument, match="half"):
        resolve_chunking(minilm, 100, 51)
    with pytest.raises(InvalidArgument, match="cannot be combined"):
        resolve_chunking(minilm, 100, None, False)
    assert resolve_chunking(hashing, None, None) is None  # no window: nothing to split for
    with pytest.raises(InvalidArgument, match="no tokenizer"):
        resolve_chunking(hashing, 100, None)


# ---- the collection ---------------------------------------------------------------------------
@pytest.fixture
def long_docs():
    return [
        Document("pump-manual", long_text(12, needle_at=9), {"kind": "manual"}),
        Document("council", long_text(12), {"kind": "minutes"}),
        Document("volcano", "Volcanoes erupt molten rock called lava from deep inside the mantle.", {"kind": "note"}),
        Document("pump-short", "Pumps move water; keep the valve open.", {"kind": "note"}),
    ]


def test_text_past_the_window_is_found_with_passages_and_lost_without(store, minilm, long_docs):
    assert len(minilm.chunk_tokenizer().encode(long_docs[0].text.split(NEEDLE)[0]).ids) > 300  # well past 256
    chunked = store.create("chunked", minilm, chunking=Chunking(128, 16))
    plain = store.create("plain", minilm)
    r = chunked.add_documents(long_docs, minilm)
    assert r.passages > len(long_docs) and r.truncated == 0
    r2 = plain.add_documents(long_docs, minilm)
    assert r2.passages == len(long_docs) and r2.truncated == 2  # both long documents were cut short
    query = ["why does the pump overheat with the coolant valve closed"]
    hits = search(chunked, query, k=2, embedder=minilm)[0]
    assert hits[0].id == "pump-manual"
    passage = hits[0].extras["passage"]
    assert "coolant valve is left closed" in passage and hits[0].text[hits[0].extras["start"] : hits[0].extras["end"]] == passage
    a, b = hits[0].extras["start"], hits[0].extras["end"]
    assert any(h["term"] == "coolant" and a <= h["start"] < b for h in hits[0].extras["highlights"])
    assert search(plain, query, k=1, embedder=minilm)[0][0].id != "pump-manual"


def test_a_document_scores_as_its_best_passage_against_raw_sentence_transformers(store, minilm, long_docs):
    coll = store.create("c", minilm, chunking=Chunking(96, 0))
    coll.add_documents(long_docs, minilm)
    query = "tree planting along the river"
    spans = Chunker(minilm.chunk_tokenizer(), Chunking(96, 0)).spans([d.text for d in long_docs])
    q = minilm.model.encode([query], normalize_embeddings=True)[0]
    expected = {}
    for d, doc_spans in zip(long_docs, spans, strict=True):
        v = minilm.model.encode([d.text[a:b] for a, b in doc_spans], normalize_embeddings=True)
        expected[d.id] = float((v @ q).max())
    hits = search(coll, [query], k=4, embedder=minilm, mode="dense")[0]
    assert sorted(h.id for h in hits) == sorted(expected)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in hits:
        assert h.score == pytest.approx(expected[h.id], abs=1e-5)


def test_short_documents_get_exactly_the_unchunked_vectors(store, minilm, long_docs):
    short = [d for d in long_docs if len(d.text) < 200]
    a = store.create("a", minilm, chunking=Chunking(254))
    b = store.create("b", minilm)
    a.add_documents(short, minilm)
    b.add_documents(short, minilm)
    ha = search(a, ["lava"], k=2, embedder=minilm)[0]
    hb = search(b, ["lava"], k=2, embedder=minilm)[0]
    assert [(h.id, round(h.score, 6)) for h in ha] == [(h.id, round(h.score, 6)) for h in hb]


def test_k_distinct_documents_even_when_one_document_holds_every_top_passage(store, hashing, minilm):
    coll = store.create("c", minilm, chunking=Chunking(32, 0))
    docs = [Document("big", long_text(20, needle_at=3), {})] + [
        Document(f"d{i}", f"short note number {i} about {FILLER[i % 5][:40]}", {}) for i in range(5)
    ]
    coll.add_documents(docs, minilm)
    assert coll.info()["faiss_count"] > 40
    hits = search(coll, ["council budget parking"], k=4, embedder=minilm, mode="dense")[0]
    assert len(hits) == 4 and len({h.id for h in hits}) == 4
    hits = search(coll, ["council budget parking"], k=50, embedder=minilm, mode="dense")[0]
    assert sorted(h.id for h in hits) == sorted(d.id for d in docs)  # every document once


def test_upsert_and_delete_replace_all_passages_in_one_commit(store, minilm, long_docs):
    coll = store.create("c", minilm, chunking=Chunking(64, 8))
    coll.add_documents(long_docs, minilm)
    gen, vectors = coll.generation, coll.info()["faiss_count"]
    coll.add_documents([Document("pump-manual", "Now a short note about pumps.", {"kind": "manual"})], minilm)
    assert coll.generation == gen + 1
    info = coll.info()
    before = len(Chunker(minilm.chunk_tokenizer(), Chunking(64, 8)).spans([long_docs[0].text])[0])
    assert info["faiss_count"] == vectors - before + 1
    assert coll.verify().ok
    hits = search(coll, ["coolant valve closed pump overheats"], k=4, embedder=minilm, mode="dense")[0]
    assert all(NEEDLE not in (h.extras["passage"] or "") for h in hits)
    coll.delete(["council"])
    assert coll.generation == gen + 2 and coll.verify().ok
    assert coll.info()["faiss_count"] == info["faiss_count"] - len(
        Chunker(minilm.chunk_tokenizer(), Chunking(64, 8)).spans([long_docs[1].text])[0]
    )
    assert coll.count() == 3


def test_filters_select_documents_and_every_mode_keeps_the_k_guarantee(store, minilm, long_docs):
    coll = store.create("c", minilm, chunking=Chunking(48, 0), lexical=True)
    coll.add_documents(long_docs, minilm)
    for mode in ("dense", "hybrid", "lexical"):
        hits = search(coll, ["pump valve"], k=3, embedder=minilm, mode=mode, where={"kind": {"$in": ["manual", "note"]}})[0]
        assert {h.id for h in hits} <= {"pump-manual", "volcano", "pump-short"}
        assert len({h.id for h in hits}) == len(hits)
        assert all("passage" in h.extras and h.text[h.extras["start"] : h.extras["end"]] == h.extras["passage"] for h in hits)
    assert len(search(coll, ["pump valve"], k=3, embedder=minilm, mode="dense", where={"kind": {"$ne": "minutes"}})[0]) == 3
    matched = coll.matching_ids({"kind": "manual"})  # documents' row ids, not their passages'
    assert [ext for ext, _, _ in coll.fetch(matched).values()] == ["pump-manual"] and len(matched) == 1
    lexical_hit = search(coll, ["centrifugal"], k=1, mode="lexical")[0][0]
    assert lexical_hit.id == "pump-manual" and "centrifugal" in lexical_hit.extras["passage"]


def test_chunking_is_part_of_the_collection_and_survives_reopening(store, minilm, data_dir):
    from embedsearch.config import Settings
    from embedsearch.store import Store

    store.create("c", minilm, chunking=Chunking(100, 20))
    again = Store(Settings.from_env(data_dir)).open("c")
    assert again.chunking == Chunking(100, 20)
    assert again.info()["embedder_config"]["chunking"] == {"tokens": 100, "overlap": 20}


def test_repair_re_embeds_the_passages_of_a_lost_segment(store, minilm, long_docs, monkeypatch):
    monkeypatch.setenv("EMBEDSEARCH_SEAL_AT", "8")
    coll = store.create("c", minilm, chunking=Chunking(64, 0))
    coll.auto_merge = False
    for d in long_docs:
        coll.add_documents([d], minilm)
    query = ["why does the pump overheat with the coolant valve closed"]
    before = [(h.id, round(h.score, 5)) for h in search(coll, query, k=4, embedder=minilm, mode="dense")[0]]
    sealed = [s for s in coll.info()["segments"] if s["state"] == "sealed"]
    assert sealed
    from embedsearch.store.segment_files import segment_file

    (coll.dir / segment_file(sealed[0]["id"])).unlink()
    report = coll.verify()
    assert not report.ok
    coll.repair(minilm)
    assert coll.verify().ok, coll.verify().problems
    after = [(h.id, round(h.score, 5)) for h in search(coll, query, k=4, embedder=minilm, mode="dense")[0]]
    assert after == before


def test_verify_finds_a_document_without_passages_and_repair_re_embeds_it(store, minilm, long_docs):
    from sqlalchemy import delete

    from embedsearch.store.metadata import passages

    coll = store.create("c", minilm, chunking=Chunking(64, 0))
    coll.add_documents(long_docs, minilm)
    row_id = next(r for r, (ext, _, _) in coll.fetch(coll.matching_ids({"kind": "manual"}), ()).items() if ext == "pump-manual")
    with store.engine.begin() as conn:  # the passage rows lost behind the store's back
        conn.execute(delete(passages).where(passages.c.collection_id == coll.id, passages.c.doc_row_id == row_id))
    problems = coll.verify().problems
    assert any("1 documents have no passages" in p for p in problems), problems
    coll.repair(minilm)
    assert coll.verify().ok, coll.verify().problems
    hits = search(coll, ["coolant valve closed pump overheats"], k=1, embedder=minilm, mode="dense")[0]
    assert hits[0].id == "pump-manual"


def test_rebuild_keeps_the_chunking(store, minilm, long_docs):
    coll = store.create("c", minilm, chunking=Chunking(64, 8))
    coll.add_documents(long_docs, minilm)
    vectors = coll.info()["faiss_count"]
    coll.repair(minilm, rebuild=True)
    assert coll.chunking == Chunking(64, 8) and coll.verify().ok
    assert coll.info()["faiss_count"] == vectors


@pytest.mark.skipif(not pg_url(), reason="no EMBEDSEARCH_TEST_PG_URL")
def test_passages_on_postgresql(minilm, tmp_path, long_docs):
    from embedsearch.config import Settings
    from embedsearch.store import Store

    pg = Store(Settings.from_env(tmp_path / "d", db_url=pg_url()))
    name = f"passages_{np.random.default_rng().integers(1 << 30)}"
    coll = pg.create(name, minilm, chunking=Chunking(64, 8), lexical=True)
    try:
        coll.add_documents(long_docs, minilm)
        hits = search(coll, ["coolant valve pump overheats"], k=2, embedder=minilm, where={"kind": "manual"})[0]
        assert hits[0].id == "pump-manual" and NEEDLE in hits[0].extras["passage"]
        coll.delete(["pump-manual"])
        assert coll.verify().ok
    finally:
        pg.drop(name)


# ---- the CLI ------------------------------------------------------------------------------
def test_cli_chunks_sentence_collections_by_default_and_warns_when_told_not_to(cli, tmp_path, long_docs):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": d.id, "text": d.text, **d.metadata}) + "\n" for d in long_docs))
    r = cli("index", "create", "auto", "--model", "minilm", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["embedder_config"]["chunking"] == {"tokens": 254, "overlap": 0}
    r = cli("index", "create", "plain", "--model", "minilm", "--no-chunking")
    assert r.exit_code == 0 and "passages" not in r.output
    r = cli("index", "add", "plain", str(src))
    assert r.exit_code == 0
    assert r.stderr.count("warning: 2 documents are longer than model") == 1
    r = cli("index", "add", "auto", str(src), "--json")
    assert r.exit_code == 0 and "warning" not in r.stderr
    assert json.loads(r.stdout)["passages"] > 4
    r = cli("search", "auto", "coolant valve closed pump overheats", "--json", "-k", "4", "--mode", "dense")
    hit = {h["id"]: h for h in json.loads(r.stdout)}["pump-manual"]
    assert NEEDLE in hit["passage"] and hit["end"] > hit["start"] > 0
    r = cli("search", "auto", "coolant valve closed pump overheats", "-k", "4", "--mode", "hybrid")
    row = next(line for line in r.output.splitlines() if "pump-manual" in line)
    assert "**pump**" in row and "…" in row  # the table shows the passage, not the document's start
    for bad, why in [(["--chunk-tokens", "300"], "window of 254"), (["--chunk-tokens", "8"], "below 16"),
                     (["--chunk-tokens", "100", "--chunk-overlap", "60"], "half"),
                     (["--no-chunking", "--chunk-tokens", "100"], "cannot be combined")]:  # fmt: skip
        r = cli("index", "create", "bad", "--model", "minilm", *bad)
        assert r.exit_code == 2 and why in r.output + r.stderr, (bad, r.output)
    assert cli("index", "list", "--json").output.count('"bad"') == 0


# ---- the HTTP API -------------------------------------------------------------------------
def test_http_creates_chunked_collections_refuses_bad_sizes_and_returns_passages(data_dir, tmp_path, long_docs):
    from fastapi.testclient import TestClient

    from embedsearch.config import Settings
    from embedsearch.service.app import create_app

    settings = Settings.from_env(data_dir)
    with TestClient(create_app(settings, models_dir=tmp_path / "models")) as c:
        r = c.put("/collections/bad", json={"model": "minilm", "chunk_tokens": 300})
        assert r.status_code in (400, 422) and "window of 254" in r.text
        r = c.put("/collections/bad", json={"model": "minilm", "chunking": False, "chunk_tokens": 64})
        assert r.status_code in (400, 422) and "cannot be combined" in r.text
        assert c.get("/collections/bad").status_code == 404
        r = c.put("/collections/m", json={"model": "minilm", "chunk_tokens": 64, "chunk_overlap": 8})
        assert r.status_code == 201, r.text
        assert r.json()["embedder_config"]["chunking"] == {"tokens": 64, "overlap": 8}
        docs = [{"id": d.id, "text": d.text, "metadata": d.metadata} for d in long_docs]
        r = c.post("/collections/m/documents", json={"documents": docs})
        assert r.status_code == 200, r.text
        assert r.json()["passages"] > len(docs)
        r = c.post("/collections/m/search", json={"query": "coolant valve closed pump overheats", "k": 2, "mode": "dense"})
        hit = r.json()["hits"][0]
        assert hit["id"] == "pump-manual" and hit["passage"] == hit["text"][hit["start"] : hit["end"]]
        assert "coolant valve" in hit["passage"]
