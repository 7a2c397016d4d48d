"""The hit path: the rows of a batch's hits in one statement, with only the columns asked for.

A search ends by joining its hits (row ids) with their documents. One statement per batch, whatever
the number of hits: SQLite reads the ids from one JSON array parameter (``json_each``), PostgreSQL
from one array parameter (``= ANY``), so the statement's text never depends on the number of ids and
is compiled once (SQLAlchemy caches it), and no id list ever meets a bound-parameter limit.
``columns`` leaves out the text or the metadata when the caller will not show them (``search
--fields id,score``): long documents are then never read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import BigInteger, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from embedsearch.store.metadata import documents

COLUMNS = ("text", "metadata")
_IDS = "row_ids"
_statements: dict[tuple[str, tuple[str, ...]], object] = {}


def _statement(dialect: str, columns: tuple[str, ...]):
    key = (dialect, columns)
    stmt = _statements.get(key)
    if stmt is None:
        cols = [documents.c.row_id, documents.c.external_id]
        cols += [documents.c.text] if "text" in columns else []
        cols += [documents.c.meta] if "metadata" in columns else []
        if dialect == "postgresql":
            wanted = documents.c.row_id == func.any(bindparam(_IDS, type_=ARRAY(BigInteger)))
        else:
            wanted = documents.c.row_id.in_(select(func.json_each(bindparam(_IDS)).table_valued("value").c.value))
        stmt = select(*cols).where(documents.c.collection_id == bindparam("cid"), wanted)
        _statements[key] = stmt
    return stmt


def fetch_rows(engine, dialect: str, collection_id: int, row_ids: Iterable[int], columns: Iterable[str] = COLUMNS) -> dict:
    """row id -> (external id, text or None, metadata or None), for the ids that exist."""
    columns = tuple(c for c in COLUMNS if c in set(columns))
    ids = [int(i) for i in row_ids]
    if not ids:
        return {}
    param = ids if dialect == "postgresql" else json.dumps(ids)
    out = {}
    with engine.connect() as conn:
        for row in conn.execute(_statement(dialect, columns), {"cid": collection_id, _IDS: param}):
            rid, ext = int(row[0]), row[1]
            rest = row[2:]
            text = rest[0] if "text" in columns else None
            meta = rest[-1] if "metadata" in columns else None
            out[rid] = (ext, text, meta)
    return out
