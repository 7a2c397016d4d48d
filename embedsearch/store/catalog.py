"""The catalogue: collections by name under one data directory and one metadata database
(create, open, list, drop)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, insert, select

from embedsearch.config import Settings, validate_collection_name
from embedsearch.embedders.base import Embedder
from embedsearch.errors import (
    CollectionExists,
    CollectionNotFound,
    InvalidArgument,
)
from embedsearch.passages import Chunking, resolve_chunking
from embedsearch.store import deleter, lexical, manifest, payload, search_settings, space
from embedsearch.store import lexical as _lexical_index  # `lexical` is also create()'s flag
from embedsearch.store.collection import Collection
from embedsearch.store.growing import create_log, growing_file, growing_meta
from embedsearch.store.locks import file_lock
from embedsearch.store.metadata import (
    collections,
    documents,
    embedder_config,
    passages,
    payload_fields,
    payload_values,
    public_row,
    segments,
    snapshots_taken,
    tombstones,
    trainings,
)
from embedsearch.store.searcher import check_shards
from embedsearch.store.specs import check_metric, validate_spec
from embedsearch.store.stats import CollectionStats, collection_stats


def _now() -> datetime:
    return datetime.now(timezone.utc)


_BY_NAME = select(collections).where(collections.c.name == bindparam("name"))


class Store:
    """Entry point to collections under one data directory and one metadata database."""

    def __init__(self, settings: Settings | None = None, *, searchers: Callable[[Collection], Any] | None = None) -> None:
        """``searchers``: where the program is wired to a cluster, a function giving a sharded
        collection its searcher (store/searcher.py; ``embedsearch.cluster.shards.ShardSearchers``),
        or None for the local one. Without it every collection is searched in this process."""
        from embedsearch.store.metadata import get_engine

        self.searchers = searchers
        self.settings = settings or Settings.from_env()
        self.engine = get_engine(self.settings.db_url)
        self.dialect = self.engine.dialect.name
        self._open: dict[str, Collection] = {}
        self._lock = threading.Lock()

    def searcher_for(self, coll: Collection):
        """The searcher a sharded collection's searches go through (None: this process)."""
        if self.searchers is None or coll.shards <= 1:
            return None
        return self.searchers(coll)

    def lock_path(self, name: str, kind: str = "write") -> Path:
        return self.settings.data_dir / ".locks" / f"{validate_collection_name(name)}.{kind}.lock"

    # ---- collections ------------------------------------------------------------------------
    def fetch_row(self, name: str):
        with self.engine.connect() as conn:
            return conn.execute(_BY_NAME, {"name": name}).mappings().first()

    def exists(self, name: str) -> bool:
        validate_collection_name(name)
        return self.fetch_row(name) is not None

    def create(
        self,
        name: str,
        embedder: Embedder,
        index_spec: str = "auto",
        metric: str = "cosine",
        *,
        index_fields: Iterable[str] = (),
        lexical: bool = False,
        chunking: Chunking | None = None,
        shards: int = 1,
    ) -> Collection:
        """Create an empty collection pinned to ``embedder``'s fingerprint and dimension, with
        payload indexes on ``index_fields`` (metadata fields; see store/payload.py), a lexical
        index when ``lexical`` (store/lexical.py; the CLI and HTTP API default it on), and
        documents split into passages when ``chunking`` (embedsearch/passages.py; the CLI and
        HTTP API default it to the model's window for models that have one). ``shards`` > 1:
        searches fan out to that many Ray actors where the store is wired to a cluster
        (store/searcher.py)."""
        validate_collection_name(name)
        if shards != 1:
            check_shards(shards)
        if chunking is not None:
            chunking = resolve_chunking(embedder, chunking.tokens, chunking.overlap)
        spec = validate_spec(index_spec, embedder.dim)
        check_metric(metric)
        index_fields = [payload.validate_field(f) for f in index_fields]
        if len(set(index_fields)) > payload.MAX_FIELDS:
            raise InvalidArgument(f"a collection indexes at most {payload.MAX_FIELDS} fields")
        directory = self.settings.collection_dir(name)
        if self.fetch_row(name) is not None:
            raise CollectionExists(f"collection {name!r} already exists")
        with file_lock(self.lock_path(name)):
            # checked again under the lock: of two concurrent creates, the second stops here
            # before it touches the directory the first one has just filled
            if self.fetch_row(name) is not None:
                raise CollectionExists(f"collection {name!r} already exists")
            if directory.exists():  # left by a drop or create that was interrupted
                deleter.remove_directory(directory)
            directory.mkdir(parents=True)
            seg_id = manifest.new_id()
            create_log(directory / growing_file(seg_id))
            now = _now()
            try:
                with self.engine.begin() as conn:
                    cid = conn.execute(
                        insert(collections).values(
                            name=name,
                            model=embedder.spec,
                            model_fingerprint=embedder.fingerprint,
                            embedder_config=embedder_config(embedder, chunking, shards),
                            dim=embedder.dim,
                            metric=metric,
                            index_spec=spec,
                            active_spec="Flat",
                            generation=1,
                            next_row_id=0,
                            doc_count=0,
                            created_at=now,
                            updated_at=now,
                        )
                    ).inserted_primary_key[0]
                    manifest.insert_segment(conn, cid, growing_meta(seg_id, 0, 1))
                    payload.add_fields(conn, cid, index_fields, 1)
                    if lexical:
                        _lexical_index.create(conn, cid, 1)
            except Exception as exc:
                deleter.remove_directory(directory)
                from sqlalchemy.exc import IntegrityError

                if isinstance(exc, IntegrityError):
                    raise CollectionExists(f"collection {name!r} already exists") from None
                raise
        return self.open(name)

    def open(self, name: str) -> Collection:
        """Open a collection (cached per store); raises :class:`CollectionNotFound`."""
        validate_collection_name(name)
        with self._lock:
            coll = self._open.get(name)
            row = self.fetch_row(name)
            if row is None:
                self._open.pop(name, None)
                raise CollectionNotFound(f"no collection named {name!r} (see `embedsearch index list`)")
            if coll is None or coll.id != row["id"]:
                coll = Collection(self, row)
                self._open[name] = coll
            return coll

    def forget(self, name: str) -> None:
        """Forget this store's open object of a collection that was renamed or dropped elsewhere."""
        with self._lock:
            self._open.pop(name, None)

    def list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(collections).order_by(collections.c.name)).mappings().all()
        return [public_row(r) for r in rows]

    def stats(self) -> list[CollectionStats]:
        """Each collection's documents, vectors, segments, tombstones, generation and bytes on
        disk (store/stats.py): one SQL statement and a listing of each collection's directory,
        no model loaded, none of the collections' locks taken, so a monitor may call it while
        writers run."""
        return collection_stats(self.engine, self.settings.collection_dir)

    @space.frees_space(lambda store: store)
    def drop(self, name: str) -> None:
        """Delete a collection's rows and its files (locks in the order store/locks.py writes
        down: a running merge finishes first, then writers in this process and in others)."""
        coll = self.open(name)
        with file_lock(self.lock_path(name, "merge")), coll.writer_lock(), file_lock(self.lock_path(name)):
            with self.engine.begin() as conn:
                tables = (payload_values, payload_fields, passages, documents, segments, tombstones, trainings, snapshots_taken)
                for table in tables:
                    conn.execute(delete(table).where(table.c.collection_id == coll.id))
                lexical.drop(conn, coll.id)
                search_settings.drop(conn, coll.id)
                conn.execute(delete(collections).where(collections.c.id == coll.id))
            deleter.remove_directory(coll.dir)
        with self._lock:
            self._open.pop(name, None)
