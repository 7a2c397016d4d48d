"""Random JSON at every door (issue 13, finding 3): filters, search bodies and document
metadata get an answer or a clear error (a domain error in the library, a 4xx over HTTP),
never a traceback or a 500. Bounded so the suite stays fast."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.errors import EmbedsearchError
from embedsearch.service.app import create_app
from embedsearch.store import Store
from tests.conftest import topic_docs

OPS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not", "$all", "$size", "$elemMatch"]
OPS += ["$regex"]
NAMES = ["source", "year", "tags", "a.b", "é", "tags.0", "$or", "$and", "$nor", "$not", ""]
KEYS = st.one_of(st.sampled_from(NAMES), st.text(max_size=6))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),  # beyond int64 too
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.just("\ud800"),  # a lone surrogate
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(KEYS, st.sampled_from(OPS)), inner, max_size=4),
    ),
    max_leaves=12,
)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory):
    from embedsearch.embedders import load_embedder

    store = Store(Settings.from_env(tmp_path_factory.mktemp("fuzz")))
    coll = store.create("fuzz", load_embedder("hashing"), "Flat")
    docs = topic_docs(60) + [Document("arr", "tags doc", {"tags": ["fire", "flood"], "a": {"b": 2}, "é": "x"})]
    coll.add_documents(docs, load_embedder("hashing"))
    return store


@FUZZ
@given(where=JSON)
def test_random_filters_get_an_answer_or_a_domain_error(fuzz_store, where):
    coll = fuzz_store.open("fuzz")
    try:
        coll.matching_ids(where)
    except EmbedsearchError:
        pass


@FUZZ
@given(meta=JSON)
def test_random_metadata_is_stored_or_refused_cleanly(fuzz_store, hashing, meta):
    coll = fuzz_store.open("fuzz")
    try:
        coll.add_documents([Document("fuzzed", "random metadata", meta if isinstance(meta, dict) else {"v": meta})], hashing)
    except EmbedsearchError:
        return
    assert coll.verify(check_model=False).ok


@pytest.fixture(scope="module")
def fuzz_client(fuzz_store):
    with TestClient(create_app(fuzz_store.settings)) as client:
        yield client


@FUZZ
@given(body=st.one_of(JSON, st.fixed_dictionaries({"query": st.text(max_size=20), "k": JSON, "where": JSON})))
def test_random_search_bodies_never_get_a_500(fuzz_client, body):
    # sent as raw bytes, NaN, Infinity and lone surrogates (invalid UTF-8) included
    raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    r = fuzz_client.post("/collections/fuzz/search", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (body, r.text)
    assert "Traceback" not in r.text


def test_a_filter_dict_with_a_lone_surrogate_is_a_domain_error(fuzz_store):
    """A filter given as a dict (the library's form) is checked like JSON text: a lone surrogate is
    InvalidFilter, not a UnicodeEncodeError from the database driver (CI found this)."""
    from embedsearch.errors import InvalidFilter

    coll = fuzz_store.open("fuzz")
    with pytest.raises(InvalidFilter):
        coll.matching_ids({"\ud800": 1})
    with pytest.raises(InvalidFilter):
        coll.search_vectors(np.ones((1, coll.dim), dtype=np.float32), 1, where={"a": "\ud800"})
