"""The segment contract, every index spec: searching segments equals searching one index
holding the same vectors; tombstones never come back; merges and retraining keep results;
filtered searches keep the k guarantee; sealed segments are memory-mapped plain FAISS files."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from embedsearch.corpus import Document
from embedsearch.errors import InvalidIndexSpec
from embedsearch.store.specs import REFINE_FACTOR, auto_spec, default_nprobe, parse_spec, validate_spec
from tests.conftest import clustered

DIM = 32
N = 6000
FIRST = 3000  # the first batch trains the IVF/SQ template
BATCH = 1000
SEAL_AT = 1000
SPECS = {
    # spec: minimum recall@10 against exact search on the clustered data below
    "Flat": 1.0,
    "HNSW32": 0.95,
    "SQ8": 0.9,
    "IVF16,Flat": 0.9,  # default nprobe visits half of the 16 lists
    "IVF16,SQ8": 0.85,
    "IVF16,PQ8": 0.3,  # 4 bytes per vector: PQ trades recall for memory
    "IVF16,PQ8,Refine": 0.85,  # ... and the refine step buys it back from the full vectors
    "auto": 1.0,
}


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def docs_for(ids) -> list[Document]:
    return [Document(f"v{int(i)}", f"text {int(i)}", {"i": int(i), "even": int(i) % 2 == 0}) for i in ids]


@pytest.fixture(scope="module")
def data():
    x = clustered(N, DIM, seed=1)
    q = clustered(200, DIM, seed=2)
    exact = faiss.IndexFlatIP(DIM)
    exact.add(x)
    _, gt = exact.search(q, 10)
    return x, q, gt  # row ids are positions: documents are added in order


class FakeEmbedder:
    """Stands in for a model: collections only need its name, dimension and fingerprint."""

    name = spec = "fake32"
    dim = DIM
    fingerprint = "f" * 64

    def config(self):
        return {"options": {}}


def build(store, spec: str, x: np.ndarray, name: str = "seg"):
    coll = store.create(name, FakeEmbedder(), spec)
    coll.seal_at = SEAL_AT
    coll.auto_merge = False  # the tests below merge when they mean to
    coll.add_vectors(docs_for(range(FIRST)), x[:FIRST])
    for start in range(FIRST, len(x), BATCH):
        coll.add_vectors(docs_for(range(start, start + BATCH)), x[start : start + BATCH])
    return coll


@pytest.fixture(scope="module")
def module_store(tmp_path_factory):
    from embedsearch.config import Settings
    from embedsearch.store import Store

    return Store(Settings.from_env(tmp_path_factory.mktemp("segments")))


@pytest.fixture(scope="module", params=list(SPECS))
def built(request, data, module_store):
    x, _, _ = data
    name = "c" + "".join(ch for ch in request.param if ch.isalnum()).lower()
    return request.param, build(module_store, request.param, x, name)


def _one_index(coll, x: np.ndarray):
    """One FAISS index holding every vector, built the way the segments are (same template)."""
    view = coll.view()
    if view.training is not None:
        index = faiss.read_index(str(coll.dir / view.training.file))
        index.add_with_ids(x, np.arange(len(x), dtype=np.int64))
        return index
    return None


def test_segments_are_sealed_and_trained_as_asked(built, data):
    spec, coll = built
    info = coll.info()
    sealed = [s for s in info["segments"] if s["state"] == "sealed"]
    assert len(sealed) == 1 + (N - FIRST) // BATCH  # every batch of a seal's size is its own segment
    assert sum(s["vectors"] for s in info["segments"]) == N
    expected = "Flat" if spec == "auto" else spec
    assert {s["spec"] for s in sealed} == {expected}
    assert coll.verify(check_model=False).ok


def test_recall_against_exact(built, data):
    spec, coll = built
    _, q, truth = data
    _, found = coll.view().search(q, 10)
    r = recall_at(found, truth)
    assert r >= SPECS[spec], f"{spec}: recall@10 {r:.3f}"


def test_searching_segments_equals_searching_one_index(built, data):
    """For every spec whose segments share a quantizer (and for Flat): the same hits, scores
    included, as one index of that kind holding all the vectors, at the same nprobe."""
    spec, coll = built
    x, q, truth = data
    parsed = None if spec == "auto" else parse_spec(spec, DIM)
    scores, ids = coll.view().search(q, 10)
    if spec in ("Flat", "auto"):
        exact = faiss.IndexFlatIP(DIM)
        exact.add(x)
        s1, i1 = exact.search(q, 10)
    elif parsed.kind == "hnsw":
        return  # HNSW graphs cannot be shared or merged: its segments are held to recall (above)
    else:
        one = _one_index(coll, x)
        if parsed.ivf:
            nlist = faiss.extract_index_ivf(one).nlist
            params = faiss.SearchParametersIVF(nprobe=default_nprobe(nlist))
            k = 10 * REFINE_FACTOR if parsed.refine else 10
            s1, i1 = one.search(q, k, params=params)
            if parsed.refine:  # FAISS's refine: re-score the candidates with the full vectors
                exact_s = np.einsum("qd,qkd->qk", q, x[i1])
                order = np.argsort(-exact_s, axis=1, kind="stable")[:, :10]
                s1, i1 = np.take_along_axis(exact_s, order, axis=1), np.take_along_axis(i1, order, axis=1)
        else:
            s1, i1 = one.search(q, 10)
    if parsed is not None and parsed.refine:
        # each segment re-ranks its own top k*REFINE_FACTOR, a superset of one index's candidates
        assert (scores >= s1 - 1e-5).all() and (scores > s1 + 1e-5).any()
        return
    np.testing.assert_allclose(scores, s1, rtol=1e-4, atol=1e-5)
    same = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, i1, strict=True)])
    assert same >= 0.99, f"{spec}: {same:.3f} of the hits agree"  # only exact score ties may swap


def test_deleted_and_replaced_vectors_never_come_back(built, data, module_store):
    spec, _ = built
    x, q, _ = data
    coll = build(module_store, spec, x, name="del" + "".join(ch for ch in spec if ch.isalnum()).lower())
    rng = np.random.default_rng(5)
    gone = rng.choice(N, 1500, replace=False)
    coll.delete([f"v{i}" for i in gone])
    # an update gives a document a new row and tombstones the old one
    coll.add_vectors([Document("v7", "text 7 again", {"i": 7})], -x[7:8])
    gone_rows = set(int(i) for i in gone) | {7}

    def check():
        _, found = coll.view().search(q, 50)
        assert not gone_rows & set(found[found >= 0].tolist())
        _, found = coll.view().search(x[sorted(gone_rows)][:50], 1)
        assert not gone_rows & set(found.ravel().tolist())
        hits = coll.search_vectors(-x[7:8], 1)[0]
        assert hits[0].id == "v7" and hits[0].row_id >= N

    check()
    assert coll.merge()["merges"]  # tombstone-heavy segments are purged
    check()
    coll.optimize()
    check()
    info = coll.info()
    assert info["tombstones"] == 0 and coll.verify(check_model=False).ok
    assert info["faiss_count"] == N - len(gone_rows) + 1 == coll.count()


def test_filtered_search_keeps_the_k_guarantee_across_segments(built, data):
    spec, coll = built
    x, q, _ = data
    # 30 documents spread over every segment
    wanted = {"i": {"$in": [int(i) for i in np.linspace(0, N - 1, 30).astype(int)]}}
    hits = coll.search_vectors(q[:5], 10, where=wanted)
    allowed = np.linspace(0, N - 1, 30).astype(int)
    exact = (q[:5] @ x[allowed].T).max(axis=1)
    for row, best in zip(hits, exact, strict=True):
        assert len(row) == 10
        if spec in ("Flat", "HNSW32", "IVF16,Flat", "auto", "IVF16,PQ8,Refine"):
            assert row[0].score == pytest.approx(best, abs=1e-4)  # small sets are searched exactly
    assert [len(r) for r in coll.search_vectors(q[:3], 100, where=wanted)] == [30, 30, 30]
    half = coll.search_vectors(q[:3], 20, where={"even": True})
    assert all(len(r) == 20 and all(h.metadata["even"] for h in r) for r in half)


def test_merges_keep_results(data, store):
    x, q, truth = data
    for spec in ("Flat", "IVF16,Flat"):
        coll = build(store, spec, x, name="merge" + spec.replace(",", "").lower())
        before = coll.view().search(q, 10)
        result = coll.optimize()
        assert result["merges"] and len([s for s in coll.info()["segments"] if s["state"] == "sealed"]) == 1
        after = coll.view().search(q, 10)
        np.testing.assert_allclose(before[0], after[0], rtol=1e-5, atol=1e-6)
        assert coll.verify(check_model=False).ok


def test_tiered_merge_policy_bounds_the_segment_count(data, store):
    x, _, _ = data
    coll = store.create("tiers", FakeEmbedder(), "Flat")
    coll.seal_at = 100
    for start in range(0, 5000, 100):  # 50 seals
        coll.add_vectors(docs_for(range(start, start + 100)), x[start : start + 100])
    sealed = [s for s in coll.info()["segments"] if s["state"] == "sealed"]
    # 50 segments of level 0 become 6 of level 1 and 2 of level 0 (factor 8)
    assert len(sealed) < 12, [s["vectors"] for s in sealed]
    assert sum(s["vectors"] for s in sealed) == 5000 and coll.verify(check_model=False).ok


def test_ivf_retrains_once_the_collection_outgrows_its_training(data, store):
    x, q, truth = data
    coll = store.create("retrain", FakeEmbedder(), "IVF16,Flat")
    coll.seal_at = 700
    coll.auto_merge = False
    coll.add_vectors(docs_for(range(700)), x[:700])  # 700 >= 39 * 16: trained on 700 vectors
    first = coll.view().training
    assert first is not None and first.trained_on == 700
    for start in range(700, N, 700):
        coll.add_vectors(docs_for(range(start, min(N, start + 700))), x[start : start + 700])
    result = coll.merge()
    assert result["merges"] and result["merges"][0]["retrained"] == "IVF16,Flat"
    view = coll.view()
    assert view.training.train_id != first.train_id and view.training.trained_on >= 4 * 700
    assert {m.train_id for m in view.metas if m.state == "sealed"} == {view.training.train_id}
    _, found = view.search(q, 10)
    assert recall_at(found, truth) >= 0.9
    assert coll.verify(check_model=False).ok


def test_pending_ivf_segments_are_rebuilt_once_trained(data, store):
    x, q, truth = data
    coll = store.create("pending", FakeEmbedder(), "IVF16,Flat")
    coll.seal_at = 200
    coll.add_vectors(docs_for(range(400)), x[:400])  # 400 < 39 * 16: not trainable yet
    info = coll.info()
    assert "pending" in info and {s["spec"] for s in info["segments"]} == {"Flat"}
    coll.add_vectors(docs_for(range(400, 3000)), x[400:3000])
    info = coll.info()
    assert "pending" not in info
    assert {s["spec"] for s in info["segments"] if s["state"] == "sealed"} == {"IVF16,Flat"}


def test_sealed_segments_are_plain_faiss_files_opened_memory_mapped(data, store):
    x, _, _ = data
    coll = build(store, "IVF16,Flat", x, name="mmap")
    view = coll.view()
    for seg in view.sealed.values():
        plain = faiss.read_index(str(seg.path))  # plain FAISS, no container
        assert plain.ntotal == seg.meta.count
        lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(seg.index).invlists)
        assert isinstance(lists, faiss.OnDiskInvertedLists)  # the lists are the file, mapped
    flat = build(store, "Flat", x, name="mmapflat")
    flat.view()
    maps = open("/proc/self/maps").read()
    for seg in flat.view().sealed.values():
        assert str(seg.path) in maps  # the codes are mapped from the file, not copied into memory


def test_auto_chooses_by_size():
    assert auto_spec(10_000) == "Flat"
    assert auto_spec(100_000) == "IVF1024,Flat"
    assert auto_spec(1_000_000) == "IVF4096,Flat"
    for n in (50_000, 200_000, 3_000_000):
        nlist = parse_spec(auto_spec(n)).nlist
        assert 39 * nlist <= n


@pytest.mark.parametrize("spec", ["IVF", "HNSW", "PQ8", "IVF16,PQ7", "IVF0,Flat", "HNSW2", "IVF16,Flat,Refine", "Flat,Refine",
                                  " Flat", "auto ", "HNSW\u0663\u0662"])  # fmt: skip  # spaces, Arabic-Indic digits
def test_bad_specs_are_rejected_with_the_valid_forms(spec):
    with pytest.raises(InvalidIndexSpec):
        validate_spec(spec, DIM)


def test_refine_spec_is_canonical():
    assert validate_spec("ivf64,pq8,rflat", DIM) == "IVF64,PQ8,Refine"
    assert parse_spec("IVF64,PQ8,Refine").refine
