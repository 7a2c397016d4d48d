"""Filters against a reference implementation of MongoDB's query semantics (mongomock).

Seeded random documents and filters, each filter run through the real Store/Collection API on
SQLite and on PostgreSQL (when EMBEDSEARCH_TEST_PG_URL is set), and compared with what
mongomock's matcher selects. mongomock differs from MongoDB in a few known ways; each is listed
in MONGOMOCK_DEVIATIONS with how the test keeps it out, and each behaviour concerned is pinned to
MongoDB's documented results (jstests/core/query/null_query_semantics.js) by explicit cases below.
"""

from __future__ import annotations

import json
import random
import uuid

import pytest
from sqlalchemy import text, update

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.search import search
from embedsearch.store import Store
from embedsearch.store.metadata import documents
from tests.conftest import pg_url

mongomock = pytest.importorskip("mongomock")
from mongomock.filtering import NOTHING, filter_applies, iter_key_candidates  # noqa: E402

MONGOMOCK_DEVIATIONS = {
    "true_equals_one": "mongomock compares with Python's ==, so True == 1 and False == 0 (MongoDB: a boolean never "
    "equals a number). Kept out: generated numbers are never 0 or 1; test_booleans_never_equal_numbers pins ours.",
    "null_through_scalar": "mongomock finds no value at 'a.b' when 'a' is a scalar or null, so {'a.b': null} misses "
    "the document; in MongoDB 'a.b' is missing there and matches null. Kept out: such (filter, document) pairs are "
    "skipped (deviates()); test_null_semantics_of_mongodb pins ours.",
    "negations_per_candidate": "mongomock evaluates $ne/$nin with the other operators of the same object once per "
    "candidate value, and $exists: false as 'some candidate is missing'. MongoDB defines $ne, $nin, $exists: false "
    "and $not as the negation of the positive form. Kept out: the reference gets them as $nor of the positive form.",
    "comparisons_with_null": "mongomock's $gte/$lte null miss a missing field (MongoDB: {$gte: null} is {$eq: null}). "
    "Kept out: the reference gets {$eq: null}.",
    "all_flattens": "mongomock's $all flattens candidate lists. MongoDB defines $all as the $and of equalities. Kept "
    "out: the reference gets the $and.",
    "size_of_non_arrays": "mongomock's $size 1 matches any truthy scalar and $size n an object with n keys (MongoDB: "
    "only arrays). Kept out: pairs with a non-array candidate are skipped; test_size_only_counts_arrays pins ours.",
    "eq_operator_with_array": "mongomock's {$eq: [..]} does not match an element equal to the array, the implicit form "
    "does (MongoDB: both do). Kept out: the reference gets the implicit form.",
}

N_DOCS = 2000
N_FILTERS = 300
SEED = 12

NUMBERS = [-3, 2, 3, 5, 7, -0.5, 2.5, 3.0, 1e20, 2**53, 2**53 + 1, 9007199254740992.0, 2**62 + 1, 2**62, -(2**53) - 1]
STRINGS = ["a", "b", "Zebra", "apple", "é", "ä", "Z", "", "😀", 'a"b', "a\\b", "zz"]
SCALARS = NUMBERS + STRINGS + [True, False, None]
KEYS = ["n", "s", "a", "o", "é", 'q"k', "b\\k", "x"]
PATHS = ["n", "s", "a", "o", "o.k", "o.m", "a.k", "a.m", "a.0", "a.1", "o.m.0", "a.k.z", "n.k", "é", 'q"k', "b\\k",
         "x", "x.y", "missing", "o.é"]


def _scalar(r: random.Random):
    return r.choice(SCALARS)


#: a filter's numbers lie within 64-bit integers (1e20 is an integer to JSON, and to the OpenAPI
#: document's filter schema); documents keep 1e20, which comparisons with these still cross
FILTER_NUMBERS = [x for x in NUMBERS if -(2**63) <= x < 2**63]


def _filter_scalar(r: random.Random):
    return r.choice(FILTER_NUMBERS + STRINGS + [True, False, None])


def _value(r: random.Random, depth: int = 0):
    roll = r.random()
    if depth < 2 and roll < 0.25:
        return [_value(r, depth + 1) if r.random() < 0.3 else _scalar(r) for _ in range(r.randint(0, 4))]
    if depth < 2 and roll < 0.4:
        obj = {}
        for k in r.sample(["k", "m", "z", "é"], r.randint(0, 3)):
            obj[k] = _value(r, depth + 1)
        return obj
    return _scalar(r)


def make_docs(n: int, seed: int = SEED) -> list[dict]:
    r = random.Random(seed)
    return [{k: _value(r) for k in r.sample(KEYS, r.randint(1, len(KEYS)))} for _ in range(n)]


def _leaf(r: random.Random) -> tuple[str, object]:
    """(path, condition) with one operator, all operators MongoDB has that we support."""
    path = r.choice(PATHS)
    op = r.choice(["eq", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not", "$all",
                   "$size", "$elemMatch", "null", "array"])
    if op == "eq":
        return path, _filter_scalar(r)
    if op == "null":
        return path, r.choice([None, {"$eq": None}, {"$ne": None}, {"$in": [None, r.choice(FILTER_NUMBERS)]}, {"$nin": [None]}])
    if op == "array":
        return path, [_filter_scalar(r) for _ in range(r.randint(0, 2))]
    if op in ("$eq", "$ne"):
        return path, {op: _filter_scalar(r) if r.random() < 0.8 else [_filter_scalar(r)]}
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return path, {op: _filter_scalar(r)}
    if op in ("$in", "$nin", "$all"):
        return path, {op: [_filter_scalar(r) for _ in range(r.randint(0 if op == "$all" else 1, 4))]}
    if op == "$exists":
        return path, {op: r.choice([True, False])}
    if op == "$not":
        inner = _leaf(r)[1]
        return path, {"$not": inner if isinstance(inner, dict) else {"$eq": inner}}
    if op == "$size":
        return path, {op: r.randint(0, 3)}
    # $elemMatch: operators on each element, or a (positive) filter on elements that are objects
    if r.random() < 0.5:
        if r.random() < 0.5:
            return path, {op: {"$gte": r.choice(FILTER_NUMBERS), "$lt": r.choice(FILTER_NUMBERS)}}
        return path, {op: {"$eq": _filter_scalar(r)}}
    return path, {op: {r.choice(["k", "m"]): _filter_scalar(r)}}


def make_filter(r: random.Random, depth: int = 0) -> dict:
    roll = r.random()
    if depth < 2 and roll < 0.25:
        op = r.choice(["$and", "$or", "$nor", "$not"])
        if op == "$not":
            return {"$not": make_filter(r, depth + 1)}
        return {op: [make_filter(r, depth + 1) for _ in range(r.randint(1, 3))]}
    path, cond = _leaf(r)
    if depth < 2 and roll < 0.35:  # two operators in one object on the same field
        path2, cond2 = _leaf(r)
        if isinstance(cond, dict) and isinstance(cond2, dict) and not (set(cond) & set(cond2)):
            return {path: {**cond, **cond2}}
    return {path: cond}


# ---- the reference: mongomock, given the MongoDB-equivalent forms it handles right -------------
def to_reference(spec: dict) -> dict:
    out = []
    for key, value in spec.items():
        if key in ("$and", "$or", "$nor"):
            out.append({key: [to_reference(v) for v in value]})
        elif key == "$not":
            out.append({"$nor": [to_reference(value)]})
        elif isinstance(value, dict):
            out.extend(_ops_reference(key, op, arg) for op, arg in value.items())
        else:
            out.append({key: value})
    return out[0] if len(out) == 1 else {"$and": out}


def _ops_reference(path: str, op: str, arg) -> dict:
    if op == "$eq":
        return {path: arg}
    if op == "$ne":
        return {"$nor": [{path: arg}]}
    if op == "$nin":
        return {"$nor": [{path: {"$in": arg}}]}
    if op == "$exists" and arg is False:
        return {"$nor": [{path: {"$exists": True}}]}
    if op == "$not":
        return {"$nor": [to_reference({path: arg})]}
    if op in ("$gte", "$lte") and arg is None:
        return {path: None}
    if op in ("$gt", "$lt") and arg is None:
        return {path: {"$in": []}}
    if op == "$all":
        return {"$and": [{path: v} for v in arg]} if arg else {path: {"$in": []}}
    return {path: {op: arg}}


def _leaves(spec: dict):
    for key, value in spec.items():
        if key in ("$and", "$or", "$nor"):
            for v in value:
                yield from _leaves(v)
        elif key == "$not":
            yield from _leaves(value)
        elif isinstance(value, dict):
            for op, arg in value.items():
                if op == "$not":
                    yield from _leaves({key: arg})
                else:
                    yield key, op, arg
        else:
            yield key, "$eq", value


def _scalar_on_the_way(doc, path: list[str]) -> bool:
    """Whether walking ``path`` meets a scalar or null with segments still to go."""
    if not path:
        return False
    if isinstance(doc, dict):
        return path[0] in doc and _scalar_on_the_way(doc[path[0]], path[1:])
    if isinstance(doc, list):
        if path[0].isdigit():
            i = int(path[0])
            return i < len(doc) and _scalar_on_the_way(doc[i], path[1:])
        return any(_scalar_on_the_way(e[path[0]], path[1:]) for e in doc if isinstance(e, dict) and path[0] in e)
    return True


def deviates(spec: dict, doc: dict) -> bool:
    """Whether a known mongomock deviation (MONGOMOCK_DEVIATIONS) could decide this pair."""
    for path, op, arg in _leaves(spec):
        null_match = (op in ("$eq", "$ne", "$gte", "$lte") and arg is None) or (
            op in ("$in", "$nin", "$all") and None in arg)
        if null_match and _scalar_on_the_way(doc, path.split(".")):
            return True
        if op == "$size" and any(isinstance(c, dict) or (not isinstance(c, list) and c is not NOTHING and c)
                                 for c in iter_key_candidates(path, doc)):
            return True
    return False


@pytest.fixture(scope="module")
def cases():
    docs = make_docs(N_DOCS)
    r = random.Random(SEED + 1)
    filters = [make_filter(r) for _ in range(N_FILTERS)]
    expected = []
    for f in filters:
        ref = to_reference(f)
        expected.append({i for i, d in enumerate(docs) if filter_applies(ref, d)})
    return docs, filters, expected


def _backends():
    yield pytest.param("sqlite", id="sqlite")
    yield pytest.param("postgresql", id="postgresql", marks=pytest.mark.skipif(not pg_url(), reason="no EMBEDSEARCH_TEST_PG_URL"))


def _store(backend: str, tmp: str) -> Store:
    return Store(Settings.from_env(tmp, None if backend == "sqlite" else pg_url()))


def _indexable(paths) -> list[str]:
    """The field names among ``paths`` that a payload index can take (no numeric segments)."""
    return sorted({p for p in paths if p and not any(s.isdigit() or not s or s.startswith("$") for s in p.split("."))})


def _fields_of(spec) -> set[str]:
    out = set()
    if isinstance(spec, dict):
        for k, v in spec.items():
            if not k.startswith("$"):
                out.add(k)
            out |= _fields_of(v)
    elif isinstance(spec, list):
        for v in spec:
            out |= _fields_of(v)
    return out


def _variants():
    """Each backend without and with payload indexes on every indexable field the filters use:
    the answers must not depend on the index."""
    for backend in _backends():
        for indexed in (False, True):
            marks = backend.marks
            yield pytest.param((backend.values[0], indexed), id=f"{backend.id}-{'indexed' if indexed else 'json'}", marks=marks)


@pytest.fixture(scope="module", params=list(_variants()))
def loaded(request, tmp_path_factory, hashing, cases):
    docs = cases[0]
    backend, indexed = request.param
    store = _store(backend, tmp_path_factory.mktemp("mongo"))
    name = f"f12_{uuid.uuid4().hex[:8]}"
    coll = store.create(name, hashing, "Flat", index_fields=_indexable(PATHS) if indexed else ())
    coll.add_documents([Document(f"d{i}", f"doc {i}", d) for i, d in enumerate(docs)], hashing)
    by_row = {rid: int(ext[1:]) for rid, (ext, _, _) in coll.fetch(range(2 * len(docs) + 10)).items()}
    assert len(by_row) == len(docs)
    yield coll, by_row
    store.drop(name)


def test_random_filters_agree_with_mongodb_semantics(loaded, cases):
    coll, by_row = loaded
    docs, filters, expected = cases
    mismatches = []
    for f, want in zip(filters, expected, strict=True):
        got = {by_row[int(r)] for r in coll.matching_ids(f)}
        for i in got ^ want:
            if not deviates(f, docs[i]):
                mismatches.append((f, docs[i], "ours" if i in got else "mongomock"))
    shown = "\n".join(f"{json.dumps(f, ensure_ascii=False)} on {json.dumps(d, ensure_ascii=False)}: only {who}"
                      for f, d, who in mismatches[:10])
    assert not mismatches, f"{len(mismatches)} disagreements, first ones:\n{shown}"
    # the test exercises what it claims: most filters select some documents and leave others
    assert sum(0 < len(w) < len(docs) for w in expected) > N_FILTERS // 2


def test_mongomock_deviations_are_real(cases):
    """Each listed deviation exists in the installed mongomock (so the exclusions are needed)."""
    assert filter_applies({"n": 1}, {"n": True})
    assert not filter_applies({"a.b": None}, {"a": 5})
    assert not filter_applies({"a": {"$gte": None}}, {})
    assert filter_applies({"a": {"$size": 1}}, {"a": "x"})
    assert not filter_applies({"a": {"$eq": [1]}}, {"a": [[1]]})
    assert filter_applies({"a.b": {"$exists": False}}, {"a": [{"b": 1}, {}]})


# ---- explicit cases: MongoDB's documented behaviour, where mongomock is no reference ----------
NULL_DOCS = {
    # from MongoDB's jstests/core/query/null_query_semantics.js (undefined left out: JSON has none)
    "a_empty_subobject": {"a": {}},
    "a_null": {"a": None},
    "a_number": {"a": 4},
    "a_subobject_b_not_null": {"a": {"b": "hi"}},
    "a_subobject_b_null": {"a": {"b": None}},
    "no_a": {},
    "a_double_array": {"a": [[]]},
    "a_empty_array": {"a": []},
    "a_object_array_no_b_nulls": {"a": [{"b": 1}, {"b": 3}, {"b": "string"}]},
    "a_object_array_some_b_nulls": {"a": [{"b": None}, {"b": 3}, {"b": None}]},
    "a_object_array_some_b_missing": {"a": [{"b": 3}, {}]},
    "a_value_array_all_nulls": {"a": [None, None]},
    "a_value_array_no_nulls": {"a": [1, "string", 4]},
    "a_value_array_with_null": {"a": [1, "string", None, 4]},
}
NULL_CASES = [
    ({"a": {"$eq": None}}, {"a_null", "no_a", "a_value_array_all_nulls", "a_value_array_with_null"}),
    ({"a": {"$in": [None, 75]}}, {"a_null", "no_a", "a_value_array_all_nulls", "a_value_array_with_null"}),
    ({"a": {"$exists": False}}, {"no_a"}),
    ({"a": {"$elemMatch": {"$eq": None}}}, {"a_value_array_all_nulls", "a_value_array_with_null"}),
    ({"a.b": {"$eq": None}}, {"a_empty_subobject", "a_null", "a_number", "a_subobject_b_null", "no_a",
                             "a_object_array_some_b_nulls", "a_object_array_some_b_missing"}),
    ({"a.b": {"$exists": False}}, {"no_a", "a_empty_subobject", "a_null", "a_number", "a_double_array", "a_empty_array",
                                  "a_value_array_all_nulls", "a_value_array_no_nulls", "a_value_array_with_null"}),
]

TYPED_DOCS = {
    "t": {"v": True, "tags": ["fire", "flood"], "authors": [{"name": "Ann"}, {"name": "Bob", "age": 41}]},
    "one": {"v": 1, "tags": "fire", "s": "Zebra", "id": 1234567890123456789},
    "zero": {"v": 0, "s": "apple", "id": 1234567890123456788},
    "f": {"v": False, "tags": [["fire"], "x"], "s": "é", "id": 1234567890123456790},
    "arr": {"tags": ["a", "b"], "grid": [[1, 2], [3]], "café": 1, 'q"k': "x", "b\\k": "y", "é": "x"},
}
TYPED_CASES = [
    ({"v": True}, {"t"}),
    ({"v": 1}, {"one"}),
    ({"v": {"$in": [1, 0]}}, {"one", "zero"}),
    ({"v": {"$gt": False}}, {"t"}),
    ({"v": {"$lt": 1}}, {"zero"}),
    ({"tags": "fire"}, {"t", "one"}),
    ({"tags": {"$ne": "fire"}}, {"zero", "f", "arr"}),
    ({"tags": {"$nin": ["fire", "a"]}}, {"zero", "f"}),
    ({"tags": ["fire"]}, {"f"}),
    ({"tags": ["a", "b"]}, {"arr"}),
    ({"tags": ["b", "a"]}, set()),
    ({"tags": {"$all": ["b", "a"]}}, {"arr"}),
    ({"tags": {"$size": 2}}, {"t", "f", "arr"}),
    ({"tags.0": "fire"}, {"t", "f"}),  # f: tags.0 is ["fire"], an array holding it
    ({"tags.1": {"$exists": True}}, {"t", "f", "arr"}),
    ({"grid.0": 2}, {"arr"}),
    ({"grid.1.0": 3}, {"arr"}),
    ({"authors.name": "Bob"}, {"t"}),
    ({"authors.age": {"$gt": 40}}, {"t"}),
    ({"authors": {"$elemMatch": {"name": "Bob", "age": {"$exists": True}}}}, {"t"}),
    ({"authors": {"$elemMatch": {"name": "Ann", "age": {"$exists": True}}}}, set()),
    ({"authors.1.name": "Bob"}, {"t"}),
    ({"s": {"$gt": "a"}}, {"zero", "f"}),  # code-point order: "Zebra" < "a" < "apple" < "é"
    ({"s": {"$lt": "a"}}, {"one"}),
    ({"id": 1234567890123456789}, {"one"}),  # exact: not its neighbours (as doubles all three are equal)
    ({"id": {"$lt": 1234567890123456789}}, {"zero"}),
    ({"id": {"$gt": 1234567890123456789}}, {"f"}),
    ({"id": {"$in": [1234567890123456788, 1234567890123456790]}}, {"zero", "f"}),
    ({"café": 1}, {"arr"}),
    ({'q"k': "x"}, {"arr"}),
    ({"b\\k": "y"}, {"arr"}),
    ({"é": {"$ne": "x"}}, {"t", "one", "zero", "f"}),
    ({"$nor": [{"v": True}, {"v": 1}]}, {"zero", "f", "arr"}),
    ({"$not": {"v": {"$exists": True}}}, {"arr"}),
    ({"v": {"$not": {"$gte": 1}}}, {"t", "zero", "f", "arr"}),
    ({"s": {"$not": {"$gt": "b"}}}, {"t", "one", "zero", "arr"}),  # "Zebra", "apple" and no s
    ({"authors": {"$all": [{"$elemMatch": {"name": "Ann"}}, {"$elemMatch": {"age": 41}}]}}, {"t"}),
    ({"authors": {"$all": [{"$elemMatch": {"name": "Ann", "age": 41}}]}}, set()),
]


def _load(store: Store, hashing, docs: dict, fields=()) -> tuple:
    name = f"f12_{uuid.uuid4().hex[:8]}"
    coll = store.create(name, hashing, "Flat", index_fields=fields)
    coll.add_documents([Document(k, k, m) for k, m in docs.items()], hashing)
    return name, coll


def _ids(coll, spec) -> set[str]:
    return {ext for ext, _, _ in coll.fetch(coll.matching_ids(spec)).values()}


@pytest.fixture(scope="module", params=list(_variants()))
def explicit(request, tmp_path_factory, hashing):
    backend, indexed = request.param
    store = _store(backend, tmp_path_factory.mktemp("explicit"))
    null_fields = _indexable(_fields_of([c[0] for c in NULL_CASES])) if indexed else ()
    typed_fields = _indexable(_fields_of([c[0] for c in TYPED_CASES])) if indexed else ()
    made = [_load(store, hashing, NULL_DOCS, null_fields), _load(store, hashing, TYPED_DOCS, typed_fields)]
    yield made[0][1], made[1][1]
    for name, _ in made:
        store.drop(name)


@pytest.mark.parametrize("spec, want", NULL_CASES, ids=[json.dumps(c[0]) for c in NULL_CASES])
def test_null_semantics_of_mongodb(explicit, spec, want):
    assert _ids(explicit[0], spec) == want
    negated = {"$nor": [spec]}
    assert _ids(explicit[0], negated) == set(NULL_DOCS) - want


@pytest.mark.parametrize("spec, want", TYPED_CASES, ids=[json.dumps(c[0], ensure_ascii=False) for c in TYPED_CASES])
def test_arrays_types_and_keys(explicit, spec, want):
    assert _ids(explicit[1], spec) == want


def test_booleans_never_equal_numbers(explicit):
    assert _ids(explicit[1], {"v": {"$in": [True]}}) == {"t"}
    assert _ids(explicit[1], {"v": {"$ne": 0}}) == {"t", "one", "f", "arr"}


def test_size_only_counts_arrays(explicit):
    assert _ids(explicit[1], {"s": {"$size": 1}}) == set()
    assert _ids(explicit[1], {"authors.1": {"$size": 2}}) == set()  # an object with two keys is not an array


def test_keys_stored_escaped_by_older_versions(tmp_path, hashing):
    """Rows written before ensure_ascii=False hold keys as \\u escapes: filters still find them
    (keys no JSON path can address exactly are matched on json_each's decoded key)."""
    store = Store(Settings.from_env(tmp_path))
    coll = store.create("old", hashing, "Flat")
    metas = {"x": {"é": "x", "café": 1}, "y": {"é": "y"}, "z": {"other": 1}}
    coll.add_documents([Document(k, k, m) for k, m in metas.items()], hashing)
    with store.engine.begin() as conn:
        for ext, meta in metas.items():
            conn.execute(update(documents).where(documents.c.external_id == ext).values(meta=text(":m")), {"m": json.dumps(meta)})
        raw = conn.execute(text("SELECT meta FROM documents WHERE external_id = 'x'")).scalar_one()
    assert "\\u00e9" in raw  # really stored the old way
    assert _ids(coll, {"é": "x"}) == {"x"}
    assert _ids(coll, {"é": {"$ne": "x"}}) == {"y", "z"}  # it used to delete every document
    assert _ids(coll, {"café": 1}) == {"x"}
    assert _ids(coll, {"é": {"$exists": False}}) == {"z"}


@pytest.mark.parametrize("backend", list(_backends()))
def test_filtered_search_keeps_k_for_every_operator(backend, tmp_path, hashing):
    store = _store(backend, tmp_path)
    name = f"f12_{uuid.uuid4().hex[:8]}"
    coll = store.create(name, hashing, "HNSW32")
    try:
        docs = [Document(f"d{i}", f"story {i} about topic {i % 5}", {"n": i, "tags": [f"t{i % 7}", f"u{i % 3}"],
                "o": {"k": i % 5} if i % 2 else None, "s": chr(ord("a") + i % 26)}) for i in range(400)]
        coll.add_documents(docs, hashing)
        filters = [{"n": {"$lt": 30}}, {"n": {"$gte": 380}}, {"tags": "t3"}, {"tags": {"$ne": "t3"}},
                   {"tags": {"$in": ["t1", "t2"]}}, {"tags": {"$nin": ["u0", "u1"]}}, {"o.k": 2}, {"o": None},
                   {"o.k": {"$exists": True}}, {"n": {"$not": {"$gt": 5}}}, {"$nor": [{"s": {"$gt": "b"}}]},
                   {"tags": {"$all": ["t0", "u0"]}}, {"tags": {"$size": 2}}, {"tags": {"$elemMatch": {"$eq": "t6"}}},
                   {"$or": [{"n": 3}, {"s": "z"}]}, {"$not": {"n": {"$gte": 2}}}, {"s": {"$eq": "q"}}]
        for f in filters:
            matching = len(coll.matching_ids(f))
            assert matching > 0, f
            hits = search(coll, ["topic 3 story"], k=10, where=f, embedder=hashing)[0]
            assert len(hits) == min(10, matching), f
            allowed = {ext for ext, _, _ in coll.fetch(coll.matching_ids(f)).values()}
            assert {h.id for h in hits} <= allowed, f
    finally:
        store.drop(name)


def test_delete_where_with_a_non_ascii_key_deletes_only_the_matches(cli, tmp_path):
    """The data-loss bug as it was found: this deleted every document, "x" included."""
    src = tmp_path / "docs.jsonl"
    src.write_text('{"id": "1", "text": "one", "é": "x"}\n{"id": "2", "text": "two", "é": "y"}\n'
                   '{"id": "3", "text": "three"}\n', encoding="utf-8")
    assert cli("index", "create", "c", "--model", "hashing").exit_code == 0
    assert cli("index", "add", "c", str(src)).exit_code == 0
    r = cli("index", "delete", "c", "--where", '{"é": {"$ne": "x"}}')
    assert r.exit_code == 0, r.output
    info = json.loads(cli("index", "info", "c", "--json").output)
    assert info["doc_count"] == 1


def test_the_payload_index_answers_many_random_filters(cases):
    """The indexed variants above exercise the index: over a third of the random filters route a
    condition through it (counted on the compiled SQL; the rest use null, arrays, $exists, $size,
    $all, $elemMatch or numeric paths, which the JSON answers)."""
    from sqlalchemy.dialects import sqlite

    from embedsearch.store.filters import compile_filter
    from embedsearch.store.payload import PayloadScope

    scope = PayloadScope(1, _indexable(PATHS))
    routed = sum(
        "payload_values" in str(compile_filter(f, documents.c.meta, "sqlite", scope).compile(dialect=sqlite.dialect()))
        for f in cases[1]
    )
    assert routed > N_FILTERS // 3, routed


def test_an_indexed_filter_reads_the_index_not_the_json(tmp_path, hashing):
    """Entries removed behind the store's back change an indexed filter's answer and not an
    unindexed one's: the index, not the JSON, answered."""
    from sqlalchemy import delete

    from embedsearch.store.metadata import payload_values

    store = _store("sqlite", tmp_path)
    _, coll = _load(store, hashing, {"a": {"year": 2001, "tag": "x"}, "b": {"year": 2002, "tag": "x"}}, ["year"])
    assert _ids(coll, {"year": {"$gte": 2001}}) == {"a", "b"}
    with store.engine.begin() as conn:
        conn.execute(delete(payload_values).where(payload_values.c.num == 2002.0))
    coll._selections.clear()
    assert _ids(coll, {"year": {"$gte": 2001}}) == {"a"}
    assert _ids(coll, {"tag": "x"}) == {"a", "b"}
    assert coll.index_fields() == {"year": 1}
