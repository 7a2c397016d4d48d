"""Payload indexes: typed SQL index entries for chosen metadata fields.

    embedsearch index create news --model minilm --index-field year --index-field source
    embedsearch index alter news --index-field tags --drop-index-field source

A filter on a JSON field is evaluated row by row (SQLite's ``json_extract``, PostgreSQL's
``->``): every filtered search that is not cached reads the metadata of the whole collection.
For an indexed field, each scalar value a document holds there (each element of an array) is
one row of ``payload_values`` (kind, number, text), written in the transaction that writes the
document, with B-tree indexes on (field, kind, number) and (field, text). The filter compiler
then answers the conditions that these entries decide exactly with an index range scan:

* ``$eq`` / ``$ne`` / ``$in`` / ``$nin`` with strings, booleans and numbers, and ``$gt`` /
  ``$gte`` / ``$lt`` / ``$lte`` with strings and numbers (booleans too), for numbers of magnitude
  below 2**53 (stored as doubles, which hold them exactly and order larger ones correctly
  against them);
* everything else (null, arrays or objects as operands, ``$exists``, ``$size``, ``$all``,
  ``$elemMatch``, conditions inside ``$elemMatch``) keeps the JSON evaluation, so results never
  depend on whether a field is indexed: MongoDB's semantics hold either way (tests compare both
  against each other and against mongomock).

A path follows MongoDB: each segment looks up a key in an object, or in every object of an array;
at the end a scalar is one entry and an array gives one per scalar element. Numeric segments
(``tags.0``) address array positions and cannot be indexed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, delete, func, insert, literal, or_, select, update

from embedsearch.corpus import batched
from embedsearch.errors import InvalidArgument
from embedsearch.store.metadata import documents, payload_fields, payload_values

MAX_FIELDS = 32
EXACT = 2**53
_CHUNK = 500
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def validate_field(name: Any) -> str:
    """A field name that can be indexed (a dotted path of keys), or InvalidArgument."""
    if not isinstance(name, str) or not name or len(name) > 256:
        raise InvalidArgument("an indexed field is a non-empty name of at most 256 characters")
    if _BAD_CHARS.search(name):
        raise InvalidArgument(f"indexed field {name!r} contains control characters")
    parts = name.split(".")
    if any(not p for p in parts) or any(p.startswith("$") for p in parts):
        raise InvalidArgument(f"indexed field {name!r}: segments must be non-empty and cannot start with '$'")
    if any(p.isascii() and p.isdigit() for p in parts):  # as path_index reads them: ASCII digits
        raise InvalidArgument(f"indexed field {name!r}: numeric segments address array positions and cannot be indexed")
    if len(parts) > 8:
        raise InvalidArgument(f"indexed field {name!r} has more than 8 segments")
    return name


def values_at(meta: Any, path: tuple[str, ...]) -> list:
    """The values a filter on ``path`` compares with: MongoDB's path walk, then array elements
    (objects, nested arrays and nulls among them, which no entry represents)."""
    current = [meta]
    for seg in path:
        nxt = []
        for v in current:
            if isinstance(v, dict):
                if seg in v:
                    nxt.append(v[seg])
            elif isinstance(v, list):
                nxt.extend(e[seg] for e in v if isinstance(e, dict) and seg in e)
        current = nxt
    out = []
    for v in current:
        out.extend(v if isinstance(v, list) else [v])
    return out


def _entry(v: Any) -> tuple[str, float | None, str | None] | None:
    if isinstance(v, bool):
        return "b", float(v), None
    if isinstance(v, (int, float)):
        return ("n", float(v), None) if math.isfinite(v) else None
    if isinstance(v, str):
        return "s", None, v
    return None


def entry_rows(collection_id: int, fields: Iterable[str], row_ids: Iterable[int], metas: Iterable[Any]) -> list[dict]:
    fields = [(f, tuple(f.split("."))) for f in fields]
    rows = []
    for rid, meta in zip(row_ids, metas, strict=True):
        for name, path in fields:
            # distinct entries: (kind, number, text) keeps True apart from 1 and merges 1 with 1.0
            for kind, num, txt in dict.fromkeys(e for e in map(_entry, values_at(meta, path)) if e is not None):
                rows.append(
                    {"collection_id": collection_id, "field": name, "row_id": int(rid), "kind": kind, "num": num, "txt": txt}
                )
    return rows


# ---- the SQL side ---------------------------------------------------------------------------
def _mine(table, collection_id: int):
    return table.c.collection_id == collection_id


def indexed_fields(conn, collection_id: int) -> list[str]:
    return list(field_kinds(conn, collection_id))


def field_kinds(conn, collection_id: int) -> dict[str, bool]:
    """Indexed field -> whether some document has held several values there."""
    rows = conn.execute(
        select(payload_fields.c.field, payload_fields.c.multi)
        .where(payload_fields.c.collection_id == collection_id)
        .order_by(payload_fields.c.field)
    )
    return {f: bool(m) for f, m in rows}


def write_entries(conn, collection_id: int, fields: list[str], row_ids, metas) -> None:
    if not fields:
        return
    rows = entry_rows(collection_id, fields, row_ids, metas)
    if rows:
        conn.execute(insert(payload_values), rows)
        _mark_multi(conn, collection_id, rows)


def _mark_multi(conn, collection_id: int, rows: list[dict]) -> None:
    seen: set[tuple[str, int]] = set()
    multi = set()
    for r in rows:
        key = (r["field"], r["row_id"])
        if key in seen:
            multi.add(r["field"])
        seen.add(key)
    if multi:
        conn.execute(
            update(payload_fields)
            .where(_mine(payload_fields, collection_id), payload_fields.c.field.in_(sorted(multi)))
            .values(multi=True)
        )


def delete_entries(conn, collection_id: int, row_ids) -> None:
    for part in batched((int(i) for i in row_ids), _CHUNK):
        conn.execute(delete(payload_values).where(_mine(payload_values, collection_id), payload_values.c.row_id.in_(part)))


def add_fields(conn, collection_id: int, fields: list[str], generation: int, batch: int = 5000) -> tuple[list[str], int]:
    """Declare fields and index every existing document (callers hold the writer lock, so no
    commit can slip between the scan and the declaration). Returns the fields that were not
    indexed yet and the entries written."""
    have = set(indexed_fields(conn, collection_id))
    new = [f for f in dict.fromkeys(fields) if f not in have]
    if len(have) + len(new) > MAX_FIELDS:
        raise InvalidArgument(f"a collection indexes at most {MAX_FIELDS} fields")
    if not new:
        return [], 0
    declared = [{"collection_id": collection_id, "field": f, "created_gen": generation, "multi": False} for f in new]
    conn.execute(insert(payload_fields), declared)
    written = 0
    for row_ids, metas in _document_batches(conn, collection_id, batch):
        entries = entry_rows(collection_id, new, row_ids, metas)
        if entries:
            conn.execute(insert(payload_values), entries)
            _mark_multi(conn, collection_id, entries)
        written += len(entries)
    return new, written


def _document_batches(conn, collection_id: int, batch: int):
    """(row ids, metadata) of every document of a collection, in row-id order, a batch at a time."""
    last = -1
    while True:
        rows = conn.execute(
            select(documents.c.row_id, documents.c.meta)
            .where(documents.c.collection_id == collection_id, documents.c.row_id > last)
            .order_by(documents.c.row_id)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield [r[0] for r in rows], [r[1] for r in rows]
        last = rows[-1][0]


def drop_fields(conn, collection_id: int, fields: list[str]) -> list[str]:
    """Forget fields; returns those that were not indexed."""
    have = set(indexed_fields(conn, collection_id))
    missing = [f for f in fields if f not in have]
    gone = [f for f in fields if f in have]
    if gone:
        for table in (payload_values, payload_fields):
            conn.execute(delete(table).where(_mine(table, collection_id), table.c.field.in_(gone)))
    return missing


def entry_counts(conn, collection_id: int) -> dict[str, int]:
    fields = indexed_fields(conn, collection_id)
    if not fields:
        return {}
    counts = dict(
        conn.execute(
            select(payload_values.c.field, func.count())
            .where(payload_values.c.collection_id == collection_id)
            .group_by(payload_values.c.field)
        ).all()
    )
    return {f: int(counts.get(f, 0)) for f in fields}


# ---- filters --------------------------------------------------------------------------------
def _routable(v: Any) -> bool:
    if isinstance(v, bool) or isinstance(v, str):
        return True
    if isinstance(v, (int, float)):
        return math.isfinite(v) and abs(v) < EXACT
    return False


def _value_test(op: str, v: Any):
    kind, num, txt = _entry(v)
    col = payload_values.c.txt if kind == "s" else payload_values.c.num
    val = literal(txt if kind == "s" else num)
    cmp = {"$eq": col == val, "$gt": col > val, "$gte": col >= val, "$lt": col < val, "$lte": col <= val}[op]
    return and_(payload_values.c.kind == kind, cmp)


def _one_of(values: list):
    """$in: one IN list per kind (an OR per value would hit SQLite's expression depth limit)."""
    by_kind: dict[str, list] = {}
    for v in values:
        kind, num, txt = _entry(v)
        by_kind.setdefault(kind, []).append(txt if kind == "s" else num)
    parts = []
    for kind, vals in by_kind.items():
        col = payload_values.c.txt if kind == "s" else payload_values.c.num
        parts.append(and_(payload_values.c.kind == kind, col.in_(sorted(set(vals)))))
    return or_(*parts) if len(parts) > 1 else parts[0]


class PayloadScope:
    """The indexed fields of one collection, as the filter compiler sees them."""

    def __init__(self, collection_id: int, fields: dict[str, bool] | Iterable[str]) -> None:
        self.collection_id = collection_id
        # field -> several values in some document (unknown: assume so)
        self.multi = dict(fields) if isinstance(fields, dict) else {f: True for f in fields}
        self.fields = frozenset(self.multi)

    def _rows(self, key: str, test):
        sub = select(payload_values.c.row_id).where(
            payload_values.c.collection_id == self.collection_id, payload_values.c.field == key, test
        )
        return documents.c.row_id.in_(sub)

    def condition(self, key: str, op: str, arg: Any):
        """A row-id condition equal to the positive form of ``op`` on ``key`` ($eq for $ne, $in
        for $nin), or None when the entries cannot decide it exactly."""
        if key not in self.fields:
            return None
        if op in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte"):
            if not _routable(arg):
                return None
            return self._rows(key, _value_test("$eq" if op == "$ne" else op, arg))
        if op in ("$in", "$nin"):
            if not isinstance(arg, list) or not arg or not all(_routable(v) for v in arg):
                return None
            return self._rows(key, _one_of(arg))
        return None

    def range_condition(self, key: str, ops: dict):
        """Several positive conditions on one field ({"$gte": a, "$lt": b}) as one range scan, when
        that is exact: no document has held several values there (with an array, MongoDB lets
        one element satisfy $gte and another $lt) and the operands are of one kind. Else None."""
        if key not in self.fields or self.multi[key] or len(ops) < 2:
            return None
        if not all(op in ("$eq", "$gt", "$gte", "$lt", "$lte") and _routable(v) for op, v in ops.items()):
            return None
        if len({_entry(v)[0] for v in ops.values()}) != 1:
            return None
        return self._rows(key, and_(*[_value_test(op, v) for op, v in ops.items()]))


# ---- verify and repair ----------------------------------------------------------------------
def _stored(conn, collection_id: int, field: str) -> set:
    rows = conn.execute(
        select(payload_values.c.row_id, payload_values.c.kind, payload_values.c.num, payload_values.c.txt).where(
            _mine(payload_values, collection_id), payload_values.c.field == field
        )
    )
    return {(int(r), k, n, t) for r, k, n, t in rows}


def disagreements(conn, collection_id: int, batch: int = 5000) -> dict[str, int]:
    """Indexed field -> entries that differ from what the documents hold now (missing or extra)."""
    fields = indexed_fields(conn, collection_id)
    if not fields:
        return {}
    expected: dict[str, set] = {f: set() for f in fields}
    for row_ids, metas in _document_batches(conn, collection_id, batch):
        for e in entry_rows(collection_id, fields, row_ids, metas):
            expected[e["field"]].add((e["row_id"], e["kind"], e["num"], e["txt"]))
    out = {}
    for f in fields:
        diff = len(expected[f] ^ _stored(conn, collection_id, f))
        if diff:
            out[f] = diff
    return out


def rebuild(conn, collection_id: int, fields: list[str], generation: int) -> int:
    """Index ``fields`` afresh from the documents; returns the entries written."""
    drop_fields(conn, collection_id, fields)
    return add_fields(conn, collection_id, fields, generation)[1]
