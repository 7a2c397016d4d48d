"""Documents without a query, and collections by name: what the CLI and the HTTP service share.

- :func:`get_documents`: documents by id, in the order asked, with the ids not found;
- :func:`list_documents`: documents matching a filter, a page at a time, by a stable cursor;
- :func:`count_documents`: how many documents match a filter;
- :func:`create_collection` / :func:`drop_collection`: a collection by name and model.

Paging is keyset pagination on ``row_id``: a page is the first ``limit`` matching rows whose row
id is greater than the last one the previous page returned, in row-id order. A write never
gives an existing row a new id; it deletes rows and inserts new ones at row ids larger than any
before (an update is a delete plus an insert). So, while a listing runs and others write:

- no row is returned twice, and rows come in increasing row-id order;
- a document that exists, unchanged, from the first page to the last is returned exactly once;
- a document added or updated during the listing is returned (its new row lies past every
  earlier row); an updated document whose old version was already returned therefore appears
  a second time, with its new content, later in the listing;
- a document deleted before the listing reaches it is not returned.

A cursor is opaque to callers: URL-safe base64 of a small JSON object naming the collection,
the filter it was made for, and the last row id returned. A cursor that does not decode, or
that was made for another collection or another filter, is an :class:`InvalidCursor`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from embedsearch.errors import DocumentNotFound, InvalidArgument, InvalidCursor
from embedsearch.store.filters import compile_filter, parse_filter
from embedsearch.store.metadata import documents

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_IDS = 1000  # ids per get_documents call
MAX_CURSOR_CHARS = 512
_CURSOR_VERSION = 1
_CURSOR_RE = re.compile(r"[A-Za-z0-9_-]+")  # URL-safe base64 without padding, as encode_cursor writes it
_IN_CHUNK = 500


def document_dict(external_id: str, text: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """A document as the CLI's JSON and the service return it (the shape ``index add`` reads)."""
    return {"id": external_id, "text": text, "metadata": metadata}


# ---- get ----------------------------------------------------------------------------------


def get_documents(coll, ids: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Documents with the given ids, in the order asked (each once), and the ids not found."""
    wanted = list(dict.fromkeys(str(i) for i in ids))
    if not wanted:
        raise InvalidArgument("give at least one document id")
    if len(wanted) > MAX_IDS:
        raise InvalidArgument(f"at most {MAX_IDS} ids at a time (got {len(wanted)})")
    found: dict[str, dict[str, Any]] = {}
    with coll.store.engine.connect() as conn:
        for start in range(0, len(wanted), _IN_CHUNK):
            part = wanted[start : start + _IN_CHUNK]
            q = select(documents.c.external_id, documents.c.text, documents.c.meta).where(
                documents.c.collection_id == coll.id, documents.c.external_id.in_(part)
            )
            for ext, text, meta in conn.execute(q):
                found[ext] = document_dict(ext, text, meta)
    return [found[i] for i in wanted if i in found], [i for i in wanted if i not in found]


def get_document(coll, external_id: str) -> dict[str, Any]:
    """One document by id; :class:`DocumentNotFound` when there is none."""
    docs, _ = get_documents(coll, [external_id])
    if not docs:
        raise DocumentNotFound(f"no document {external_id!r} in collection {coll.name!r}")
    return docs[0]


# ---- list and count -----------------------------------------------------------------------


@dataclass
class Page:
    """One page of a listing; ``next_cursor`` is None on the last page."""

    documents: list[dict[str, Any]]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"documents": self.documents, "next_cursor": self.next_cursor}


def _filter_key(where: dict | None) -> str:
    """A short fingerprint of a filter (key order does not matter), so a cursor is only used
    with the filter it was made for."""
    canonical = json.dumps(where or {}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_cursor(coll, where: dict | None, after_row_id: int) -> str:
    payload = {"v": _CURSOR_VERSION, "c": int(coll.id), "f": _filter_key(where), "after": int(after_row_id)}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(coll, where: dict | None, cursor: str) -> int:
    """The last row id a cursor's page returned; :class:`InvalidCursor` when the cursor is not
    one of ours, or belongs to another collection or another filter."""
    if not isinstance(cursor, str) or not _CURSOR_RE.fullmatch(cursor) or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor("invalid cursor: pass the next_cursor of a previous page unchanged")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidCursor("invalid cursor: pass the next_cursor of a previous page unchanged") from None
    if (
        not isinstance(payload, dict)
        or payload.get("v") != _CURSOR_VERSION
        or not isinstance(payload.get("after"), int)
        or isinstance(payload.get("after"), bool)
        or payload["after"] < -1
    ):
        raise InvalidCursor("invalid cursor: pass the next_cursor of a previous page unchanged")
    if payload.get("c") != coll.id:
        raise InvalidCursor(f"this cursor belongs to another collection than {coll.name!r}")
    if payload.get("f") != _filter_key(where):
        raise InvalidCursor("this cursor was made for another filter: pass the same --where / where with it")
    return int(payload["after"])


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be an integer from 1 to {MAX_LIMIT} (got {limit!r})")
    return limit


def list_documents(coll, where: dict | str | None = None, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page:
    """A page of the documents matching ``where`` (all when None), in row-id order, from
    ``cursor`` (the previous page's ``next_cursor``; None for the first page)."""
    limit = _check_limit(limit)
    spec = parse_filter(where) or None
    after = decode_cursor(coll, spec, cursor) if cursor else -1
    conds = [documents.c.collection_id == coll.id, documents.c.row_id > after]
    if spec:
        conds.append(compile_filter(spec, documents.c.meta, coll.store.dialect))
    q = (
        select(documents.c.row_id, documents.c.external_id, documents.c.text, documents.c.meta)
        .where(*conds)
        .order_by(documents.c.row_id)
        .limit(limit + 1)  # one more than the page says whether another page follows
    )
    with coll.store.engine.connect() as conn:
        rows = conn.execute(q).all()
    page = rows[:limit]
    docs = [document_dict(ext, text, meta) for _, ext, text, meta in page]
    next_cursor = encode_cursor(coll, spec, int(page[-1][0])) if len(rows) > limit else None
    return Page(docs, next_cursor)


def count_documents(coll, where: dict | str | None = None) -> int:
    """How many documents match ``where`` (all documents when None)."""
    spec = parse_filter(where)
    if not spec:
        return int(coll.count())
    cond = compile_filter(spec, documents.c.meta, coll.store.dialect)
    q = select(func.count()).select_from(documents).where(documents.c.collection_id == coll.id, cond)
    with coll.store.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


# ---- collections --------------------------------------------------------------------------


def create_collection(
    store,
    name: str,
    model: str = "minilm",
    index_spec: str = "auto",
    metric: str = "cosine",
    *,
    options: dict[str, Any] | None = None,
    device: str | None = None,
    index_fields: Iterable[str] = (),
    lexical: bool = True,
    chunk_tokens: int | None = None,
    chunk_overlap: int | None = None,
    chunking: bool | None = None,
    shards: int = 1,
    root: Path | None = None,
):
    """Create an empty collection ``name`` for ``model`` (a built-in name or a model directory),
    with payload indexes on ``index_fields``, a lexical index unless ``lexical`` is False, and
    documents split into passages of ``chunk_tokens`` tokens sharing ``chunk_overlap`` (default:
    the model's window, for models that have one; ``chunking`` False: one vector per document;
    see embedsearch/passages.py), searched by ``shards`` Ray actors when more than one. ``root``:
    a directory every file of the model must lie in (the service's --models-dir).

    Cheap checks come before the model loads: a bad name or index spec is refused, an existing
    collection is :class:`CollectionExists`, and a missing or broken model directory is refused,
    without loading anything.
    """
    from embedsearch.config import validate_collection_name
    from embedsearch.embedders import check_model, load_embedder
    from embedsearch.errors import CollectionExists
    from embedsearch.store.payload import validate_field
    from embedsearch.store.specs import check_metric, validate_spec

    validate_collection_name(name)
    validate_spec(index_spec)
    check_metric(metric)
    index_fields = [validate_field(f) for f in index_fields]
    if store.exists(name):
        raise CollectionExists(f"collection {name!r} already exists")
    check_model(model, options or {}, root)  # a missing or broken model directory, before the load
    from embedsearch.passages import resolve_chunking

    if shards != 1:
        from embedsearch.store.searcher import check_shards

        check_shards(shards)
    for value in (chunk_tokens, chunk_overlap):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidArgument("chunk_tokens and chunk_overlap must be integers")
    embedder = load_embedder(model, device=device, options=options or {}, root=root)
    split = resolve_chunking(embedder, chunk_tokens, chunk_overlap, chunking)
    return store.create(
        name, embedder, index_spec, metric, index_fields=index_fields, lexical=lexical, chunking=split, shards=shards
    )


def drop_collection(store, name: str) -> dict[str, Any]:
    """Drop collection ``name`` (its rows and files); :class:`CollectionNotFound` when there is none."""
    coll = store.open(name)
    count = coll.count()
    store.drop(name)
    return {"dropped": name, "documents": int(count)}
