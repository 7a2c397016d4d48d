"""Reading JSON metadata inside SQL, the same way on SQLite and PostgreSQL.

The filter compiler (``filters.py``) decides *what* a filter means; this module says *how* to
reach a value in a JSON document from SQL on each database: a :class:`Node` is one JSON value
(the document, a member, an array element) seen as SQL expressions for its type and value.

Everything a user typed reaches SQL as a bound parameter: keys, array indexes and JSON paths
(SQLite's paths are bound strings that quote the key; keys that such a path cannot address
exactly are looked up by comparing ``json_each``'s decoded key column instead).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, Text, and_, case, cast, column, false, func, literal, literal_column, not_, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

# Kinds of JSON value, as each database's type function names them.
KINDS = {
    "sqlite": {
        "number": ("integer", "real"),
        "string": ("text",),
        "bool": ("true", "false"),
        "null": ("null",),
        "array": ("array",),
        "object": ("object",),
    },
    "postgresql": {
        "number": ("number",),
        "string": ("string",),
        "bool": ("boolean",),
        "null": ("null",),
        "array": ("array",),
        "object": ("object",),
    },
}

_OPS = {"$eq": "__eq__", "$gt": "__gt__", "$gte": "__ge__", "$lt": "__lt__", "$lte": "__le__"}


def kind_of(value: Any) -> str:
    """The JSON kind of a Python filter value (bool before int: True is an int in Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@dataclass(frozen=True)
class Node:
    """One JSON value reachable from a document, as SQL expressions.

    ``type`` is NULL in SQL when the value is missing. On SQLite ``base``/``path`` name the value
    (``json_extract(base, path)``); a ``json_each`` row has ``path`` None and its own columns.
    """

    type: ColumnElement
    value: ColumnElement
    base: ColumnElement | None = None
    path: str | None = None
    is_object: bool = False  # known to be an object (a document's metadata): no checks needed


class JsonAccess:
    """How to reach and compare JSON values in one SQL dialect."""

    dialect: str

    def root(self, col) -> Node:
        raise NotImplementedError

    def is_kind(self, node: Node, kind: str) -> ColumnElement[bool]:
        names = KINDS[self.dialect][kind]
        return node.type == names[0] if len(names) == 1 else node.type.in_(names)

    def missing(self, node: Node) -> ColumnElement[bool]:
        return node.type.is_(None)

    def not_array(self, node: Node) -> ColumnElement[bool]:
        return func.coalesce(node.type, "missing") != KINDS[self.dialect]["array"][0]

    def member(self, node: Node, key: str) -> Node | None:
        """The member ``key`` of an object node (missing otherwise), or None when this dialect
        must look the key up row by row (see :meth:`member_exists`)."""
        raise NotImplementedError

    def member_rows(self, node: Node, key: str):
        """(FROM clause, row node, WHERE) for a key that :meth:`member` cannot address."""
        raise NotImplementedError

    def index(self, node: Node, i: int) -> Node:
        raise NotImplementedError

    def elements(self, node: Node):
        """(FROM clause, element node) iterating an array node (nothing for other kinds)."""
        raise NotImplementedError

    def length(self, node: Node) -> ColumnElement:
        raise NotImplementedError

    def compare(self, node: Node, op: str, value: Any) -> ColumnElement[bool]:
        """``node <op> value`` for a scalar of the same kind (the caller checks the kind)."""
        raise NotImplementedError

    def equals(self, node: Node, kind: str, value: Any) -> ColumnElement[bool]:
        """``node`` is the scalar ``value`` of ``kind`` (never a value of another kind)."""
        return and_(self.is_kind(node, kind), self.compare(node, "$eq", value))

    def in_list(self, node: Node, kind: str, values: list) -> ColumnElement[bool]:
        """``node`` is one of ``values`` (all of ``kind``), with one bound parameter."""
        raise NotImplementedError


def _sqlite_label(key: str) -> str | None:
    """A quoted SQLite JSON path label for ``key``, or None if a path cannot match it exactly.

    SQLite (3.40) compares a path label with the key's raw text in the stored JSON, escapes
    included, and a label cannot contain '"'. Printable ASCII without '"' and '\\' is stored
    the same by every serializer, so the label is exact; anything else is looked up by value.
    """
    if all(" " <= ch <= "~" and ch not in '"\\' for ch in key):
        return f'."{key}"'
    return None


class SqliteAccess(JsonAccess):
    dialect = "sqlite"

    def _at(self, base: ColumnElement, path: str) -> Node:
        p = literal(path, String)
        return Node(func.json_type(base, p), func.json_extract(base, p), base, path)

    def root(self, col) -> Node:
        p = literal("$", String)
        return Node(func.json_type(col, p), col, col, "$", is_object=True)

    def _container(self, node: Node) -> tuple[ColumnElement, str]:
        if node.path is not None:
            return node.base, node.path
        # a json_each row: its value is JSON text only for containers (scalars come decoded)
        return case((node.type.in_(("object", "array")), node.value), else_=None), "$"

    def member(self, node: Node, key: str) -> Node | None:
        label = _sqlite_label(key)
        if label is None:
            return None
        base, path = self._container(node)
        return self._at(base, path + label)

    def member_rows(self, node: Node, key: str):
        base, path = self._container(node)
        each = func.json_each(base, literal(path, String)).table_valued("key", "value", "type")
        row = Node(each.c.type, each.c.value)
        key_is = each.c.key == literal(key, String)
        return each, row, key_is if node.is_object else and_(self.is_kind(node, "object"), key_is)

    def index(self, node: Node, i: int) -> Node:
        base, path = self._container(node)
        return self._at(base, f"{path}[{int(i)}]")

    def elements(self, node: Node):
        base, path = self._container(node)
        each = func.json_each(base, literal(path, String)).table_valued("value", "type")
        # json_each walks an object's members too: only count rows of an array
        return each, Node(each.c.type, each.c.value), self.is_kind(node, "array")

    def length(self, node: Node) -> ColumnElement:
        base, path = self._container(node)
        return func.json_array_length(base, literal(path, String))

    def compare(self, node: Node, op: str, value: Any) -> ColumnElement[bool]:
        if isinstance(value, bool):
            # json_extract gives true/false as 1/0; the caller has checked the kind
            return getattr(node.value, _OPS[op])(literal(int(value), Integer))
        return getattr(node.value, _OPS[op])(literal(value))

    def in_list(self, node: Node, kind: str, values: list) -> ColumnElement[bool]:
        if kind == "bool":
            return or_(*[self.compare(node, "$eq", v) for v in set(values)])
        each = func.json_each(literal(json.dumps(values, ensure_ascii=False), String)).table_valued("value")
        return and_(self.is_kind(node, kind), node.value.in_(select(each.c.value)))


class PostgresAccess(JsonAccess):
    dialect = "postgresql"

    @staticmethod
    def _node(expr: ColumnElement) -> Node:
        return Node(func.jsonb_typeof(expr), expr)

    def root(self, col) -> Node:
        return Node(func.jsonb_typeof(col), col, is_object=True)

    def member(self, node: Node, key: str) -> Node | None:
        # '->' with a text key reads an object's member; on any other kind it gives NULL
        return self._node(node.value.op("->", return_type=JSONB)(literal(key, Text)))

    def member_rows(self, node: Node, key: str):  # pragma: no cover - member() always answers
        raise AssertionError("PostgreSQL addresses every key directly")

    def index(self, node: Node, i: int) -> Node:
        return self._node(node.value.op("->", return_type=JSONB)(literal(int(i), Integer)))

    def _array_or_empty(self, node: Node) -> ColumnElement:
        # jsonb_array_elements/jsonb_array_length raise on non-arrays, and PostgreSQL does not
        # promise to evaluate a guarding AND first: feed them an empty array instead
        return case((self.is_kind(node, "array"), node.value), else_=cast(literal("[]"), JSONB))

    def elements(self, node: Node):
        each = func.jsonb_array_elements(self._array_or_empty(node)).table_valued(column("value", JSONB))
        return each, self._node(each.c.value), None

    def length(self, node: Node) -> ColumnElement:
        return func.jsonb_array_length(self._array_or_empty(node))

    def _text(self, node: Node) -> ColumnElement:
        # the string itself, compared in code-point order whatever the database's collation
        return node.value.op("#>>", return_type=Text)(literal_column("'{}'::text[]")).collate("C")

    def compare(self, node: Node, op: str, value: Any) -> ColumnElement[bool]:
        if isinstance(value, str):
            return getattr(self._text(node), _OPS[op])(literal(value, Text))
        # numbers (exact: jsonb keeps them as numeric) and booleans compare as jsonb of one kind
        return getattr(node.value, _OPS[op])(cast(literal(json.dumps(value), Text), JSONB))

    def equals(self, node: Node, kind: str, value: Any) -> ColumnElement[bool]:
        # jsonb equality holds only between values of one kind (1 is not true, "1" is not 1)
        return node.value == cast(literal(json.dumps(value, ensure_ascii=False), Text), JSONB)

    def in_list(self, node: Node, kind: str, values: list) -> ColumnElement[bool]:
        lst = cast(literal(json.dumps(values, ensure_ascii=False), Text), JSONB)
        each = func.jsonb_array_elements(lst).table_valued(column("value", JSONB))
        return node.value.in_(select(each.c.value))


def access_for(dialect: str) -> JsonAccess:
    if dialect == "postgresql":
        return PostgresAccess()
    if dialect == "sqlite":
        return SqliteAccess()
    raise NotImplementedError(f"metadata filters support SQLite and PostgreSQL, not {dialect}")


def exists_in(from_clause, where: ColumnElement[bool]) -> ColumnElement[bool]:
    """EXISTS (SELECT 1 FROM from_clause WHERE where)."""
    return select(literal(1)).select_from(from_clause).where(where).exists()


def negate(expr: ColumnElement[bool]) -> ColumnElement[bool]:
    """NOT that treats SQL NULL as false, so a negated filter never drops a row for a NULL."""
    return not_(func.coalesce(expr, false()))
