"""The metadata filter language: Mongo-style JSON compiled to SQLAlchemy expressions.

    {"source": "lee", "year": {"$gte": 2000}, "$or": [{"tag": "fire"}, {"tag": {"$in": ["flood"]}}]}

Keys are metadata fields (dots reach into nested objects); several keys are ANDed. Values are
a scalar (equality) or an object of operators. Nothing is ever formatted into SQL text: each
value becomes a bound parameter. Numeric comparisons only match numbers (a string "2001" is
not >= 2000), which keeps PostgreSQL from failing on a cast and SQLite from comparing text.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, case, false, func, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from embedsearch.errors import InvalidFilter

COMPARISON = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")
LOGICAL = ("$and", "$or", "$not")
MAX_DEPTH = 16
MAX_IN = 10_000


def parse_filter(text: str | dict | None) -> dict | None:
    """Parse a ``--where`` value (JSON text or an already-decoded dict)."""
    if text is None or text == "":
        return None
    if isinstance(text, dict):
        value = text
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidFilter(f"filter is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise InvalidFilter(f"filter must be a JSON object, got {type(value).__name__}")
    return value


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


class FilterCompiler:
    """Compile filters against a JSON column for one SQL dialect."""

    def __init__(self, column, dialect: str) -> None:
        self.column = column
        self.dialect = dialect

    def compile(self, spec: dict | None) -> ColumnElement[bool]:
        if not spec:
            return true()
        return self._object(spec, "", 0)

    # ---- structure -----------------------------------------------------------------------
    def _object(self, spec: Any, where: str, depth: int) -> ColumnElement[bool]:
        if depth > MAX_DEPTH:
            raise InvalidFilter(f"filter nests deeper than {MAX_DEPTH} levels")
        if not isinstance(spec, dict):
            raise InvalidFilter(f"{where or 'filter'}: expected an object, got {json.dumps(spec)[:60]}")
        if not spec:
            return true()
        clauses = []
        for key, value in spec.items():
            if not isinstance(key, str) or not key:
                raise InvalidFilter("filter keys must be non-empty strings")
            if key.startswith("$"):
                clauses.append(self._logical(key, value, depth))
            else:
                clauses.append(self._field(key, value, depth))
        return and_(*clauses) if len(clauses) > 1 else clauses[0]

    def _logical(self, op: str, value: Any, depth: int) -> ColumnElement[bool]:
        if op == "$not":
            # SQL's NULL (field missing) would make NOT(...) NULL too; Mongo's $not matches it
            return not_(func.coalesce(self._object(value, "$not", depth + 1), false()))
        if op not in ("$and", "$or"):
            raise InvalidFilter(f"unknown operator {op!r} at the top level; use one of {', '.join(LOGICAL)} or a field name")
        if not isinstance(value, list) or not value:
            raise InvalidFilter(f"{op} takes a non-empty list of filter objects")
        parts = [self._object(v, op, depth + 1) for v in value]
        return and_(*parts) if op == "$and" else or_(*parts)

    def _path(self, key: str) -> tuple[str, ...]:
        parts = tuple(key.split("."))
        if any(not p for p in parts):
            raise InvalidFilter(f"bad field name {key!r}: empty segment between dots")
        return parts

    def _field(self, key: str, value: Any, depth: int) -> ColumnElement[bool]:
        path = self._path(key)
        if isinstance(value, dict):
            if not value:
                raise InvalidFilter(f"{key}: empty operator object")
            ops = list(value)
            if not all(isinstance(o, str) and o.startswith("$") for o in ops):
                raise InvalidFilter(f"{key}: nested objects are matched with dotted names (e.g. '{key}.{ops[0]}'), not by value")
            return and_(*[self._op(key, path, op, arg) for op, arg in value.items()])
        if isinstance(value, list):
            raise InvalidFilter(f'{key}: to match one of several values use {{"$in": [...]}}')
        return self._op(key, path, "$eq", value)

    # ---- values --------------------------------------------------------------------------
    def _elem(self, path):
        return self.column[path] if len(path) > 1 else self.column[path[0]]

    def _json_type(self, path) -> ColumnElement:
        if self.dialect == "postgresql":
            return func.jsonb_typeof(self._elem(path))
        return func.json_type(self.column, "$." + ".".join(_sqlite_key(p) for p in path))

    def _numeric(self, path) -> ColumnElement:
        numeric_types = ("number",) if self.dialect == "postgresql" else ("integer", "real")
        # CASE guarantees the cast only runs on numbers (PostgreSQL would raise on text)
        return case((self._json_type(path).in_(numeric_types), self._elem(path).as_float()), else_=None)

    def _boolean(self, path) -> ColumnElement:
        bool_types = ("boolean",) if self.dialect == "postgresql" else ("true", "false")
        return case((self._json_type(path).in_(bool_types), self._elem(path).as_boolean()), else_=None)

    def _text(self, path) -> ColumnElement:
        return case(
            (self._json_type(path) == ("string" if self.dialect == "postgresql" else "text"), self._elem(path).as_string()),
            else_=None,
        )

    def _exists(self, path) -> ColumnElement[bool]:
        return and_(self._json_type(path).is_not(None), self._json_type(path) != "null")

    def _typed(self, path, value):
        if isinstance(value, bool):
            return self._boolean(path)
        if isinstance(value, (int, float)):
            return self._numeric(path)
        return self._text(path)

    def _op(self, key: str, path, op: str, arg: Any) -> ColumnElement[bool]:
        if op == "$exists":
            if not isinstance(arg, bool):
                raise InvalidFilter(f"{key}: $exists takes true or false")
            return self._exists(path) if arg else not_(self._exists(path))
        if op in ("$in", "$nin"):
            if not isinstance(arg, list) or not all(_scalar(v) and v is not None for v in arg):
                raise InvalidFilter(f"{key}: {op} takes a list of strings, numbers or booleans")
            if len(arg) > MAX_IN:
                raise InvalidFilter(f"{key}: {op} list longer than {MAX_IN}")
            groups: dict[str, list] = {}
            for v in arg:
                kind = "bool" if isinstance(v, bool) else "num" if isinstance(v, (int, float)) else "str"
                groups.setdefault(kind, []).append(v)
            parts = [self._typed(path, vs[0]).in_(vs) for vs in groups.values()]
            inside = or_(*parts) if parts else false()
            if op == "$in":
                return inside
            return or_(not_(self._exists(path)), not_(func.coalesce(inside, false())))
        if op not in COMPARISON:
            raise InvalidFilter(f"{key}: unknown operator {op!r}; valid: {', '.join(COMPARISON + LOGICAL)}")
        if not _scalar(arg):
            raise InvalidFilter(f"{key}: {op} takes a string, number, boolean or null")
        if arg is None:
            if op == "$eq":
                return not_(self._exists(path))
            if op == "$ne":
                return self._exists(path)
            raise InvalidFilter(f"{key}: {op} cannot compare with null")
        if op in ("$gt", "$gte", "$lt", "$lte") and isinstance(arg, bool):
            raise InvalidFilter(f"{key}: {op} needs a number or a string, not a boolean")
        expr = self._typed(path, arg)
        if op == "$eq":
            return expr == arg
        if op == "$ne":  # Mongo semantics: documents without the field match $ne
            return or_(expr.is_(None), expr != arg)
        return {"$gt": expr > arg, "$gte": expr >= arg, "$lt": expr < arg, "$lte": expr <= arg}[op]


def _sqlite_key(part: str) -> str:
    # json paths quote keys with anything but word characters; the path is a bound parameter
    return part if part.replace("_", "").isalnum() else json.dumps(part)


def compile_filter(spec: dict | str | None, column, dialect: str) -> ColumnElement[bool]:
    """Compile a filter (dict or JSON text) for ``column`` (a JSON column) in ``dialect``."""
    return FilterCompiler(column, dialect).compile(parse_filter(spec) if not isinstance(spec, dict) else spec)
