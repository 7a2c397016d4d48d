"""A batch's part of a commit in SQL: the document rows it removes and writes, with their
passages, payload entries, lexical index rows and the tombstones of the vectors that go.

One function, called inside the caller's commit transaction (``Collection._commit`` for
writes, ``repair`` for re-embedded documents), so every writer changes rows the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete, insert

from embedsearch.corpus import Document, batched
from embedsearch.store import lexical, manifest, passage_rows, payload
from embedsearch.store.metadata import documents

_IN_CHUNK = 500  # ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits


def apply(
    conn,
    collection_id: int,
    *,
    removed: np.ndarray,
    new_docs: Sequence[tuple[Document, str]],
    doc_ids: np.ndarray,
    row_range: tuple[int, int],
    spans: Sequence[Sequence[tuple[int, int]]] | None,
    generation: int,
    tombstone_removed: bool = True,
    stored: np.ndarray | None = None,
) -> np.ndarray:
    """Delete the documents ``removed`` (row ids) and insert ``new_docs`` (document, content
    hash) at ``doc_ids``, whose vectors take ``row_range``; ``spans``: each new document's
    passages in a chunked collection (None: not chunked). Tombstones the removed vectors
    (every passage of a removed document) at ``generation``; without ``tombstone_removed``
    (repair: the removed rows' vectors may be gone) only those in ``stored``. Returns the
    tombstoned vector ids."""
    chunked = spans is not None
    indexed = payload.indexed_fields(conn, collection_id)
    has_lexical = lexical.enabled(conn, collection_id)
    lo, hi = row_range
    if has_lexical:
        lexical.on_commit(conn, collection_id, removed, lo, hi, "before")
    for part in batched((int(i) for i in removed), _IN_CHUNK):  # numpy ints bind as blobs on SQLite
        conn.execute(delete(documents).where(documents.c.collection_id == collection_id, documents.c.row_id.in_(part)))
    if indexed:
        payload.delete_entries(conn, collection_id, removed)
    dead = np.asarray(removed, dtype=np.int64)
    if chunked:  # every passage of a removed document goes
        dead = passage_rows.remove(conn, collection_id, removed)
    if not tombstone_removed:
        dead = np.intersect1d(dead, stored if stored is not None else np.zeros(0, dtype=np.int64))
    if len(dead):
        manifest.add_tombstones(conn, collection_id, dead, generation)
    if new_docs:
        conn.execute(insert(documents), _doc_rows(collection_id, doc_ids, new_docs))
        payload.write_entries(conn, collection_id, indexed, doc_ids, [d.metadata for d, _ in new_docs])
        if chunked:
            passage_rows.write(conn, collection_id, doc_ids, spans)
        if has_lexical:
            lexical.on_commit(conn, collection_id, removed, lo, hi, "after")
    return dead


def document_ids(first: int, n_vectors: int, spans: Sequence[Sequence[tuple[int, int]]] | None, n_docs: int) -> np.ndarray:
    """The row ids of a batch's documents whose vectors start at ``first``: one per vector, or
    in a chunked collection each document's first passage's vector id."""
    if spans is None:
        return np.arange(first, first + n_vectors, dtype=np.int64)
    return first + np.concatenate([[0], np.cumsum([len(x) for x in spans])[:-1]]).astype(np.int64)[:n_docs]


def _doc_rows(collection_id: int, row_ids: np.ndarray, new_docs: Sequence[tuple[Document, str]]) -> list[dict]:
    return [
        {
            "collection_id": collection_id,
            "row_id": int(rid),
            "external_id": doc.id,
            "text": doc.text,
            "meta": doc.metadata,
            "content_hash": h,
        }
        for rid, (doc, h) in zip(row_ids, new_docs, strict=True)
    ]
