"""Constraints of the request bodies that the OpenAPI document states beyond types and bounds:
the metadata filter language as a JSON Schema, and the patterns of index specs, payload-index
fields and cursors (issue 24, part 4: a schema-valid request is one the server accepts).

The filter's schema (``components/schemas/Filter`` and the schemas it refers to) is the grammar of
store/filters.py: field paths of 1-8 non-empty segments not starting with '$'; values that are
JSON scalars or arrays of them, numbers within 64-bit integers (JSON Schema counts 1e20 as an
integer, and so does the server); operators with the arguments each takes; ``$and`` / ``$or`` /
``$nor`` lists of 1-256 filters; ``$elemMatch`` either operators on each element or a filter on
element objects. Two limits of the language count across the whole filter and so are not JSON
Schema: at most 256 conditions (field operators and logical branches) and 16 levels of nesting;
beyond them the server answers 422 ``invalid_filter`` (tests/test_openapi.py checks that it does).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from embedsearch.store.filter_syntax import INT64, MAX_CONDITIONS, MAX_DEPTH, MAX_IN, MAX_SEGMENTS

REF = "#/components/schemas/"
#: what a filter may compare with: a JSON number the 64-bit integers bound
NUMBER64 = {"type": "number", "minimum": -INT64, "maximum": INT64 - 1}
_SEGMENT = r"[^.$][^.]*"
FIELD_PATH = rf"^{_SEGMENT}(?:\.{_SEGMENT}){{0,{MAX_SEGMENTS - 1}}}$"
_CONTROL = r"\x00-\x1f\x7f"
#: a payload-index field: dotted, 1-8 segments, none empty, starting with '$' or all ASCII digits
_INDEX_SEGMENT = rf"(?:[^.${_CONTROL}0-9][^.{_CONTROL}]*|[0-9]+[^.{_CONTROL}0-9][^.{_CONTROL}]*)"
INDEX_FIELD = rf"^{_INDEX_SEGMENT}(?:\.{_INDEX_SEGMENT}){{0,{MAX_SEGMENTS - 1}}}$"
#: a listing cursor as the server writes it: URL-safe base64 without padding
CURSOR = r"^[A-Za-z0-9_-]*$"


def _ci(word: str) -> str:
    """``word`` in any letter case, for an ECMA pattern (which has no case-insensitive flag)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


def _range_1_to_256() -> str:
    return "0*(?:[4-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-6])"


def _range_1_to_1048576() -> str:
    return "0*(?:[1-9][0-9]{0,5}|10[0-3][0-9]{4}|104[0-7][0-9]{3}|1048[0-4][0-9]{2}|10485[0-6][0-9]|104857[0-6])"


def _index_spec() -> str:
    """The specs store/specs.py parses (any letter case): auto, Flat, HNSW{4-256}, SQ8 and
    IVF{1-1048576} with Flat, SQ8 or PQ{m>=1}, the last two optionally with Refine (or RFlat)."""
    nlist, pq = _range_1_to_1048576(), "0*[1-9][0-9]*"
    refine = f"(?:,(?:{_ci('Refine')}|{_ci('RFlat')}))?"  # re-ranking applies to codes: not to IVF{n} / IVF{n},Flat
    ivf = f"{_ci('IVF')}{nlist}(?:,{_ci('Flat')}|,(?:{_ci('SQ8')}|{_ci('PQ')}{pq}){refine})?"
    return f"^(?:{_ci('auto')}|{_ci('Flat')}|{_ci('HNSW')}{_range_1_to_256()}|{_ci('SQ8')}|{ivf})$"


INDEX_SPEC = _index_spec()


def _value(ref: str) -> dict[str, Any]:
    return {"$ref": REF + ref}


#: the filter grammar, added to the document's components by :func:`install_filter_schema`
FILTER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Filter": {
        "type": "object",
        "description": "A metadata filter with MongoDB's semantics (README, Filters): field paths (dotted, at most "
        f"{MAX_SEGMENTS} segments) to values or operator objects, and $and / $or / $nor / $not. At most "
        f"{MAX_CONDITIONS} conditions and {MAX_DEPTH} levels of nesting in one filter (422 invalid_filter beyond).",
        "properties": {
            "$and": _value("FilterList"),
            "$or": _value("FilterList"),
            "$nor": _value("FilterList"),
            "$not": _value("Filter"),
        },
        "patternProperties": {FIELD_PATH: _value("FilterCondition")},
        "additionalProperties": False,
    },
    "FilterList": {"type": "array", "minItems": 1, "maxItems": MAX_CONDITIONS, "items": _value("Filter")},
    "FilterScalar": {"anyOf": [{"type": "null"}, {"type": "boolean"}, {"type": "string"}, NUMBER64]},
    "FilterValue": {
        "description": "A JSON scalar, or an array of values (matched as a whole or element by element); never an "
        "object: match fields of sub-documents with dotted paths.",
        "anyOf": [_value("FilterScalar"), {"type": "array", "items": _value("FilterValue")}],
    },
    "FilterCondition": {"anyOf": [_value("FilterValue"), _value("FilterOperators")]},
    "FilterOperators": {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": {
            "$eq": _value("FilterValue"),
            "$ne": _value("FilterValue"),
            **{op: _value("FilterScalar") for op in ("$gt", "$gte", "$lt", "$lte")},
            "$in": {"type": "array", "maxItems": MAX_IN, "items": _value("FilterValue")},
            "$nin": {"type": "array", "maxItems": MAX_IN, "items": _value("FilterValue")},
            "$all": {
                "type": "array",
                "maxItems": MAX_IN,
                "items": {
                    "anyOf": [
                        _value("FilterValue"),
                        {
                            "type": "object",
                            "required": ["$elemMatch"],
                            "additionalProperties": False,
                            "properties": {"$elemMatch": _value("FilterElemMatch")},
                        },
                    ]
                },
            },
            "$exists": {"type": "boolean"},
            "$not": _value("FilterOperators"),
            "$size": {"type": "integer", "minimum": 0, "maximum": INT64 - 1},
            "$elemMatch": _value("FilterElemMatch"),
        },
    },
    "FilterElemMatch": {
        "description": "Operators every element is tested with, or a filter on the fields of element objects.",
        "anyOf": [
            _value("FilterOperators"),
            # a filter on element objects: not a lone $not, which is the operators' own $not
            {"allOf": [_value("Filter"), {"minProperties": 1, "not": {"required": ["$not"], "maxProperties": 1}}]},
        ],
    },
}

#: a request field holding a filter, or null (no filter)
WHERE_SCHEMA = {"anyOf": [_value("Filter"), {"type": "null"}]}


def install_filter_schema(app: FastAPI) -> None:
    """Add the filter grammar to the app's OpenAPI components (request fields refer to it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(FILTER_SCHEMAS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
