"""A collection: SQL rows plus a list of segments, kept consistent.

How a write stays consistent (and survives ``kill -9``):

1. Writers are serialised per collection by a lock file (processes) and a lock (threads).
2. A batch appends its vectors to the growing segment's log at the committed end and fsyncs
   (a batch of a seal's size or more is written as a sealed segment file instead), then one
   SQL transaction changes the document rows, records tombstones for the rows it replaced or
   deleted, updates the segment list and bumps the generation.
3. When the growing segment reaches the seal size it is written as a sealed segment (temp
   file, fsync, rename) and one transaction swaps it into the segment list.
4. Merges (``store/merging.py``) build their segment without holding the writer lock, and
   swap it in with one short transaction.

A crash before a transaction commits leaves the old state: log bytes past the committed count
are ignored, and files the segment list does not name are leftovers that the next writer
removes. A crash after it leaves the new state. See ``indexes/README.md`` for the files.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select

from embedsearch.config import Settings, validate_collection_name
from embedsearch.corpus import Document, batched
from embedsearch.embedders.base import Embedder
from embedsearch.errors import (
    CollectionExists,
    CollectionNotFound,
    DimensionMismatch,
    FingerprintMismatch,
    InconsistentCollection,
    IndexCorrupted,
    InvalidArgument,
)
from embedsearch.passages import Chunking, embed_texts, resolve_chunking
from embedsearch.store import batch_rows, deleter, hits, lexical, manifest, passage_rows, payload
from embedsearch.store import lexical as _lexical_index  # `lexical` is also create()'s flag
from embedsearch.store.commit import check_generation, commit
from embedsearch.store.crashpoints import crash_point
from embedsearch.store.filters import compile_filter, parse_filter
from embedsearch.store.growing import append_records, create_log, growing_file, record_dtype, truncate_log
from embedsearch.store.locks import RWLock, file_lock
from embedsearch.store.metadata import (
    collections,
    documents,
    passages,
    payload_fields,
    payload_values,
    segments,
    tombstones,
    trainings,
)
from embedsearch.store.segments import SegmentMeta, segment_file, segment_files, write_sealed
from embedsearch.store.selection import Selection, SelectionCache, filter_key
from embedsearch.store.specs import check_metric, parse_spec, target_spec, validate_spec
from embedsearch.store.view import SegmentSet, committed_generation

_IN_CHUNK = 500  # ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits
SEAL_BYTES = 32 << 20  # the growing segment is sealed once its vectors take this much
MAX_SEGMENT_BYTES = 2 << 30  # merges stop growing a segment past this (bounds a merge's memory)
SNAPSHOT_TRIES = 20  # optimistic reads before a read takes the write lock (see at_one_generation)


class StaleRead(Exception):
    """A read saw two generations (a commit landed between its steps); it is run again."""


@dataclass
class Hit:
    """One search result."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any]
    row_id: int
    extras: dict[str, Any] | None = None  # how it matched: mode, ranks, highlights (search.py)

    def to_dict(self, fields: Iterable[str] | None = None) -> dict[str, Any]:
        out = {"id": self.id, "score": round(float(self.score), 6), "text": self.text, "metadata": self.metadata}
        out.update(self.extras or {})
        if fields:
            wanted = set(fields)
            out = {"id": self.id, "score": out["score"], **{k: v for k, v in out.items() if k in wanted}}
        return out


@dataclass
class AddResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    commits: int = 0
    generation: int = 0
    passages: int = 0  # vectors written (a chunked collection writes one per passage)
    truncated: int = 0  # documents longer than the model's window, embedded cut short (no chunking)

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _chunks(ids: np.ndarray | list, size: int = _IN_CHUNK) -> Iterator[list]:
    ids = [i.item() if isinstance(i, np.generic) else i for i in ids]  # numpy ints bind as blobs on SQLite
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


class Store:
    """Entry point to collections under one data directory and one metadata database."""

    def __init__(self, settings: Settings | None = None) -> None:
        from embedsearch.store.metadata import get_engine

        self.settings = settings or Settings.from_env()
        self.engine = get_engine(self.settings.db_url)
        self.dialect = self.engine.dialect.name
        self._open: dict[str, Collection] = {}
        self._lock = threading.Lock()

    def lock_path(self, name: str, kind: str = "write") -> Path:
        return self.settings.data_dir / ".locks" / f"{validate_collection_name(name)}.{kind}.lock"

    # ---- collections ------------------------------------------------------------------------
    def _fetch_row(self, name: str):
        with self.engine.connect() as conn:
            return conn.execute(select(collections).where(collections.c.name == name)).mappings().first()

    def exists(self, name: str) -> bool:
        validate_collection_name(name)
        return self._fetch_row(name) is not None

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
        searches fan out to that many Ray actors (embedsearch/cluster/shards.py)."""
        validate_collection_name(name)
        if shards != 1:
            from embedsearch.cluster.shards import check_shards

            check_shards(shards)
        if chunking is not None:
            chunking = resolve_chunking(embedder, chunking.tokens, chunking.overlap)
        spec = validate_spec(index_spec, embedder.dim)
        check_metric(metric)
        index_fields = [payload.validate_field(f) for f in index_fields]
        if len(set(index_fields)) > payload.MAX_FIELDS:
            raise InvalidArgument(f"a collection indexes at most {payload.MAX_FIELDS} fields")
        directory = self.settings.collection_dir(name)
        if self._fetch_row(name) is not None:
            raise CollectionExists(f"collection {name!r} already exists")
        with file_lock(self.lock_path(name)):
            # checked again under the lock: of two concurrent creates, the second stops here
            # before it touches the directory the first one has just filled
            if self._fetch_row(name) is not None:
                raise CollectionExists(f"collection {name!r} already exists")
            if directory.exists():  # left by a drop or create that was interrupted
                shutil.rmtree(directory)
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
                shutil.rmtree(directory, ignore_errors=True)
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
            row = self._fetch_row(name)
            if row is None:
                self._open.pop(name, None)
                raise CollectionNotFound(f"no collection named {name!r} (see `embedsearch index list`)")
            if coll is None or coll.id != row["id"]:
                coll = Collection(self, row)
                self._open[name] = coll
            return coll

    def list(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(collections).order_by(collections.c.name)).mappings().all()
        return [public_row(r) for r in rows]

    def drop(self, name: str) -> None:
        """Delete a collection's rows and its files (locks in the order store/locks.py writes
        down: a running merge finishes first, then writers in this process and in others)."""
        coll = self.open(name)
        with file_lock(self.lock_path(name, "merge")), coll.writer_lock(), file_lock(self.lock_path(name)):
            with self.engine.begin() as conn:
                for table in (payload_values, payload_fields, passages, documents, segments, tombstones, trainings):
                    conn.execute(delete(table).where(table.c.collection_id == coll.id))
                lexical.drop(conn, coll.id)
                conn.execute(delete(collections).where(collections.c.id == coll.id))
            shutil.rmtree(coll.dir, ignore_errors=True)
        with self._lock:
            self._open.pop(name, None)


def embedder_config(embedder: Embedder, chunking: Chunking | None, shards: int = 1) -> dict[str, Any]:
    """The collection's record of how it embeds and is searched: the model's settings, the
    chunking, and the number of shards when it has several."""
    config = embedder.config()
    if chunking is not None:
        config["chunking"] = chunking.to_dict()
    if shards > 1:
        config["shards"] = shards
    return config


def growing_meta(seg_id: int, row_lo: int, generation: int) -> SegmentMeta:
    return SegmentMeta(seg_id, "growing", growing_file(seg_id), "Flat", None, 0, row_lo, row_lo, 0, None, generation)


def public_row(row) -> dict[str, Any]:
    out = dict(row)
    out.pop("id", None)
    for key in ("created_at", "updated_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    return out


class Collection:
    """One collection: use :meth:`Store.open` / :meth:`Store.create` to get one."""

    def __init__(self, store: Store, row) -> None:
        self.store = store
        self.name = row["name"]
        self.id = row["id"]
        self.dir = store.settings.collection_dir(self.name)
        self.row = dict(row)
        self._view: SegmentSet | None = None
        self._rw = RWLock()
        self._writer = threading.RLock()
        self._sync_lock = threading.Lock()
        self._pinned = threading.local()  # this thread reads under the write lock (at_one_generation)
        self._selections = SelectionCache()  # filter results per (filter, generation)
        self.device: str | None = None
        vector_bytes = 4 * int(row["dim"])
        # tests and benchmarks shrink these to exercise seals and merges on small data
        self.seal_at = int(os.environ.get("EMBEDSEARCH_SEAL_AT") or max(1024, SEAL_BYTES // vector_bytes))
        self.max_segment_vectors = max(self.seal_at, MAX_SEGMENT_BYTES // vector_bytes)
        self.auto_merge = True
        self.shard: tuple[int, int] | None = None  # set in a shard actor: its view holds its segments only
        self.router = None  # a sharded collection's search fan-out (embedsearch/cluster/shards.py)

    # ---- properties -----------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.row["dim"])

    @property
    def generation(self) -> int:
        return int(self.row["generation"])

    @property
    def metric(self) -> str:
        return str(self.row["metric"])

    def info(self) -> dict[str, Any]:
        from embedsearch.store.verify import describe

        self.refresh()
        return describe(self)

    # ---- loading --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the collection row; the view catches up lazily if its generation moved."""
        row = self.store._fetch_row(self.name)
        if row is None or row["id"] != self.id:
            raise CollectionNotFound(f"collection {self.name!r} no longer exists")
        self.row = dict(row)

    def view(self) -> SegmentSet:
        """The segments of the latest commit (opening only what changed since the last call)."""
        from embedsearch.store.legacy import load_legacy_view

        with self._sync_lock:
            view = self._view
            if view is not None and view.generation == self._committed_generation():
                return view
            with self._rw.write():
                if self.is_legacy():
                    self._view = load_legacy_view(self)
                    return self._view
                if view is None or view.legacy:
                    view = SegmentSet(self.dir, self.dim, self.metric)
                    view.use_gpu = self._gpu_wanted()
                    view.shard = self.shard
                try:
                    self._view = view.sync(self.store.engine, self.id)
                except (IndexCorrupted, InconsistentCollection) as exc:
                    self._view = None
                    raise type(exc)(f"collection {self.name!r}: {exc}; run `embedsearch index repair {self.name}`") from None
            return self._view

    def _committed_generation(self) -> int:
        with self.store.engine.connect() as conn:
            return committed_generation(conn, self.id, self.name)

    def is_legacy(self) -> bool:
        """Whether the collection is still in the pre-segment single-file format."""
        with self.store.engine.connect() as conn:
            return not conn.execute(
                select(func.count()).select_from(segments).where(segments.c.collection_id == self.id)
            ).scalar()

    def _gpu_wanted(self) -> bool:
        if self.device == "cpu":
            return False
        import faiss

        return hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0

    def check_embedder(self, embedder: Embedder) -> None:
        """Refuse an embedder whose dimension or fingerprint differs from the collection's."""
        if embedder.dim != self.dim:
            raise DimensionMismatch(
                f"model {embedder.name} makes {embedder.dim}-d vectors but collection {self.name!r} is {self.dim}-d"
            )
        if embedder.fingerprint != self.row["model_fingerprint"]:
            raise FingerprintMismatch(
                f"model {embedder.name} (fingerprint {embedder.fingerprint[:12]}) is not the model collection "
                f"{self.name!r} was built with ({self.row['model']}, fingerprint {self.row['model_fingerprint'][:12]}); "
                f"use that model, or re-embed with `embedsearch index repair {self.name} --rebuild`"
            )

    @property
    def shards(self) -> int:
        """Ray actors a search fans out to (1: searched in this process)."""
        return int((self.row["embedder_config"] or {}).get("shards") or 1)

    @property
    def chunking(self) -> Chunking | None:
        """How documents are split into passages (None: one vector per document)."""
        return Chunking.from_dict((self.row["embedder_config"] or {}).get("chunking"))

    def embed_documents(self, embedder: Embedder, texts: list[str], progress: bool = False):
        """Vectors for documents' texts as this collection stores them: ``(vectors, spans,
        truncated)`` (see :func:`embedsearch.passages.embed_texts`)."""
        return embed_texts(embedder, self.chunking, texts, progress)

    @property
    def embedder_options(self) -> dict[str, Any]:
        """Options the collection's embedder was built with (word-vector pooling, OOV policy)."""
        return dict((self.row["embedder_config"] or {}).get("options") or {})

    def load_embedder(self, device: str | None = None, batch_size: int = 32, spec: str | None = None) -> Embedder:
        """Load the collection's model (or ``spec``, e.g. the same model moved elsewhere) and
        check that it is the model the collection was built with."""
        from embedsearch.embedders import load_embedder

        embedder = load_embedder(spec or self.row["model"], device=device, batch_size=batch_size, options=self.embedder_options)
        self.check_embedder(embedder)
        return embedder

    # ---- writes ---------------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[SegmentSet]:
        with self._writer, file_lock(self.store.lock_path(self.name)):
            self.refresh()
            if self.is_legacy():
                from embedsearch.store.legacy import migrate_legacy

                migrate_legacy(self)
                self.refresh()
            view = self.view()
            self._clean_leftovers(view)
            yield view

    def forget_view(self) -> None:
        """Drop the in-memory view; the next read opens the committed segments anew."""
        with self._sync_lock, self._rw.write():
            self._view = None

    def forget_selections(self) -> None:
        """Drop cached filter results (after a change to the payload index outside a commit)."""
        self._selections.clear()

    def remove_leftovers(self) -> None:
        """Remove files no commit names (callers hold the writer locks)."""
        self._clean_leftovers(self.view())

    def retrain_now(self) -> str | None:
        """Train the template the collection's spec needs now, from the stored vectors, when
        there are enough and none is live (repair dropped a damaged one); returns its spec."""
        from embedsearch.store.maintenance import retrain_template

        with file_lock(self.store.lock_path(self.name, "merge")):
            view = self.view()
            spec = target_spec(self.row["index_spec"], view.live(), self.dim)
            if view.training is not None or not spec.needs_training or view.live() < spec.min_train_points():
                return None
            retrain_template(self, view, spec)
            return spec.text

    def writer_lock(self):
        """This process's writer lock for the collection (threads); store/locks.py gives its
        place in the lock order."""
        return self._writer

    def _clean_leftovers(self, view: SegmentSet) -> None:
        """Remove what interrupted writes left: the log tail past the committed count, and
        files the segment list does not name. Merges write files without the writer lock, so
        the scan holds the merge lock throughout (and is skipped while a merge runs): a merge
        cannot start between reading the segment list and deleting what it does not name."""
        if view.growing is not None:
            truncate_log(view.growing.path, self.dim, view.growing.meta.count)
        with file_lock(self.store.lock_path(self.name, "merge"), blocking=False) as got:
            if not got:
                return
            with self.store.engine.connect() as conn:
                metas = manifest.read_segments(conn, self.id)
                keep = {f for m in metas for f in segment_files(m)}
                keep |= {t.file for t in manifest.read_trainings(conn, self.id)}
            deleter.remove_unnamed(self.dir, keep)

    def _lookup(self, conn, external_ids: list[str]) -> dict[str, tuple[int, str]]:
        found: dict[str, tuple[int, str]] = {}
        for part in _chunks(external_ids):
            rows = conn.execute(
                select(documents.c.external_id, documents.c.row_id, documents.c.content_hash).where(
                    documents.c.collection_id == self.id, documents.c.external_id.in_(part)
                )
            )
            for ext, row_id, h in rows:
                found[ext] = (int(row_id), h)
        return found

    def segment_spec(self, training: manifest.Training | None) -> str:
        """The spec a segment sealed now is built as."""
        if training is not None:
            return training.spec
        requested = self.row["index_spec"]
        if requested == "auto" or parse_spec(requested, self.dim).needs_training:
            return "Flat"  # not trained yet: exact until there is enough data
        return requested

    def _commit(
        self,
        new_docs: list[tuple[Document, str]],
        new_vectors: np.ndarray | None,
        remove_row_ids: list[int],
        *,
        tombstone_removed: bool = True,
        spans: list[list[tuple[int, int]]] | None = None,
        stored: np.ndarray | None = None,
    ) -> None:
        """Apply one batch to SQL and the segments as one generation (callers hold ``_writing``).
        ``tombstone_removed`` is off only for repair, whose removed rows have no vector (of a
        chunked collection's removed passages it then tombstones those in ``stored``, the live
        vectors the segments hold: a tombstone must name a stored vector). In a chunked
        collection ``new_vectors`` holds one vector per passage, ``spans`` each new document's
        passages (default: one spanning its text), and removing a document removes and
        tombstones all its passages."""
        view = self._view
        chunked = self.chunking is not None
        if chunked and spans is None:
            spans = [[(0, len(d.text))] for d, _ in new_docs]
        n = 0 if new_vectors is None else len(new_vectors)  # vectors
        if chunked and n != sum(len(x) for x in spans):
            raise InconsistentCollection(f"{n} vectors for {sum(len(x) for x in spans)} passages")
        if n >= self.seal_at and view.growing.meta.count:
            self._seal(view)  # keeps row-id ranges contiguous: the batch becomes the next segment
            view = self._view
        gen, first = self.generation, int(self.row["next_row_id"])
        new_gen = gen + 1
        row_ids = np.arange(first, first + n, dtype=np.int64)
        doc_ids = batch_rows.document_ids(first, n, spans if chunked else None, len(new_docs))
        g = view.growing.meta
        sealed_meta = training = None
        if n >= self.seal_at:
            training = self._maybe_train(view, new_vectors)
            seg_meta = SegmentMeta(manifest.new_id(), "sealed", "", "", None, 0, first, first + n, 0, None, new_gen)
            sealed_meta, _ = self._write_segment(seg_meta, training or view.training, row_ids, new_vectors)
        elif n:
            append_records(view.growing.path, self.dim, g.count, row_ids, new_vectors)
        crash_point("append")
        removed = np.asarray(sorted(remove_row_ids), dtype=np.int64)
        doc_count = int(self.row["doc_count"]) - len(removed) + len(new_docs)
        # the in-memory state after the commit is derived from what it recorded (store/commit.py):
        # a reader that synced in between cannot make the growing segment count the batch twice
        with commit(self) as c:
            c.values.update(next_row_id=first + n, doc_count=doc_count)
            batch_rows.apply(
                c.conn,
                self.id,
                removed=removed,
                new_docs=new_docs,
                doc_ids=doc_ids,
                row_range=(first, first + n),
                spans=spans if chunked else None,
                generation=new_gen,
                tombstone_removed=tombstone_removed,
                stored=stored,
            )
            if sealed_meta is not None:
                if training is not None:
                    manifest.insert_training(c.conn, self.id, training)
                    c.values["active_spec"] = training.spec
                manifest.insert_segment(c.conn, self.id, sealed_meta)
                manifest.update_segment(c.conn, self.id, g.seg_id, row_lo=first + n, row_hi=first + n)
            else:
                rec = record_dtype(self.dim).itemsize
                manifest.update_segment(c.conn, self.id, g.seg_id, count=g.count + n, row_hi=first + n, bytes=(g.count + n) * rec)
        view = self.view()
        if view.growing.meta.count >= self.seal_at:
            self._seal(view)

    def check_generation(self, conn, gen: int) -> None:
        """Inside a commit's transaction: lock the collection row and check that ``gen`` is still
        the committed generation (else another writer committed first)."""
        check_generation(conn, self.id, gen, self.name)

    def _write_segment(self, meta: SegmentMeta, training, ids: np.ndarray, vectors: np.ndarray):
        """Build and write a sealed segment of the collection's current spec."""
        from embedsearch.store.segments import build_index

        meta.spec = self.segment_spec(training)
        meta.file = segment_file(meta.seg_id)
        spec = parse_spec(meta.spec, self.dim)
        meta.train_id = training.train_id if spec.needs_training else None
        template = self.dir / training.file if spec.needs_training else None
        index = build_index(spec, self.dim, self.metric, template, vectors, ids)
        meta.count = int(index.ntotal)
        full = (ids, vectors) if spec.refine else None
        write_sealed(self.dir, meta, index, full)
        return meta, index

    def _seal(self, view: SegmentSet) -> None:
        """Write the growing segment as a sealed one and start a new log (one commit)."""
        g = view.growing
        gen = self.generation
        new_gen = gen + 1
        dead = view.dead_in(g)
        ids, vecs = g.all_vectors(dead)
        training = self._maybe_train(view, None)
        sealed_meta = None
        if len(ids):
            meta = SegmentMeta(manifest.new_id(), "sealed", "", "", None, 0, g.meta.row_lo, g.meta.row_hi, 0, None, new_gen)
            sealed_meta, _ = self._write_segment(meta, training or view.training, ids, vecs)
        crash_point("seal-file")
        new_growing = growing_meta(manifest.new_id(), g.meta.row_hi, new_gen)
        create_log(self.dir / new_growing.file)
        with commit(self, crash="seal-") as c:  # the view then opens the sealed file memory-mapped and the new log
            if training is not None:
                manifest.insert_training(c.conn, self.id, training)
                c.values["active_spec"] = training.spec
            if sealed_meta is not None:
                manifest.insert_segment(c.conn, self.id, sealed_meta)
            manifest.delete_segments(c.conn, self.id, [g.meta.seg_id])
            manifest.insert_segment(c.conn, self.id, new_growing)
            manifest.drop_tombstones(c.conn, self.id, dead)
            c.obsolete.append(g.meta.file)

    def _maybe_train(self, view: SegmentSet, extra: np.ndarray | None) -> manifest.Training | None:
        """Train the collection's template when its spec needs one and there is now enough
        data (returns the uncommitted training; the caller's commit records it)."""
        from embedsearch.store.maintenance import train_template

        if view.training is not None:
            return None
        n = view.live() + (len(extra) if extra is not None else 0)
        spec = target_spec(self.row["index_spec"], n, self.dim)
        if not spec.needs_training or n < spec.min_train_points():
            return None
        return train_template(self, view, spec, n, extra)

    # ---- merges ---------------------------------------------------------------------------
    def merge(self, *, force: bool = False, retrain: bool = False, wait: bool = True, progress: bool = False) -> dict[str, Any]:
        """Run the merge policy until it has nothing left to do (``force``: merge everything
        it can and purge every tombstone, as ``index optimize`` does). Searches go on while it
        runs; writers wait only for each merge's short commit."""
        from embedsearch.store.maintenance import run_merges

        with file_lock(self.store.lock_path(self.name, "merge"), blocking=wait) as got:
            if not got:
                return {"merges": [], "skipped": "another merge is running"}
            return run_merges(self, force=force, retrain=retrain, progress=progress)

    def optimize(self, *, retrain: bool = False, progress: bool = False) -> dict[str, Any]:
        """Merge segments as far as the size limit allows, purge tombstones, retrain when due."""
        self.merge(force=False, retrain=retrain, progress=progress)  # seal-independent work first
        with self._writing() as view:
            if view.growing.meta.count:
                self._seal(view)
        return self.merge(force=True, progress=progress)

    def index_fields(self) -> dict[str, int]:
        """Indexed metadata fields and their entry counts."""
        with self.store.engine.connect() as conn:
            return payload.entry_counts(conn, self.id)

    def alter_index_fields(self, add: Iterable[str] = (), drop: Iterable[str] = ()) -> dict[str, Any]:
        """Add payload indexes (every existing document is indexed, in one transaction with the
        declaration) and drop others. Search results do not change, only their cost."""
        add = [payload.validate_field(f) for f in add]
        drop = list(drop)
        with self._writing():
            with self.store.engine.begin() as conn:
                missing = payload.drop_fields(conn, self.id, drop)
                if missing:
                    raise InvalidArgument(f"not indexed: {', '.join(missing)}")
                added, written = payload.add_fields(conn, self.id, add, self.generation)
        return {"added": added, "dropped": drop, "entries_written": written, "index_fields": self.index_fields()}

    def has_lexical(self) -> bool:
        """Whether the collection has a lexical (full-text) index."""
        with self.store.engine.connect() as conn:
            return lexical.enabled(conn, self.id)

    def set_lexical(self, on: bool, *, rebuild: bool = False) -> dict[str, Any]:
        """Build (``on``), rebuild, or drop the lexical index, in one transaction; see
        store/lexical.py. Returns what changed and the documents indexed."""
        with self._writing():
            with self.store.engine.begin() as conn:
                had = lexical.enabled(conn, self.id)
                indexed = 0
                if had and (rebuild or not on):
                    lexical.drop(conn, self.id)
                if on and (rebuild or not had):
                    indexed = lexical.create(conn, self.id, self.generation)
        return {"lexical": on, "had_lexical": had, "documents_indexed": indexed}

    def _after_write(self) -> None:
        if self.auto_merge:
            self.merge(wait=False)

    def _commit_upsert(
        self,
        items: list[tuple],
        vectors: np.ndarray,
        existing: dict[str, tuple[int, str]],
        result: AddResult,
        spans: list[list[tuple[int, int]]] | None = None,
    ) -> None:
        """Commit ``(document, hash, ...)`` items as one generation: documents whose id exists
        replace their old row (and all its passages); counts go into ``result``."""
        self._commit(
            [(item[0], item[1]) for item in items],
            vectors,
            [existing[item[0].id][0] for item in items if item[0].id in existing],
            spans=spans,
        )
        result.passages += len(vectors)
        updated = sum(1 for item in items if item[0].id in existing)
        result.updated += updated
        result.added += len(items) - updated
        result.commits += 1
        result.generation = self.generation

    def add_documents(
        self,
        docs: Iterable[Document],
        embedder: Embedder,
        *,
        batch_size: int = 256,
        commit_every: int = 2048,
        progress: bool = False,
        total: int | None = None,
        on_commit: Callable[[AddResult], None] | None = None,
    ) -> AddResult:
        """Embed and add (or update) documents; unchanged ones (same content hash) are skipped.

        Every ``commit_every`` pending documents are one commit; a commit costs what it adds.
        """
        self.check_embedder(embedder)
        result = AddResult()
        bar = None
        if progress:
            import sys

            from tqdm import tqdm

            bar = tqdm(total=total, desc=f"adding to {self.name}", unit="doc", disable=None, file=sys.stderr)
        try:
            with self._writing():
                # id -> (document, hash, its vectors (one per passage), its passage spans or None)
                pending: dict[str, tuple[Document, str, np.ndarray, list | None]] = {}

                def flush(full_only: bool) -> None:
                    """Commit pending documents ``commit_every`` at a time (``full_only``: only
                    whole commits of that size; the rest waits for more documents)."""
                    while pending and (len(pending) >= commit_every or not full_only):
                        items = [pending.pop(ext) for ext in list(pending)[:commit_every]]
                        with self.store.engine.connect() as conn:
                            existing = self._lookup(conn, [item[0].id for item in items])
                        spans = None if self.chunking is None else [item[3] for item in items]
                        self._commit_upsert(items, np.vstack([item[2] for item in items]), existing, result, spans)
                        if on_commit is not None:
                            on_commit(result)

                for chunk in batched(docs, batch_size):
                    latest: dict[str, tuple[Document, str]] = {}
                    for doc in chunk:  # within a chunk the last version of an id wins
                        _check_document(doc)
                        latest[doc.id] = (doc, doc.content_hash)
                    with self.store.engine.connect() as conn:
                        existing = self._lookup(conn, [i for i in latest if i not in pending])
                    todo = []
                    for ext, (doc, h) in latest.items():
                        if ext in pending and pending[ext][1] == h:
                            result.unchanged += 1
                        elif ext not in pending and ext in existing and existing[ext][1] == h:
                            result.unchanged += 1
                        else:
                            todo.append((doc, h))
                    if todo:
                        vecs, spans, truncated = self.embed_documents(embedder, [d.text for d, _ in todo])
                        result.truncated += truncated
                        at = 0
                        for i, (doc, h) in enumerate(todo):
                            m = 1 if spans is None else len(spans[i])
                            pending[doc.id] = (doc, h, vecs[at : at + m], None if spans is None else spans[i])
                            at += m
                    if bar is not None:
                        bar.update(len(chunk))
                        bar.set_postfix(new=result.added + len(pending), unchanged=result.unchanged, refresh=False)
                    flush(full_only=True)
                flush(full_only=False)
        finally:
            if bar is not None:
                bar.close()
        result.generation = self.generation
        if result.commits:
            self._after_write()
        return result

    def add_vectors(self, docs: list[Document], vectors: np.ndarray, *, commit_every: int = 100_000) -> AddResult:
        """Add documents whose vectors were computed elsewhere (same model, same dimension).

        Upsert semantics as in :meth:`add_documents`; the caller vouches for the model.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise DimensionMismatch(f"vectors have shape {vectors.shape}; collection {self.name!r} is {self.dim}-d")
        if len(vectors) != len(docs):
            raise DimensionMismatch(f"{len(docs)} documents but {len(vectors)} vectors")
        if not np.isfinite(vectors).all():
            raise DimensionMismatch("vectors contain NaN or infinity")
        for doc in docs:
            _check_document(doc)
        latest = {d.id: i for i, d in enumerate(docs)}  # the last version of an id wins
        result = AddResult()
        with self._writing():
            order = list(latest.items())
            for start in range(0, len(order), commit_every):
                part = order[start : start + commit_every]
                with self.store.engine.connect() as conn:
                    existing = self._lookup(conn, [ext for ext, _ in part])
                todo = [(docs[i], docs[i].content_hash, i) for ext, i in part]
                changed = [(d, h, i) for d, h, i in todo if not (d.id in existing and existing[d.id][1] == h)]
                result.unchanged += len(todo) - len(changed)
                if changed:
                    self._commit_upsert(changed, vectors[[i for _, _, i in changed]], existing, result)
        result.generation = self.generation
        if result.commits:
            self._after_write()
        return result

    def delete(self, external_ids: Iterable[str]) -> tuple[int, list[str]]:
        """Delete documents by id; returns (deleted count, ids that were not found)."""
        wanted = list(dict.fromkeys(external_ids))
        with self._writing():
            with self.store.engine.connect() as conn:
                existing = self._lookup(conn, wanted)
            missing = [i for i in wanted if i not in existing]
            if existing:
                self._commit([], None, [rid for rid, _ in existing.values()])
        if existing:
            self._after_write()
        return len(existing), missing

    def delete_where(self, where: dict | str | None) -> int:
        """Delete every document matching a filter, in one commit; returns how many. ``{}``
        (and None) match every document, as in :func:`count` and MongoDB."""
        spec = parse_filter(where) or {}
        with self._writing():
            with self.store.engine.connect() as conn:
                query = select(documents.c.row_id).where(documents.c.collection_id == self.id)
                if spec:
                    scope = payload.PayloadScope(self.id, payload.field_kinds(conn, self.id))
                    query = query.where(compile_filter(spec, documents.c.meta, self.store.dialect, scope))
                row_ids = [int(r[0]) for r in conn.execute(query)]
            if row_ids:
                self._commit([], None, row_ids)
        if row_ids:
            self._after_write()
        return len(row_ids)

    # ---- reads ----------------------------------------------------------------------------
    def count(self) -> int:
        with self.store.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(documents).where(documents.c.collection_id == self.id)
            ).scalar_one()

    def matching_ids(self, where: dict | str | None) -> np.ndarray | None:
        """Row ids of documents matching a filter, sorted (None when there is no filter)."""
        sel = self.selection(where)
        return None if sel is None else sel.doc_ids

    def selection(self, where: dict | str | None, generation: int | None = None) -> Selection | None:
        """The live rows matching a filter as of ``generation`` or later (default: the latest
        commit), from the cache when a search already computed them; None without a filter."""
        spec = parse_filter(where)  # a dict is checked too (strict JSON, no lone surrogates)
        if not spec:
            return None
        if generation is None:
            generation = self._committed_generation()
        key = filter_key(spec)
        cached = self._selections.get(key, generation)
        if cached is not None:
            return cached
        with self.store.engine.connect() as conn:
            scope = payload.PayloadScope(self.id, payload.field_kinds(conn, self.id))
            cond = compile_filter(spec, documents.c.meta, self.store.dialect, scope)
            chunked = self.chunking is not None
            if chunked:  # FAISS is restricted to the passages of the matching documents
                query = passage_rows.selection_query(self.id, cond)
            else:
                query = select(documents.c.row_id).where(documents.c.collection_id == self.id, cond)
            while True:
                gen = committed_generation(conn, self.id, self.name)
                rows = np.asarray(conn.execute(query).all(), dtype=np.int64).reshape(-1, 2 if chunked else 1)
                if committed_generation(conn, self.id, self.name) == gen:
                    break  # no commit in between: the rows are those of generation gen
        ids = np.sort(rows[:, 0])
        sel = Selection(ids, gen, docs=np.unique(rows[:, 1]) if chunked else None)
        sel.bitmap()
        self._selections.put(key, sel)
        return sel

    def fetch(self, row_ids: Iterable[int], columns: Iterable[str] = hits.COLUMNS) -> dict[int, tuple[str, str, dict]]:
        """row id -> (external id, text, metadata); text or metadata None unless in ``columns``."""
        return hits.fetch_rows(self.store.engine, self.store.dialect, self.id, row_ids, columns)

    def get(self, external_id: str) -> Document | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(documents.c.external_id, documents.c.text, documents.c.meta).where(
                    documents.c.collection_id == self.id, documents.c.external_id == external_id
                )
            ).first()
        return Document(row[0], row[1], row[2]) if row else None

    def search_vectors(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        where: dict | str | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        columns: Iterable[str] = hits.COLUMNS,
    ) -> list[list[Hit]]:
        """Nearest documents for each query vector, optionally restricted by a metadata filter.

        A filtered search returns ``min(k, matching documents)`` hits: the filter selects ids
        in SQL (cached per filter and generation) and each segment's search is restricted to
        them. ``columns`` (of "text", "metadata") are read for the hits; the others are None.
        The hits are the documents as of the generation whose vectors were searched (see
        :meth:`at_one_generation`), so the k guarantee holds while others commit.
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise DimensionMismatch(f"query vectors are {queries.shape[1]}-d; collection {self.name!r} is {self.dim}-d")
        if k < 1:
            raise InvalidArgument("k must be at least 1")
        if not np.isfinite(queries).all():
            raise DimensionMismatch("query vectors contain NaN or infinity")
        return self.at_one_generation(lambda: self._search_once(queries, k, where, nprobe, ef_search, columns))

    def at_one_generation(self, read: Callable[[], Any]) -> Any:
        """Run ``read`` until it saw one generation throughout: it raises :class:`StaleRead` when
        a commit landed between its steps (the vectors it searched and the rows it then read
        belong to different generations), and is run again. Optimistic: a read costs nothing
        extra unless a commit interleaves; after ``SNAPSHOT_TRIES`` interleaved runs the read
        runs once more holding the collection's write lock, when nothing can commit, so a
        stream of commits cannot starve it."""
        if getattr(self._pinned, "on", False):  # inside the locked run below: nothing moves
            return read()
        for _ in range(SNAPSHOT_TRIES):
            try:
                return read()
            except StaleRead:
                continue
        with self._writer, file_lock(self.store.lock_path(self.name)):
            self._pinned.on = True
            try:
                return read()
            finally:
                self._pinned.on = False

    def _searcher(self):
        """The vector searcher: the shard actors on Ray for a sharded collection, else the
        view in this process. Returns (generation, live vectors, search function returning
        scores, ids and the generation it searched)."""
        if self.shards > 1 and self.shard is None:  # fans out to the shard actors on Ray
            from embedsearch.cluster.shards import router_for

            router = router_for(self)
            return router.generation(), router.live(), router.search
        view = self.view()
        generation = view.generation

        def local(*args, **kwargs):
            with self._rw.read():  # the view another thread syncs is the same object
                return (*view.search(*args, **kwargs), view.generation)

        return generation, view.live(), local

    def _search_once(self, queries, k, where, nprobe, ef_search, columns) -> list[list[Hit]]:
        generation, available, search = self._searcher()
        selection = self.selection(where, generation)
        if selection is not None and selection.generation != generation:
            raise StaleRead  # the filter saw a later commit than the vectors
        if selection is not None and not selection.count:
            return [[] for _ in range(len(queries))]

        def searcher(*args, **kwargs):
            scores, ids, searched = search(*args, **kwargs)
            if searched != generation:
                raise StaleRead
            return scores, ids

        if self.chunking is not None:
            return self._search_passages(searcher, available, queries, k, selection, nprobe, ef_search, columns)
        scores, ids = searcher(queries, k, selection=selection, nprobe=nprobe, ef_search=ef_search)
        wanted = np.unique(ids[ids >= 0])
        rows = self.fetch(wanted, columns)
        if len(rows) != len(wanted):
            raise StaleRead  # a hit's document was replaced or deleted by a later commit
        results = []
        for srow, irow in zip(scores.tolist(), ids.tolist(), strict=True):
            found = []
            for score, rid in zip(srow, irow, strict=True):
                if rid >= 0:  # -1: fewer vectors than k
                    ext, text, meta = rows[rid]
                    found.append(Hit(ext, score, text, meta, rid))
            results.append(found)
        return results

    def _search_passages(self, searcher, available, queries, k, selection, nprobe, ef_search, columns) -> list[list[Hit]]:
        """Search passages; each query's first k distinct documents, each scored by its best
        passage. Passages are fetched 4k at a time, 4 times more while some query has fewer
        than k documents and more passages remain, so the k guarantee holds."""
        available = available if selection is None else selection.count
        depth = max(1, min(max(4 * k, 16), available))
        while True:
            scores, ids = searcher(queries, depth, selection=selection, nprobe=nprobe, ef_search=ef_search)
            wanted = np.unique(ids[ids >= 0])
            where = passage_rows.lookup(self.store.engine, self.store.dialect, self.id, wanted)
            if len(where) != len(wanted):
                raise StaleRead
            grouped = passage_rows.best_per_document(scores, ids, where, k)
            if depth >= available or all(len(g) >= k for g in grouped):
                break
            depth = min(depth * 4, available)
        docs = {d for g in grouped for d, _, _, _ in g}
        rows = self.fetch(docs, columns)
        if len(rows) != len(docs):
            raise StaleRead
        results = []
        for found in grouped:
            hits_ = []
            for doc, score, a, b in found:
                row = rows[doc]
                extras = {"passage": None if row[1] is None else row[1][a:b], "start": a, "end": b}
                hits_.append(Hit(row[0], score, row[1], row[2], doc, extras))
            results.append(hits_)
        return results

    # ---- verify and repair ------------------------------------------------------------------
    def verify(self, check_model: bool = True):
        """Compare SQL and the segments: files, checksums, ids, counts, dimension, model."""
        from embedsearch.store.verify import verify

        return verify(self, check_model=check_model)

    def repair(self, embedder: Embedder | None = None, *, rebuild: bool = False, progress: bool = False) -> dict[str, Any]:
        """Make the segments agree with SQL, re-embedding stored text where vectors are missing.

        ``rebuild`` re-embeds every document (with ``embedder``, whose fingerprint then
        becomes the collection's); otherwise only the difference is fixed.
        """
        from embedsearch.store.repair import repair

        return repair(self, embedder, rebuild=rebuild, progress=progress)


def _check_document(doc: Document) -> None:
    """Refuse what SQL cannot hold faithfully before anything is written."""
    from embedsearch.corpus import metadata_problem

    if not isinstance(doc.metadata, dict):
        raise InvalidArgument(f"document {doc.id!r}: metadata must be a JSON object")
    problem = metadata_problem(doc.metadata) or metadata_problem(doc.text, "the text") or metadata_problem(doc.id, "the id")
    if problem:
        raise InvalidArgument(f"document {doc.id!r}: metadata must be strict JSON: {problem}")

