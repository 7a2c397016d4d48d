"""SQL metadata through SQLAlchemy 2.x Core: one row per collection, one per document.

SQLite (a file in the data directory) by default; any SQLAlchemy URL works, PostgreSQL
included. A document's ``row_id`` is also its FAISS id.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata_obj = MetaData()

_JSON = JSON().with_variant(JSONB(), "postgresql")

collections = Table(
    "collections",
    metadata_obj,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("model", Text, nullable=False),  # how to load the embedder again: built-in name or path
    Column("model_fingerprint", String(64), nullable=False),
    Column("embedder_config", _JSON, nullable=False),
    Column("dim", Integer, nullable=False),
    Column("metric", String(16), nullable=False),
    Column("index_spec", String(64), nullable=False),  # what the user asked for (may be "auto")
    Column("active_spec", String(64), nullable=False),  # what is built now
    Column("generation", BigInteger, nullable=False),
    Column("next_row_id", BigInteger, nullable=False),
    Column("doc_count", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

documents = Table(
    "documents",
    metadata_obj,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("row_id", BigInteger, primary_key=True, autoincrement=False),
    Column("external_id", String(1024), nullable=False),
    Column("text", Text, nullable=False),
    Column("meta", _JSON, nullable=False),
    Column("content_hash", String(64), nullable=False),
    UniqueConstraint("collection_id", "external_id", name="uq_documents_external_id"),
)
Index("ix_documents_hash", documents.c.collection_id, documents.c.content_hash)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    # WAL lets readers (searches, the service) run while one writer commits a batch.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def _dump_json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def get_engine(url: str) -> Engine:
    """One engine per URL per process, with the schema created on first use."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        # ensure_ascii=False: SQLite's JSON paths compare a key's raw stored text, which must not be
        # a \u escape of the key (filters also find keys stored escaped by older versions)
        engine = create_engine(url, future=True, json_serializer=_dump_json)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        metadata_obj.create_all(engine)
        _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests and forked workers)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
