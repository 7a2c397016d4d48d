"""SQL metadata through SQLAlchemy 2.x Core: collections, documents, and each collection's
segment list, tombstones and trained index templates.

SQLite (a file in the data directory) by default; any SQLAlchemy URL works, PostgreSQL
included. A document's ``row_id`` is also its FAISS id. Every commit of a collection bumps
its ``generation`` in the same transaction as the rows it changes, so a reader that sees the
same generation before and after reading the segment list has read one consistent state.

The segment tables are new in the segment format; collections written before it have no rows
there and keep their single ``vectors-<generation>.faiss`` file until their first write
migrates them (see ``store/legacy.py``).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
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

segments = Table(
    "segments",
    metadata_obj,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("seg_id", BigInteger, primary_key=True, autoincrement=False),
    Column("state", String(16), nullable=False),  # sealed | growing
    Column("file", String(128), nullable=False),
    Column("spec", String(64), nullable=False),
    Column("train_id", BigInteger, nullable=True),  # the trained template a sealed IVF/SQ segment was built from
    Column("count", BigInteger, nullable=False),  # vectors stored (tombstones included); committed log records
    Column("row_lo", BigInteger, nullable=False),  # the segment covers row ids in [row_lo, row_hi)
    Column("row_hi", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=True),
    Column("created_gen", BigInteger, nullable=False),
)

tombstones = Table(
    "tombstones",
    metadata_obj,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("row_id", BigInteger, primary_key=True, autoincrement=False),
    Column("generation", BigInteger, nullable=False),  # readers load the ones newer than they have
)
Index("ix_tombstones_generation", tombstones.c.collection_id, tombstones.c.generation)

trainings = Table(
    "trainings",
    metadata_obj,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("train_id", BigInteger, primary_key=True, autoincrement=False),
    Column("spec", String(64), nullable=False),
    Column("file", String(128), nullable=False),  # trained-<id>.faiss: the trained, empty index
    Column("trained_on", BigInteger, nullable=False),  # live vectors when it was trained
    Column("sample", BigInteger, nullable=False),  # vectors it was trained with
    Column("sha256", String(64), nullable=False),
    Column("created_gen", BigInteger, nullable=False),
)

# Passages (store/passage_rows.py): in a collection with chunking, one row per vector. A
# document's passages have consecutive vector ids starting at the document's own row_id.
passages = Table(
    "passages",
    metadata_obj,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("row_id", BigInteger, primary_key=True, autoincrement=False),  # the passage's vector id
    Column("doc_row_id", BigInteger, nullable=False),
    Column("char_start", Integer, nullable=False),  # the passage is text[char_start:char_end]
    Column("char_end", Integer, nullable=False),
)
Index("ix_passages_doc", passages.c.collection_id, passages.c.doc_row_id)

# Payload indexes (store/payload.py): the metadata fields a collection indexes, and one row per
# scalar value of such a field in a document (an array field has one per element). Kept in the
# same transaction as the documents they describe.
payload_fields = Table(
    "payload_fields",
    metadata_obj,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("field", String(256), primary_key=True),
    Column("created_gen", BigInteger, nullable=False),
    # some document has held two or more values there (an array): conditions on the field cannot
    # then be merged into one range (MongoDB lets different elements satisfy each)
    Column("multi", Boolean, nullable=False, default=False),
)

payload_values = Table(
    "payload_values",
    metadata_obj,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
    Column("field", String(256), nullable=False),
    Column("row_id", BigInteger, nullable=False),
    Column("kind", String(1), nullable=False),  # n: number, s: string, b: boolean (num 0 or 1)
    Column("num", Float(precision=53), nullable=True),
    # "C": PostgreSQL then orders strings by their bytes, which in UTF-8 is code-point order, as
    # MongoDB and SQLite's BINARY collation do
    Column("txt", Text().with_variant(Text(collation="C"), "postgresql"), nullable=True),
)
Index("ix_payload_num", payload_values.c.collection_id, payload_values.c.field, payload_values.c.kind, payload_values.c.num)
Index("ix_payload_txt", payload_values.c.collection_id, payload_values.c.field, payload_values.c.txt)
Index("ix_payload_row", payload_values.c.collection_id, payload_values.c.row_id)

# Lexical indexes (store/lexical.py): a collection with a row here has a full-text table
# lexical_<collection id>, written in the same transaction as its documents.
lexical_indexes = Table(
    "lexical_indexes",
    metadata_obj,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("created_gen", BigInteger, nullable=False),
)

# PostgreSQL's BM25 statistics for a lexical index (store/lexical.py): its documents and their
# tokens, kept in the transaction that writes the index rows. SQLite's FTS5 keeps its own.
lexical_stats = Table(
    "lexical_stats",
    metadata_obj,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("docs", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
)

# How a collection is searched when a query does not say (store/search_settings.py): at most one
# row per collection; a column left NULL keeps the library's default for it.
search_settings = Table(
    "search_settings",
    metadata_obj,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("mode", String(16), nullable=True),
    Column("fusion", String(16), nullable=True),
    Column("alpha", Float, nullable=True),
    Column("stop_words", String(32), nullable=True),  # a language of store/stop_words.py, or "none"
)

# The last snapshot of a collection taken through the CLI (store/snapshot.py; `index info` shows it).
snapshots_taken = Table(
    "snapshots_taken",
    metadata_obj,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("taken_at", DateTime(timezone=True), nullable=False),
    Column("generation", BigInteger, nullable=False),
    Column("file", Text, nullable=False),
    Column("bytes", BigInteger, nullable=False),
)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


_BUSY_TIMEOUT_MS = 30000


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    # WAL lets readers (searches, the service) run while one writer commits a batch.
    _switch_to_wal(cur)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=FULL")
    # after a checkpoint the WAL is cut back to this size instead of staying at its largest (store/space.py)
    cur.execute("PRAGMA journal_size_limit=4194304")
    cur.close()


def _switch_to_wal(cur) -> None:
    """Put a database in WAL mode (a no-op once it is). Switching a new database needs an exclusive
    lock; when two processes open it at once, each holding the shared lock the other must wait for,
    SQLite answers SQLITE_BUSY at once instead of calling the busy handler (a deadlock would follow).
    The statement gives up its lock when it fails, so the other switch goes through; retry until it has."""
    import sqlite3

    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _dump_json(value) -> str:
    # allow_nan=False: NaN/Infinity are not JSON and would poison every JSON function on the row
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


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
        _create_schema(engine)
        _engines[url] = engine
        return engine


def _create_schema(engine: Engine) -> None:
    """Create missing tables. Two processes opening a new database at once both see a table
    missing and both create it; the loser's "already exists" is retried and then sees it. Every
    such failure means another process made progress (one more table or index exists), so the
    loop ends; it is bounded by the number of schema objects and by the busy timeout."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    objects = sum(1 + len(table.indexes) for table in metadata_obj.sorted_tables)
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    for attempt in range(objects + 2):
        try:
            metadata_obj.create_all(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError) as exc:
            lost_race = "already exists" in str(exc) or "pg_type_typname_nsp_index" in str(exc)
            if not lost_race or attempt == objects + 1 or time.monotonic() > deadline:
                raise
            time.sleep(0.01 * (attempt + 1))


def dispose_engine(url: str) -> None:
    """Close one URL's pooled connections and forget its engine (a temporary database)."""
    with _engines_lock:
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def dispose_engines() -> None:
    """Close every pooled connection (tests and forked workers)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


if TYPE_CHECKING:
    from embedsearch.embedders.base import Embedder
    from embedsearch.passages import Chunking


def embedder_config(embedder: Embedder, chunking: Chunking | None, shards: int = 1) -> dict[str, Any]:
    """The collection's record of how it embeds and is searched: the model's settings, the
    chunking, and the number of shards when it has several."""
    config = embedder.config()
    if chunking is not None:
        config["chunking"] = chunking.to_dict()
    if shards > 1:
        config["shards"] = shards
    return config


def public_row(row) -> dict[str, Any]:
    out = dict(row)
    out.pop("id", None)
    for key in ("created_at", "updated_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    return out
