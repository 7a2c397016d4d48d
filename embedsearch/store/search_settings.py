"""How a collection is searched when a query does not say: its stored mode, fusion and alpha.

The store keeps them (one row of ``search_settings`` per collection, NULL for "the library's
default") and reads them in the same statement that says whether the collection has a lexical
index, so a search that takes its defaults costs one statement, as before. What the values mean
and which are valid is the query layer's business (embedsearch/search.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select

from embedsearch.store.metadata import collections, lexical_indexes, search_settings

FIELDS = ("mode", "fusion", "alpha", "stop_words")


def read(conn, collection_id: int) -> dict[str, Any]:
    """``{"lexical": bool, "mode": ..., "fusion": ..., "alpha": ..., "stop_words": ...}`` (None: not set)."""
    row = conn.execute(
        select(lexical_indexes.c.collection_id, *(search_settings.c[f] for f in FIELDS))
        .select_from(collections)
        .outerjoin(lexical_indexes, lexical_indexes.c.collection_id == collections.c.id)
        .outerjoin(search_settings, search_settings.c.collection_id == collections.c.id)
        .where(collections.c.id == collection_id)
    ).first()
    if row is None:
        return {"lexical": False, **dict.fromkeys(FIELDS)}
    return {"lexical": row[0] is not None, **dict(zip(FIELDS, row[1:], strict=True))}


def write(conn, collection_id: int, values: dict[str, Any]) -> None:
    """Replace the stored settings with ``values`` (keys of FIELDS; None or absent: not set)."""
    conn.execute(delete(search_settings).where(search_settings.c.collection_id == collection_id))
    kept = {f: values.get(f) for f in FIELDS}
    if any(v is not None for v in kept.values()):
        conn.execute(insert(search_settings).values(collection_id=collection_id, **kept))


def drop(conn, collection_id: int) -> None:
    conn.execute(delete(search_settings).where(search_settings.c.collection_id == collection_id))
