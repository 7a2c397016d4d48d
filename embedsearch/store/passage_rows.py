"""The passages of a chunked collection in SQL: which document each vector belongs to.

A collection with chunking (embedsearch/passages.py) stores one vector per passage. A document's
passages get consecutive vector ids, the first of which is the document's own ``row_id``; the
``passages`` table maps each vector id to its document and its character span, and is written
in the same transaction as the documents, so it can never disagree with them. Deleting or
replacing a document removes its passage rows and tombstones their vectors in one commit.

Everything else keys on documents: filters and the payload and lexical indexes select document
row ids; :func:`selection_rows` turns a filter into the vector ids FAISS is restricted to;
:func:`best_per_document` turns passage hits into distinct documents, each scored by its best
passage.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import BigInteger, and_, bindparam, delete, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY

from embedsearch.corpus import batched
from embedsearch.store.metadata import documents, passages

_CHUNK = 500
_IDS = "vector_ids"
_statements: dict[str, object] = {}


def write(conn, collection_id: int, doc_row_ids: Sequence[int], spans: Sequence[Sequence[tuple[int, int]]]) -> None:
    """Rows for the passages of new documents (the i-th passage of a document has vector id
    ``doc_row_id + i``)."""
    rows = [
        {"collection_id": collection_id, "row_id": int(d) + i, "doc_row_id": int(d), "char_start": int(a), "char_end": int(b)}
        for d, doc_spans in zip(doc_row_ids, spans, strict=True)
        for i, (a, b) in enumerate(doc_spans)
    ]
    if rows:
        conn.execute(insert(passages), rows)


def remove(conn, collection_id: int, doc_row_ids: Iterable[int]) -> np.ndarray:
    """Delete the passage rows of documents; returns their vector ids (to tombstone), sorted."""
    out = []
    for part in batched((int(i) for i in doc_row_ids), _CHUNK):
        where = and_(passages.c.collection_id == collection_id, passages.c.doc_row_id.in_(part))
        out += conn.execute(select(passages.c.row_id).where(where)).scalars().all()
        conn.execute(delete(passages).where(where))
    return np.sort(np.asarray(out, dtype=np.int64))


def vector_ids(conn, collection_id: int) -> np.ndarray:
    """Every passage's vector id (what the segments must hold), sorted."""
    rows = conn.execute(select(passages.c.row_id).where(passages.c.collection_id == collection_id))
    return np.sort(np.fromiter((r[0] for r in rows), dtype=np.int64))


def document_ids(conn, collection_id: int) -> np.ndarray:
    """The row ids of the documents that have passages, sorted."""
    rows = conn.execute(select(passages.c.doc_row_id).where(passages.c.collection_id == collection_id).distinct())
    return np.sort(np.fromiter((r[0] for r in rows), dtype=np.int64))


def count(conn, collection_id: int) -> int:
    return int(
        conn.execute(select(func.count()).select_from(passages).where(passages.c.collection_id == collection_id)).scalar_one()
    )


def selection_query(collection_id: int, condition):
    """(vector id, document row id) of the passages of the documents matching ``condition``."""
    joined = passages.join(
        documents, and_(documents.c.collection_id == passages.c.collection_id, documents.c.row_id == passages.c.doc_row_id)
    )
    return (
        select(passages.c.row_id, passages.c.doc_row_id)
        .select_from(joined)
        .where(passages.c.collection_id == collection_id, condition)
    )


def _lookup_statement(dialect: str):
    stmt = _statements.get(dialect)
    if stmt is None:
        if dialect == "postgresql":
            wanted = passages.c.row_id == func.any(bindparam(_IDS, type_=ARRAY(BigInteger)))
        else:
            wanted = passages.c.row_id.in_(select(func.json_each(bindparam(_IDS)).table_valued("value").c.value))
        stmt = select(passages.c.row_id, passages.c.doc_row_id, passages.c.char_start, passages.c.char_end).where(
            passages.c.collection_id == bindparam("cid"), wanted
        )
        _statements[dialect] = stmt
    return stmt


def lookup(engine, dialect: str, collection_id: int, vector_ids: Iterable[int]) -> dict[int, tuple[int, int, int]]:
    """vector id -> (document row id, start, end), for the ids that are live passages (one
    statement, as store/hits.py fetches documents)."""
    ids = [int(i) for i in vector_ids]
    if not ids:
        return {}
    param = ids if dialect == "postgresql" else json.dumps(ids)
    with engine.connect() as conn:
        rows = conn.execute(_lookup_statement(dialect), {"cid": collection_id, _IDS: param})
        return {int(v): (int(d), int(a), int(b)) for v, d, a, b in rows}


def spans_of(conn, collection_id: int, doc_row_ids: Iterable[int]) -> dict[int, list[tuple[int, int]]]:
    """document row id -> its passages' spans, in order."""
    out: dict[int, list[tuple[int, int]]] = {}
    for part in batched((int(i) for i in doc_row_ids), _CHUNK):
        rows = conn.execute(
            select(passages.c.doc_row_id, passages.c.char_start, passages.c.char_end)
            .where(passages.c.collection_id == collection_id, passages.c.doc_row_id.in_(part))
            .order_by(passages.c.doc_row_id, passages.c.row_id)
        )
        for d, a, b in rows:
            out.setdefault(int(d), []).append((int(a), int(b)))
    return out


def best_per_document(
    scores: np.ndarray, ids: np.ndarray, where: dict[int, tuple[int, int, int]], k: int
) -> list[list[tuple[int, float, int, int]]]:
    """For each query's passage hits (best first), the first ``k`` distinct documents as
    ``(document row id, score, start, end)``: a document scores as its best passage."""
    out = []
    for srow, irow in zip(scores.tolist(), ids.tolist(), strict=True):
        seen: set[int] = set()
        found = []
        for score, vid in zip(srow, irow, strict=True):
            hit = where.get(vid)  # -1 (no hit) and passages deleted since are never found
            if hit is None or hit[0] in seen:
                continue
            seen.add(hit[0])
            found.append((hit[0], score, hit[1], hit[2]))
            if len(found) == k:
                break
        out.append(found)
    return out
