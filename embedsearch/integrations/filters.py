"""The frameworks' filter objects as embedsearch filters (MongoDB-style dicts, see store/filters.py).

A condition the filter language cannot say is refused with :class:`UnsupportedFilter`, naming
the operator or condition; nothing is ever dropped, so a translated filter never matches more
than the framework's filter asked for.

LlamaIndex (``MetadataFilters``; its operators and conditions are ``str`` enums, compared here by
value, so this module imports no framework):

=====================  ===============================================================
``==`` / ``!=``        ``{"$eq": v}`` / ``{"$ne": v}`` (MongoDB: an array field matches when
                       one element equals ``v``; a missing field is ``!=`` anything)
``>`` ``>=`` ``<``     ``$gt`` ``$gte`` ``$lt`` ``$lte``
``<=``
``in`` / ``nin``       ``$in`` / ``$nin``
``any`` / ``all``      ``$in`` / ``$all`` (an array field holding any / all of the values)
``contains``           ``{"$elemMatch": {"$eq": v}}`` (an array field holding ``v``)
``is_empty``           missing, null, ``""`` or ``[]``
``text_match``,        refused: the filter language has no substring match (search the text
``text_match_insens``  with ``mode="lexical"`` or ``"hybrid"`` instead)
AND / OR / NOT         ``$and`` / ``$or`` / ``$nor`` (NOT: none of the filters match, as in
                       LlamaIndex's own ``SimpleVectorStore``), nested to any depth
=====================  ===============================================================

LangChain's vector stores take a filter as a dict, passed to embedsearch as it is; its structured
queries (``langchain_core.structured_query``, what a self-querying retriever writes) translate
the same way: ``eq ne gt gte lt lte in nin`` as above, ``contain`` as ``contains``, ``like``
refused, ``and`` / ``or`` / ``not`` as ``$and`` / ``$or`` / ``$nor``.
"""

from __future__ import annotations

from typing import Any

from embedsearch.errors import InvalidFilter

_COMPARE = {"==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}
_LISTS = {"in": "$in", "nin": "$nin", "any": "$in", "all": "$all"}
_CONDITIONS = {"and": "$and", "or": "$or", "not": "$nor"}
_NO_SUBSTRING = ("text_match", "text_match_insensitive")
#: LangChain's comparators by the LlamaIndex operator that means the same
_LANGCHAIN = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "in": "in", "nin": "nin",
              "contain": "contains", "like": "text_match"}  # fmt: skip


class UnsupportedFilter(InvalidFilter):
    """A framework filter with an operator or condition embedsearch's filters cannot express."""

    code = "unsupported_filter"


def _value(v: Any) -> str:
    """An enum member's value (``FilterOperator.EQ`` -> ``"=="``), or the string itself."""
    return str(getattr(v, "value", v))


def from_llamaindex(filters: Any) -> dict | None:
    """A LlamaIndex ``MetadataFilters`` (or one ``MetadataFilter``) as an embedsearch filter; None
    for no filters. Raises :class:`UnsupportedFilter` for what cannot be translated."""
    if filters is None:
        return None
    if hasattr(filters, "filters"):
        return _group(filters) or None
    return _one(filters)


def _group(group: Any) -> dict:
    parts = [_group(f) if hasattr(f, "filters") else _one(f) for f in group.filters]
    parts = [p for p in parts if p]  # an empty nested group is no condition
    condition = _value(group.condition or "and").lower()
    if condition not in _CONDITIONS:
        raise UnsupportedFilter(f"LlamaIndex filter condition {condition!r} is not supported; use one of and, or, not")
    if not parts:  # no filters (NOT of nothing too): no condition, as in LlamaIndex's SimpleVectorStore
        return {}
    if condition == "and" and len(parts) == 1:
        return parts[0]
    return {_CONDITIONS[condition]: parts}


def _one(f: Any) -> dict:
    return comparison("LlamaIndex", f.key, _value(f.operator), f.value)


def comparison(framework: str, key: Any, op: str, value: Any, named: str | None = None) -> dict:
    """One condition, ``key op value`` with a LlamaIndex operator (``named``: what the framework
    calls the operator, for messages)."""
    named = named or op.upper()
    if not isinstance(key, str) or not key or key.startswith("$"):
        raise UnsupportedFilter(f"{framework} filter key {key!r} is not a metadata field name")
    if op in _COMPARE:
        if op not in ("==", "!=") and isinstance(value, list):
            raise UnsupportedFilter(f"{framework} filter {key} {named}: takes a single value, not a list")
        return {key: {_COMPARE[op]: value}}
    if op in _LISTS:
        if not isinstance(value, list):
            raise UnsupportedFilter(f"{framework} filter {key} {named}: takes a list of values, got {value!r}")
        return {key: {_LISTS[op]: list(value)}}
    if op == "contains":
        return {key: {"$elemMatch": {"$eq": value}}}
    if op == "is_empty":
        return {"$or": [{key: None}, {key: ""}, {key: {"$size": 0}}]}
    if op in _NO_SUBSTRING:
        raise UnsupportedFilter(
            f"{framework} filter operator {named} (on {key!r}) is not supported: embedsearch filters have no "
            "substring match; search the text with mode='lexical' or 'hybrid', or filter on exact values"
        )
    raise UnsupportedFilter(f"{framework} filter operator {named} (on {key!r}) is not supported")


def from_langchain_comparison(attribute: str, comparator: Any, value: Any) -> dict:
    """A LangChain structured-query ``Comparison`` as an embedsearch filter."""
    name = _value(comparator)
    return comparison("LangChain", attribute, _LANGCHAIN.get(name, name), value, named=name.upper())


def from_langchain_operation(operator: Any, arguments: list[dict]) -> dict:
    """A LangChain structured-query ``Operation`` over translated arguments."""
    name = _value(operator).lower()
    if name not in _CONDITIONS:
        raise UnsupportedFilter(f"LangChain filter operator {name.upper()} is not supported; use and, or, not")
    return {_CONDITIONS[name]: list(arguments)}


def all_of(*filters: dict | None) -> dict | None:
    """The conjunction of filters (None and ``{}`` are no condition)."""
    parts = [f for f in filters if f]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}
