"""The metadata filter language: MongoDB's query semantics compiled to SQLAlchemy expressions.

    {"source": "lee", "year": {"$gte": 2000}, "$or": [{"tags": "fire"}, {"authors.name": "Bob"}]}

Keys are metadata fields (dots reach into objects, through arrays of objects, and a numeric
segment indexes an array); several keys are ANDed. A value is a scalar or array (equality) or an
object of operators. The meaning is MongoDB's (README, "Filters", has the table), the same on
SQLite and PostgreSQL:

- a condition on an array field matches when the array as a whole or any element matches;
  ``$ne``, ``$nin``, ``$not`` and ``$nor`` are the negations of the positive forms, so they
  exclude a document when any element matches;
- type bracketing: numbers compare with numbers, strings with strings (in code-point order),
  booleans with booleans; a boolean never equals a number; integers are compared exactly;
- null matches an explicit null and a missing field; ``$exists: true`` matches an explicit null.

Nothing is ever formatted into SQL text: values, keys and JSON paths are bound parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, false, func, literal, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from embedsearch.errors import InvalidFilter
from embedsearch.store.filter_syntax import (
    FIELD_OPS,
    INT64,
    LOGICAL,
    MAX_ARRAY_WALKS,
    MAX_BRANCHES,
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_IN,
    MAX_SEGMENTS,
    Expr,
    check_value,
    parse_filter,
    path_index,
    show,
)
from embedsearch.store.json_access import JsonAccess, Node, access_for, exists_in, kind_of, negate
from embedsearch.store.payload import PayloadScope

__all__ = ["FilterCompiler", "compile_filter", "parse_filter"]

@dataclass(frozen=True)
class Leaf:
    """What must hold at the end of a path.

    ``test`` is tried on the value and, when the value is an array, on each element (MongoDB's
    implicit array matching); ``whole`` only on the value itself ($size, $elemMatch);
    ``missing`` says whether a missing value matches (equality with null).
    """

    test: Callable[[Node], Expr] | None = None
    whole: Callable[[Node], Expr] | None = None
    missing: bool = False


class FilterCompiler:
    """Compile filters against a JSON column for one SQL dialect."""

    def __init__(self, column, dialect: str, payload: PayloadScope | None = None) -> None:
        self.column = column
        self.dialect = dialect
        self.json: JsonAccess = access_for(dialect)
        self.payload = payload if payload is not None and payload.fields else None
        self._root: Node | None = None

    def compile(self, spec: dict | None) -> Expr:
        if not spec:
            return true()
        self._conditions = 0
        self._walks = 0
        self._root = self.json.root(self.column)
        return self._object(spec, self._root, "filter", 0)

    def _indexed(self, key: str, op: str, arg: Any, node: Node) -> Expr | None:
        """The payload index's form of a (validated) condition on a document's own field, when
        the index decides it exactly; the positive form for $ne and $nin."""
        if self.payload is None or node is not self._root:
            return None
        return self.payload.condition(key, op, arg)

    def _count(self, n: int = 1) -> None:
        self._conditions = getattr(self, "_conditions", 0) + n
        if self._conditions > MAX_CONDITIONS:
            raise InvalidFilter(
                f"filter has more than {MAX_CONDITIONS} conditions; for many values of one field use "
                f'{{"field": {{"$in": [...]}}}} (up to {MAX_IN} values)'
            )

    # ---- structure -----------------------------------------------------------------------
    def _object(self, spec: Any, node: Node, where: str, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise InvalidFilter(f"filter nests deeper than {MAX_DEPTH} levels")
        if not isinstance(spec, dict):
            raise InvalidFilter(f"{where}: expected an object, got {show(spec)}")
        if not spec:
            return true()
        clauses = []
        for key, value in spec.items():
            if not isinstance(key, str) or not key:
                raise InvalidFilter("filter keys must be non-empty strings")
            if key.startswith("$"):
                clauses.append(self._logical(key, value, node, depth))
            else:
                clauses.append(self._field(key, value, node, depth))
        return and_(*clauses) if len(clauses) > 1 else clauses[0]

    def _logical(self, op: str, value: Any, node: Node, depth: int) -> Expr:
        if op == "$not":  # ours, kept for compatibility: the same as {"$nor": [value]}
            return negate(self._object(value, node, "$not", depth + 1))
        if op not in ("$and", "$or", "$nor"):
            raise InvalidFilter(f"unknown operator {op!r} at the top level; use one of {', '.join(LOGICAL)} or a field name")
        if not isinstance(value, list) or not value:
            raise InvalidFilter(f"{op} takes a non-empty list of filter objects")
        self._count(len(value))
        parts = [self._object(v, node, op, depth + 1) for v in value]
        if op == "$and":
            return and_(*parts)
        return or_(*parts) if op == "$or" else negate(or_(*parts))

    def _path(self, key: str) -> tuple[str, ...]:
        parts = tuple(key.split("."))
        if any(not p for p in parts):
            raise InvalidFilter(f"bad field name {key!r}: empty segment between dots")
        if any(p.startswith("$") for p in parts):
            raise InvalidFilter(f"bad field name {key!r}: a field name cannot start with '$'")
        if len(parts) > MAX_SEGMENTS:
            raise InvalidFilter(f"bad field name {key!r}: more than {MAX_SEGMENTS} segments")
        if 2 ** (len(parts) - 1) > MAX_BRANCHES:
            raise InvalidFilter(f"bad field name {key!r}: too many segments")
        return parts

    def _field(self, key: str, value: Any, node: Node, depth: int) -> Expr:
        path = self._path(key)
        if isinstance(value, dict):
            return self._operators(key, path, value, node, depth)
        return self._op(key, path, "$eq", value, node, depth)

    def _operators(self, key: str, path: tuple[str, ...], ops: dict, node: Node, depth: int) -> Expr:
        if not ops:
            raise InvalidFilter(f"{key}: empty operator object")
        names = list(ops)
        if not all(isinstance(o, str) and o.startswith("$") for o in names):
            raise InvalidFilter(
                f"{key}: sub-documents are matched field by field with dotted names (e.g. '{key}.{names[0]}'), not by value"
            )
        parts = [self._op(key, path, op, arg, node, depth) for op, arg in ops.items()]  # validates each
        if self.payload is not None and node is self._root and len(parts) > 1:
            merged = self.payload.range_condition(key, ops)
            if merged is not None:
                return merged
        return and_(*parts) if len(parts) > 1 else parts[0]

    # ---- operators -----------------------------------------------------------------------
    def _op(self, key: str, path: tuple[str, ...], op: str, arg: Any, node: Node, depth: int) -> Expr:
        self._count()
        j = self.json
        if op in ("$eq", "$ne"):
            check_value(key, op, arg, arrays=True)
            hit = self._indexed(key, op, arg, node)
            if hit is None:
                hit = self._match(node, path, self._equals(arg))
            return hit if op == "$eq" else negate(hit)
        if op in ("$gt", "$gte", "$lt", "$lte"):
            if isinstance(arg, list):
                raise InvalidFilter(f"{key}: {op} takes a string, number, boolean or null, not an array")
            check_value(key, op, arg, arrays=False)
            if arg is None:  # MongoDB: null sorts equal only to null/missing
                return self._match(node, path, self._equals(None)) if op in ("$gte", "$lte") else false()
            kind = kind_of(arg)
            hit = self._indexed(key, op, arg, node)
            if hit is not None:
                return hit
            return self._match(node, path, Leaf(test=lambda n: and_(j.is_kind(n, kind), j.compare(n, op, arg))))
        if op in ("$in", "$nin"):
            if not isinstance(arg, list):
                raise InvalidFilter(f"{key}: {op} takes a list of values")
            if len(arg) > MAX_IN:
                raise InvalidFilter(f"{key}: {op} list longer than {MAX_IN}")
            for v in arg:
                check_value(key, op, v, arrays=True)
            hit = self._indexed(key, op, arg, node) if arg else false()
            if hit is None:
                hit = self._match(node, path, self._one_of(arg))
            return hit if op == "$in" else negate(hit)
        if op == "$exists":
            if not isinstance(arg, bool):
                raise InvalidFilter(f"{key}: $exists takes true or false")
            hit = self._match(node, path, Leaf(whole=lambda n: not_(j.missing(n))))
            return hit if arg else negate(hit)
        if op == "$not":
            if not isinstance(arg, dict) or not arg:
                raise InvalidFilter(f'{key}: $not takes an object of operators, e.g. {{"$not": {{"$gt": 1}}}}')
            return negate(self._operators(key, path, arg, node, depth + 1))
        if op == "$all":
            if not isinstance(arg, list):
                raise InvalidFilter(f"{key}: $all takes a list of values")
            if len(arg) > MAX_IN:
                raise InvalidFilter(f"{key}: $all list longer than {MAX_IN}")
            if not arg:
                return false()  # MongoDB: an empty $all matches nothing
            parts = []
            for v in arg:
                if isinstance(v, dict) and list(v) == ["$elemMatch"]:
                    parts.append(self._op(key, path, "$elemMatch", v["$elemMatch"], node, depth))
                else:
                    check_value(key, op, v, arrays=True)
                    parts.append(self._match(node, path, self._equals(v)))
            return and_(*parts)
        if op == "$size":
            if isinstance(arg, float) and arg.is_integer():  # JSON: 2.0 is the integer 2
                arg = int(arg)
            if isinstance(arg, bool) or not isinstance(arg, int) or arg < 0 or arg >= INT64:
                raise InvalidFilter(f"{key}: $size takes a non-negative integer")
            return self._match(node, path, Leaf(whole=lambda n: and_(j.is_kind(n, "array"), j.length(n) == literal(arg))))
        if op == "$elemMatch":
            if not isinstance(arg, dict) or not arg:
                raise InvalidFilter(f"{key}: $elemMatch takes a non-empty object (operators or a filter on the elements)")
            return self._match(node, path, Leaf(whole=lambda n: self._elem_match(key, arg, n, depth + 1)))
        raise InvalidFilter(f"{key}: unknown operator {op!r}; valid: {', '.join(FIELD_OPS)}")

    def _elem_match(self, key: str, spec: dict, node: Node, depth: int) -> Expr:
        j = self.json
        frm, elem, guard = j.elements(node)
        names = list(spec)
        if all(n.startswith("$") and n not in ("$and", "$or", "$nor") for n in names):
            cond = self._operators(key, (), spec, elem, depth)  # conditions on each element itself
        elif any(n.startswith("$") and n not in LOGICAL for n in names):
            raise InvalidFilter(f"{key}: $elemMatch mixes operators with field names")
        else:
            cond = and_(j.is_kind(elem, "object"), self._object(spec, elem, f"{key}.$elemMatch", depth))
        return and_(j.is_kind(node, "array"), exists_in(frm, and_(guard, cond) if guard is not None else cond))

    # ---- leaves ----------------------------------------------------------------------------
    def _strict_equal(self, node: Node, value: Any) -> Expr:
        """``node`` is exactly ``value`` (no array matching): arrays element by element, in order."""
        j = self.json
        kind = kind_of(value)
        if kind == "null":
            return j.is_kind(node, "null")
        if kind == "array":
            items = [self._strict_equal(j.index(node, i), v) for i, v in enumerate(value)]
            return and_(j.is_kind(node, "array"), j.length(node) == literal(len(value)), *items)
        return j.equals(node, kind, value)

    def _equals(self, value: Any) -> Leaf:
        return Leaf(test=lambda n: self._strict_equal(n, value), missing=value is None)

    def _one_of(self, values: list) -> Leaf:
        j = self.json
        groups: dict[str, list] = {}
        for v in values:
            groups.setdefault(kind_of(v), []).append(v)

        def test(n: Node) -> Expr:
            parts = []
            for kind, vs in groups.items():
                if kind == "null":
                    parts.append(j.is_kind(n, "null"))
                elif kind == "array":
                    parts.extend(self._strict_equal(n, v) for v in vs)
                elif len(vs) == 1:
                    parts.append(j.equals(n, kind, vs[0]))
                else:
                    parts.append(j.in_list(n, kind, vs))
            return or_(*parts)

        return Leaf(test=test, missing="null" in groups)

    # ---- paths -----------------------------------------------------------------------------
    def _match(self, node: Node, path: tuple[str, ...], leaf: Leaf) -> Expr:
        """Some value reached from ``node`` along ``path`` satisfies ``leaf``, the MongoDB way.

        A segment reads an object's member; on an array it reads that member of every element
        that is an object (other elements are skipped), or, when it is a number, indexes the
        array. A scalar or missing value has only missing members. Each way through the
        path is one flat plan (an EXISTS over the arrays it walks, or a plain condition when it
        walks none): nesting a subquery per segment would overflow SQLite's parser.
        """
        plans = []
        for end, trail in self._walk(node, path, _Trail(), leaf):
            plans.extend(self._at_end(end, trail, leaf))
        self._walks = getattr(self, "_walks", 0) + sum(len(t.froms) for t in plans)
        if self._walks > MAX_ARRAY_WALKS:
            raise InvalidFilter(
                f"filter too costly to search without an index: its paths may pass through arrays in more than "
                f"{MAX_ARRAY_WALKS} ways ({'.'.join(path)} and the conditions before it); shorten deep paths, "
                "match null with $exists, or index the field (--index-field)"
            )
        return or_(*[t.sql() for t in plans]) if len(plans) > 1 else plans[0].sql()

    def _walk(self, node: Node | None, path: tuple[str, ...], trail: _Trail, leaf: Leaf):
        """(value at the end of the path or None for certainly missing, how it was reached)."""
        j = self.json
        if node is None or not path:
            yield node, trail
            return
        seg, rest = path[0], path[1:]
        if node.is_object:  # a document's metadata: no array to walk
            yield from self._member(node, seg, rest, trail, leaf)
            return
        yield from self._member(node, seg, rest, trail.having(j.not_array(node)), leaf)
        i = path_index(seg)
        if i is None:
            frm, elem, guard = j.elements(node)
            via = trail.having(j.is_kind(node, "array")).joining(frm).having(guard, j.is_kind(elem, "object"))
            yield from self._member(elem, seg, rest, via, leaf)
        else:  # a numeric segment indexes an array (an index past its end reaches nothing)
            item = j.index(node, i)
            yield from self._walk(item, rest, trail.having(j.is_kind(node, "array"), not_(j.missing(item))), leaf)

    def _member(self, node: Node, key: str, rest: tuple[str, ...], trail: _Trail, leaf: Leaf):
        """Continue through member ``key`` of ``node``: an object, or a scalar or missing value
        (all of whose members are missing); the caller has ruled out arrays."""
        j = self.json
        child = j.member(node, key)
        if child is not None:
            yield from self._walk(child, rest, trail, leaf)
            return
        # SQLite, a key no JSON path can address exactly: find it among the object's members
        frm, row, where = j.member_rows(node, key)
        yield from self._walk(row, rest, trail.joining(frm).having(where), leaf)
        if leaf.missing and node.is_object:
            yield None, trail.having(not_(exists_in(frm, where)))
        elif leaf.missing:
            absent = or_(
                and_(j.is_kind(node, "object"), not_(exists_in(frm, where))),
                func.coalesce(node.type, "missing").not_in(("object", "array")),
            )
            yield None, trail.having(absent)

    def _at_end(self, node: Node | None, trail: _Trail, leaf: Leaf) -> list[_Trail]:
        j = self.json
        if node is None:
            return [trail] if leaf.missing else []
        plans = []
        if leaf.whole is not None:
            plans.append(trail.having(leaf.whole(node)))
        if leaf.test is not None:
            plans.append(trail.having(leaf.test(node)))
            frm, elem, guard = j.elements(node)
            plans.append(trail.having(j.is_kind(node, "array")).joining(frm).having(guard, leaf.test(elem)))
        if leaf.missing:
            plans.append(trail.having(j.missing(node)))
        return plans


@dataclass(frozen=True)
class _Trail:
    """One way through a path: the arrays it walks (FROM) and what must hold on the way.

    Conditions met before the first array is walked stay outside the EXISTS, so a value that
    is not an array never starts the subquery.
    """

    froms: tuple = ()
    outer: tuple = ()
    inner: tuple = ()

    def joining(self, frm) -> _Trail:
        return _Trail((*self.froms, frm), self.outer, self.inner)

    def having(self, *conds) -> _Trail:
        new = tuple(c for c in conds if c is not None)
        if self.froms:
            return _Trail(self.froms, self.outer, (*self.inner, *new))
        return _Trail(self.froms, (*self.outer, *new), self.inner)

    def sql(self) -> Expr:
        conds = list(self.outer)
        if self.froms:
            joined = self.froms[0]
            for frm in self.froms[1:]:
                joined = joined.join(frm, true())
            conds.append(exists_in(joined, and_(*self.inner) if self.inner else true()))
        if not conds:
            return true()
        return and_(*conds) if len(conds) > 1 else conds[0]


def compile_filter(spec: dict | str | None, column, dialect: str, payload: PayloadScope | None = None) -> ColumnElement[bool]:
    """Compile a filter (dict or JSON text) for ``column`` (a JSON column) in ``dialect``; with a
    ``payload`` scope, conditions on its indexed fields use the payload index."""
    return FilterCompiler(column, dialect, payload).compile(parse_filter(spec) if not isinstance(spec, dict) else spec)
