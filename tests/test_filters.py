"""The filter language on real databases: SQLite always, PostgreSQL when one is available."""

from __future__ import annotations

import uuid

import pytest

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.errors import InvalidFilter
from embedsearch.store import Store
from embedsearch.store.filters import parse_filter
from tests.conftest import pg_url

META = {
    "a": {"source": "lee", "year": 2001, "tags": "fire", "flag": True, "author": {"name": "Ann", "age": 40}},
    "b": {"source": "lee", "year": "2002"},  # a year stored as text never matches numeric comparisons
    "c": {"source": "bbc", "year": 1999, "flag": False},
    "d": {"year": 2005, "score": 0.5},
    "e": {"source": "lee", "author": {"name": "Bob", "age": 25}, "weird key": "x"},
}

CASES = [
    ({"source": "lee"}, "abe"),
    ({"source": {"$eq": "lee"}}, "abe"),
    ({"year": 2001}, "a"),
    ({"year": {"$gte": 2001}}, "ad"),
    ({"year": {"$gt": 1999, "$lt": 2005}}, "a"),
    ({"year": {"$lte": 2001}}, "ac"),
    ({"source": "lee", "year": {"$gte": 2001}}, "a"),
    ({"source": {"$ne": "lee"}}, "cd"),
    ({"source": {"$in": ["bbc", "cnn"]}}, "c"),
    ({"source": {"$nin": ["lee"]}}, "cd"),
    ({"year": {"$in": [1999, 2005, "2002"]}}, "bcd"),
    ({"flag": True}, "a"),
    ({"flag": False}, "c"),
    ({"flag": {"$exists": True}}, "ac"),
    ({"flag": {"$exists": False}}, "bde"),
    ({"source": None}, "d"),
    ({"author.name": "Bob"}, "e"),
    ({"author.age": {"$gt": 30}}, "a"),
    ({"weird key": "x"}, "e"),
    ({"$or": [{"source": "bbc"}, {"score": {"$gte": 0.5}}]}, "cd"),
    ({"$and": [{"source": "lee"}, {"author.age": {"$lt": 30}}]}, "e"),
    ({"$not": {"source": "lee"}}, "cd"),
    ({"$or": [{"year": 2001}, {"$and": [{"source": "lee"}, {"flag": {"$exists": False}}]}]}, "abe"),
    ({"missing": "x"}, ""),
    ({}, "abcde"),
]

BAD = [
    ('{"source": ', "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"year": {"$regex": "x"}}', "unknown operator '\\$regex'"),
    ('{"$xor": []}', "unknown operator '\\$xor'"),
    ('{"year": {"$in": 5}}', "takes a list"),
    ('{"year": {"$gt": [1]}}', "takes a string, number"),
    ('{"year": {"$gt": [1]}}', "not an array"),
    ('{"year": {"$gt": {"a": 1}}}', "cannot compare with an object"),
    ('{"year": {"$eq": 9223372036854775808}}', "64 bits"),
    ('{"year": {"$eq": NaN}}', "finite"),
    ('{"year": {"$size": -1}}', "non-negative integer"),
    ('{"year": {"$size": true}}', "non-negative integer"),
    ('{"year": {"$not": 5}}', "object of operators"),
    ('{"year": {"$elemMatch": []}}', "non-empty object"),
    ('{"year": {"$elemMatch": {"$gt": 1, "a": 2}}}', "mixes operators"),
    ('{"year": {"$all": 3}}', "takes a list"),
    ('{"$nor": {}}', "non-empty list"),
    ('{"a.$b": 1}', "cannot start with"),
    ('{"a.b.c.d.e.f.g.h": 1}', "more than 7 segments"),
    ('{"a.b.c.d.e.f.g": null}', "too costly to search without an index"),  # 640 ways through arrays
    ('{"a.b.c.d.e.f": 1, "b.c.d.e.f.g": 2, "c.d.e.f.g.h": 3}', "too costly"),  # 192 each
    ('{"$or": []}', "non-empty list"),
    ('{"author": {"name": "Ann"}}', "dotted names"),
    ('{"tags": [{"a": 1}]}', "cannot compare with an object"),
    ('{"a..b": 1}', "empty segment"),
    ('{"flag": {"$exists": "yes"}}', "true or false"),
    ('{"x": {}}', "empty operator"),
]


def _backends():
    yield pytest.param("sqlite", id="sqlite")
    yield pytest.param("postgresql", id="postgresql", marks=pytest.mark.skipif(not pg_url(), reason="no EMBEDSEARCH_TEST_PG_URL"))


@pytest.fixture(scope="module", params=list(_backends()))
def coll(request, tmp_path_factory, hashing):
    data = tmp_path_factory.mktemp("filters")
    url = None if request.param == "sqlite" else pg_url()
    store = Store(Settings.from_env(data, url))
    name = f"f-{uuid.uuid4().hex[:8]}"
    c = store.create(name, hashing, "Flat")
    c.add_documents([Document(k, f"text of {k}", m) for k, m in META.items()], hashing)
    yield c
    store.drop(name)


@pytest.mark.parametrize("spec, expected", CASES, ids=[str(c[0]) for c in CASES])
def test_filter_selects_exactly(coll, spec, expected):
    ids = coll.matching_ids(spec)
    got = "".join(sorted(ext for ext, _, _ in coll.fetch(ids).values())) if ids is not None else "abcde"
    assert got == expected


@pytest.mark.parametrize("text, message", BAD)
def test_bad_filters_are_rejected_clearly(coll, text, message):
    with pytest.raises(InvalidFilter, match=message):
        coll.matching_ids(parse_filter(text))


def test_values_are_bound_parameters_not_sql(coll):
    # a value that would break string-built SQL is just a value that matches nothing
    assert len(coll.matching_ids({"source": "lee' OR '1'='1"})) == 0
    assert len(coll.matching_ids({"source'; DROP TABLE documents; --": "x"})) == 0
    assert coll.count() == len(META)
