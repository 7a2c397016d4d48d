"""The filter language's syntax: parsing ``--where`` JSON, the limits, and the checks on values
that every compiler of it applies (store/filters.py compiles it to SQL).
"""

from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy.sql.elements import ColumnElement

from embedsearch.errors import InvalidFilter

FIELD_OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not", "$all", "$size", "$elemMatch")
LOGICAL = ("$and", "$or", "$nor", "$not")
MAX_DEPTH = 16
MAX_IN = 10_000
MAX_SEGMENTS = 7  # each may pass through an array: 2^(n-1) SQL ways through a path (MAX_ARRAY_WALKS)
MAX_BRANCHES = 512  # SQL copies of a condition that one dotted path may need (x2 per segment)
# conditions (field operators and logical branches) in one filter: SQLite refuses expression trees
# deeper than 1000 (a 1,001-branch $or), and thousands of branches cost seconds of CPU per query;
# many values of one field belong in one $in, which has its own limit (MAX_IN)
MAX_CONDITIONS = 256
# arrays the SQL of one filter may walk, summed over every way each path can pass through arrays:
# a dotted path may meet an array at each segment (MongoDB walks them), so the ways double per
# segment; an 8-segment match for null took 5 s of SQLite's time on 40 documents. 256 one-segment
# conditions cost 256; a 7-segment path 448 (640 matching null: refused)
MAX_ARRAY_WALKS = 512
INT64 = 2**63

Expr = ColumnElement[bool]


def parse_filter(text: str | dict | None) -> dict | None:
    """Parse a ``--where`` value (JSON text or an already-decoded dict)."""
    if text is None or text == "":
        return None
    if isinstance(text, dict):
        value = text
    elif not isinstance(text, (str, bytes)):
        raise InvalidFilter(f"filter must be a JSON object, got {type(text).__name__}")
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidFilter(f"filter is not valid JSON: {exc.msg} at column {exc.colno}") from None
        except (RecursionError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidFilter(f"filter is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise InvalidFilter(f"filter must be a JSON object, got {type(value).__name__}")
    problem = json_problem(value)
    if problem:
        raise InvalidFilter(f"filter is not strict JSON: {problem}")
    return value


def json_problem(value: Any, depth: int = 0) -> str | None:
    """What SQL could not bind faithfully: NaN/Infinity, lone surrogates, numbers outside 64-bit
    integers (checked iteratively deep enough for MAX_DEPTH; deeper filters are refused anyway).
    A float of 2**63 or more is an integer by JSON's rules (1e19 is 10000000000000000000), so the
    bound holds for every number, as the OpenAPI document's filter schema says."""
    from embedsearch.corpus import metadata_problem

    if depth > 4 * MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if -(2**63) <= value < 2**63 else f"integer {value} does not fit in 64 bits"
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"{value} is not a finite number"
        return None if -INT64 <= value < INT64 else f"number {value:g} is outside 64-bit integers"
    if isinstance(value, dict):
        for k, v in value.items():
            problem = metadata_problem(k, "a key") if isinstance(k, str) else f"key {k!r} is not a string"
            problem = problem or json_problem(v, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, list):
        return next((p for p in (json_problem(v, depth + 1) for v in value) if p), None)
    return metadata_problem(value)


def path_index(seg: str) -> int | None:
    """The array index a path segment names ("0", "12"; not "01" or "-1"), or None."""
    if seg.isdigit() and seg.isascii() and (seg == "0" or not seg.startswith("0")) and len(seg) < 10:
        return int(seg)
    return None


def show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)[:60]


def check_value(key: str, op: str, value: Any, arrays: bool) -> None:
    """A value a filter may compare with: JSON scalars, arrays of them when ``arrays``."""
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise InvalidFilter(f"{key}: {op}: integers must fit in 64 bits, got {value}")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidFilter(f"{key}: {op}: numbers must be finite")
        if not -INT64 <= value < INT64:
            raise InvalidFilter(f"{key}: {op}: numbers must lie within 64-bit integers, got {value:g}")
        return
    if isinstance(value, list) and arrays:
        for v in value:
            check_value(key, op, v, arrays=True)
        return
    if isinstance(value, dict):
        raise InvalidFilter(
            f"{key}: {op} cannot compare with an object; match fields of sub-documents with dotted names (e.g. '{key}.field')"
        )
    raise InvalidFilter(f"{key}: {op} takes a string, number, boolean or null, got {show(value)}")
