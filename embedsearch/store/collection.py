"""A collection: SQL rows and one FAISS file, kept consistent.

How a write stays consistent (and survives ``kill -9``):

1. Writers are serialised per collection by a lock file (processes) and a lock (threads).
2. A batch opens one SQL transaction, changes the document rows and the collection row
   (generation g -> g+1), applies the same change to the in-memory index and writes it to
   ``vectors-<g+1>.faiss`` (temp file, fsync, rename), and only then commits.
3. After the commit the older file is deleted.

A crash before the commit leaves SQL at g and ``vectors-<g>.faiss`` untouched (a stray g+1
file is ignored and later removed); a crash after it leaves g+1 in both. Opening a collection
loads exactly the file of the committed generation and checks it against SQL.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update

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
from embedsearch.store.filters import compile_filter, parse_filter
from embedsearch.store.metadata import collections, documents, get_engine
from embedsearch.store.vectors import VectorIndex, validate_spec

_FILE_RE = re.compile(r"^vectors-(\d{12})\.faiss$")
_IN_CHUNK = 500  # ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits


@dataclass
class Hit:
    """One search result."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any]
    row_id: int

    def to_dict(self, fields: Iterable[str] | None = None) -> dict[str, Any]:
        out = {"id": self.id, "score": round(float(self.score), 6), "text": self.text, "metadata": self.metadata}
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

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class VerifyReport:
    name: str
    ok: bool
    generation: int
    sql_count: int
    faiss_count: int | None
    problems: list[str] = field(default_factory=list)
    needs_rebuild: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RWLock:
    """Many readers or one writer (threads). Searches read; commits write."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _chunks(ids: np.ndarray | list, size: int = _IN_CHUNK) -> Iterator[list]:
    ids = list(ids)
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


class Store:
    """Entry point to collections under one data directory and one metadata database."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.engine = get_engine(self.settings.db_url)
        self.dialect = self.engine.dialect.name
        self._open: dict[str, Collection] = {}
        self._lock = threading.Lock()

    # ---- collections ------------------------------------------------------------------------
    def _fetch_row(self, name: str):
        with self.engine.connect() as conn:
            return conn.execute(select(collections).where(collections.c.name == name)).mappings().first()

    def exists(self, name: str) -> bool:
        validate_collection_name(name)
        return self._fetch_row(name) is not None

    def create(self, name: str, embedder: Embedder, index_spec: str = "auto", metric: str = "cosine") -> Collection:
        """Create an empty collection pinned to ``embedder``'s fingerprint and dimension."""
        validate_collection_name(name)
        spec = validate_spec(index_spec, embedder.dim)
        directory = self.settings.collection_dir(name)
        if self._fetch_row(name) is not None:
            raise CollectionExists(f"collection {name!r} already exists")
        vectors = VectorIndex(embedder.dim, spec, metric)
        with _file_lock(directory / ".lock"):
            for stale in directory.glob("vectors-*.faiss"):  # left by a drop that was interrupted
                stale.unlink()
            path = directory / _vector_file(1)
            vectors.save(path, 1)
            now = _now()
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(collections).values(
                            name=name,
                            model=embedder.spec,
                            model_fingerprint=embedder.fingerprint,
                            embedder_config=embedder.config(),
                            dim=embedder.dim,
                            metric=metric,
                            index_spec=spec,
                            active_spec=vectors.active_spec,
                            generation=1,
                            next_row_id=0,
                            doc_count=0,
                            created_at=now,
                            updated_at=now,
                        )
                    )
            except Exception as exc:
                path.unlink(missing_ok=True)
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
        return [_public_row(r) for r in rows]

    def drop(self, name: str) -> None:
        """Delete a collection's rows and its files."""
        coll = self.open(name)
        with coll._rw.write(), _file_lock(coll.dir / ".lock"):
            with self.engine.begin() as conn:
                conn.execute(delete(documents).where(documents.c.collection_id == coll.id))
                conn.execute(delete(collections).where(collections.c.id == coll.id))
        with self._lock:
            self._open.pop(name, None)
        shutil.rmtree(coll.dir, ignore_errors=True)


def _vector_file(generation: int) -> str:
    return f"vectors-{generation:012d}.faiss"


def _public_row(row) -> dict[str, Any]:
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
        self._vectors: VectorIndex | None = None
        self._loaded_generation: int | None = None
        self._rw = RWLock()
        self._writer = threading.RLock()
        self.device: str | None = None

    # ---- properties -----------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.row["dim"])

    @property
    def generation(self) -> int:
        return int(self.row["generation"])

    def info(self) -> dict[str, Any]:
        self.refresh()
        out = _public_row(self.row)
        out["path"] = str(self.dir)
        try:
            vi = self.vectors()
            out["faiss_count"] = vi.ntotal
            out["tombstones"] = len(vi.tombstones)
            out["pending"] = vi.pending
            out["index_bytes"] = (self.dir / _vector_file(self.generation)).stat().st_size
        except (IndexCorrupted, InconsistentCollection) as exc:
            out["error"] = str(exc)
        return out

    # ---- loading --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the collection row; the vectors reload lazily if its generation moved."""
        row = self.store._fetch_row(self.name)
        if row is None or row["id"] != self.id:
            raise CollectionNotFound(f"collection {self.name!r} no longer exists")
        self.row = dict(row)

    def vectors(self) -> VectorIndex:
        """The FAISS index of the committed generation, checked against SQL."""
        try:
            return self._load_vectors()
        except InconsistentCollection:
            # another process may have committed (and removed our file) since we read the row
            before = self.generation
            self.refresh()
            if self.generation == before:
                raise
            return self._load_vectors()

    def _load_vectors(self) -> VectorIndex:
        gen = self.generation
        if self._vectors is not None and self._loaded_generation == gen:
            return self._vectors
        path = self.dir / _vector_file(gen)
        hint = f"; run `embedsearch index repair {self.name}`"
        if not path.exists():
            raise InconsistentCollection(f"collection {self.name!r}: vector file for generation {gen} is missing{hint}")
        try:
            vi, header = VectorIndex.load(path)
        except IndexCorrupted as exc:
            raise IndexCorrupted(f"collection {self.name!r}: {exc}{hint}") from None
        if header["generation"] != gen:
            raise InconsistentCollection(
                f"collection {self.name!r}: vector file generation {header['generation']} != SQL generation {gen}{hint}"
            )
        if vi.dim != self.dim:
            raise InconsistentCollection(f"collection {self.name!r}: vector dimension {vi.dim} != SQL dimension {self.dim}{hint}")
        if vi.ntotal != self.row["doc_count"]:
            raise InconsistentCollection(
                f"collection {self.name!r}: {vi.ntotal} vectors but {self.row['doc_count']} documents{hint}"
            )
        vi.enable_gpu(self.device)
        self._vectors, self._loaded_generation = vi, gen
        return vi

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
    def _writing(self) -> Iterator[None]:
        with self._writer, _file_lock(self.dir / ".lock"):
            self.refresh()
            self._remove_stray_files()
            yield

    def _remove_stray_files(self) -> None:
        """Delete vector files of generations other than the committed one (crash leftovers)."""
        for p in self.dir.iterdir():
            m = _FILE_RE.match(p.name)
            if (m and int(m.group(1)) != self.generation) or p.name.startswith(".vectors-"):
                p.unlink(missing_ok=True)

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

    def _commit(
        self,
        new_docs: list[tuple[Document, str]],
        new_vectors: np.ndarray | None,
        remove_row_ids: list[int],
        vectors: VectorIndex | None = None,
        extra_values: dict[str, Any] | None = None,
    ) -> None:
        """Apply one batch to SQL and FAISS as one generation (callers hold ``_writing``)."""
        vi = vectors if vectors is not None else self.vectors()
        gen = self.generation
        new_gen = gen + 1
        first = int(self.row["next_row_id"])
        row_ids = np.arange(first, first + len(new_docs), dtype=np.int64)
        path = self.dir / _vector_file(new_gen)
        with self._rw.write():
            try:
                with self.store.engine.begin() as conn:
                    current = conn.execute(
                        select(collections.c.generation).where(collections.c.id == self.id).with_for_update()
                    ).scalar_one()
                    if current != gen:
                        raise InconsistentCollection(f"collection {self.name!r} changed underneath this writer")
                    for part in _chunks(remove_row_ids):
                        conn.execute(delete(documents).where(documents.c.collection_id == self.id, documents.c.row_id.in_(part)))
                    if new_docs:
                        conn.execute(
                            insert(documents),
                            [
                                {
                                    "collection_id": self.id,
                                    "row_id": int(rid),
                                    "external_id": doc.id,
                                    "text": doc.text,
                                    "meta": doc.metadata,
                                    "content_hash": h,
                                }
                                for rid, (doc, h) in zip(row_ids, new_docs, strict=True)
                            ],
                        )
                    if remove_row_ids:
                        vi.remove(np.asarray(remove_row_ids, dtype=np.int64))
                    if new_docs:
                        vi.add(new_vectors, row_ids)
                    values = {
                        "generation": new_gen,
                        "next_row_id": first + len(new_docs),
                        "doc_count": vi.ntotal,
                        "active_spec": vi.active_spec,
                        "updated_at": _now(),
                        **(extra_values or {}),
                    }
                    conn.execute(update(collections).where(collections.c.id == self.id).values(**values))
                    vi.save(path, new_gen)
                    if os.environ.get("EMBEDSEARCH_TEST_CRASH_BEFORE_COMMIT"):  # crash-consistency tests only
                        os._exit(17)
            except BaseException:
                # the in-memory index may hold the uncommitted batch: forget it, the committed file is intact
                self._vectors = None
                self._loaded_generation = None
                path.unlink(missing_ok=True)
                raise
            self.row.update(values)
            self._vectors, self._loaded_generation = vi, new_gen
        old = self.dir / _vector_file(gen)
        old.unlink(missing_ok=True)

    def _commit_upsert(
        self, items: list[tuple], vectors: np.ndarray, existing: dict[str, tuple[int, str]], result: AddResult
    ) -> None:
        """Commit ``(document, hash, ...)`` items as one generation: documents whose id exists
        replace their old row; counts go into ``result``."""
        self._commit(
            [(item[0], item[1]) for item in items],
            vectors,
            [existing[item[0].id][0] for item in items if item[0].id in existing],
        )
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

        Batches commit every ``commit_every`` pending documents, or every quarter of the
        collection once it is large, so that rewriting the index file never dominates.
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
                self.vectors()  # fail early on an inconsistent collection
                pending: dict[str, tuple[Document, str, np.ndarray]] = {}

                def flush() -> None:
                    if not pending:
                        return
                    with self.store.engine.connect() as conn:
                        existing = self._lookup(conn, list(pending))
                    items = list(pending.values())
                    self._commit_upsert(items, np.vstack([v for _, _, v in items]), existing, result)
                    pending.clear()
                    if on_commit is not None:
                        on_commit(result)

                for chunk in batched(docs, batch_size):
                    latest: dict[str, tuple[Document, str]] = {}
                    for doc in chunk:  # within a chunk the last version of an id wins
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
                        vecs = embedder.embed([d.text for d, _ in todo])
                        for (doc, h), v in zip(todo, vecs, strict=True):
                            pending[doc.id] = (doc, h, v)
                    if bar is not None:
                        bar.update(len(chunk))
                        bar.set_postfix(new=result.added + len(pending), unchanged=result.unchanged, refresh=False)
                    if len(pending) >= max(commit_every, int(self.row["doc_count"]) // 4):
                        flush()
                flush()
        finally:
            if bar is not None:
                bar.close()
        result.generation = self.generation
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
        latest = {d.id: i for i, d in enumerate(docs)}  # the last version of an id wins
        result = AddResult()
        with self._writing():
            self.vectors()
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
        return result

    def delete(self, external_ids: Iterable[str]) -> tuple[int, list[str]]:
        """Delete documents by id; returns (deleted count, ids that were not found)."""
        wanted = list(dict.fromkeys(external_ids))
        with self._writing():
            self.vectors()
            with self.store.engine.connect() as conn:
                existing = self._lookup(conn, wanted)
            missing = [i for i in wanted if i not in existing]
            if existing:
                self._commit([], None, [rid for rid, _ in existing.values()])
        return len(existing), missing

    # ---- reads ----------------------------------------------------------------------------
    def count(self) -> int:
        with self.store.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(documents).where(documents.c.collection_id == self.id)
            ).scalar_one()

    def matching_ids(self, where: dict | str | None) -> np.ndarray | None:
        """Row ids of documents matching a filter (None when there is no filter)."""
        spec = parse_filter(where)
        if not spec:
            return None
        cond = compile_filter(spec, documents.c.meta, self.store.dialect)
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(documents.c.row_id).where(documents.c.collection_id == self.id, cond))
            return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def fetch(self, row_ids: Iterable[int]) -> dict[int, tuple[str, str, dict]]:
        """row id -> (external id, text, metadata)."""
        out: dict[int, tuple[str, str, dict]] = {}
        ids = [int(i) for i in row_ids]
        with self.store.engine.connect() as conn:
            for part in _chunks(ids, 900):
                q = select(documents.c.row_id, documents.c.external_id, documents.c.text, documents.c.meta).where(
                    documents.c.collection_id == self.id, documents.c.row_id.in_(part)
                )
                for rid, ext, text, meta in conn.execute(q):
                    out[int(rid)] = (ext, text, meta)
        return out

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
    ) -> list[list[Hit]]:
        """Nearest documents for each query vector, optionally restricted by a metadata filter.

        A filtered search returns ``min(k, matching documents)`` hits: the filter selects ids
        in SQL first and the vector search is restricted to them (exactly, when they are few).
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise DimensionMismatch(f"query vectors are {queries.shape[1]}-d; collection {self.name!r} is {self.dim}-d")
        if k < 1:
            raise InvalidArgument("k must be at least 1")
        allowed = self.matching_ids(where)
        self.refresh()
        with self._rw.read():
            vi = self.vectors()
            if allowed is not None and not len(allowed):
                return [[] for _ in range(len(queries))]
            scores, ids = vi.search(queries, k, allowed=allowed, nprobe=nprobe, ef_search=ef_search)
        rows = self.fetch(np.unique(ids[ids >= 0]))
        results = []
        for srow, irow in zip(scores, ids, strict=True):
            hits = []
            for s, rid in zip(srow, irow, strict=True):
                if rid < 0 or int(rid) not in rows:
                    continue
                ext, text, meta = rows[int(rid)]
                hits.append(Hit(ext, float(s), text, meta, int(rid)))
            results.append(hits)
        return results

    # ---- verify and repair ------------------------------------------------------------------
    def _sql_ids(self) -> np.ndarray:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(documents.c.row_id).where(documents.c.collection_id == self.id))
            return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def verify(self, check_model: bool = True) -> VerifyReport:
        """Compare SQL and FAISS: generation, file integrity, ids, counts, dimension, model."""
        self.refresh()
        sql_ids = self._sql_ids()
        report = VerifyReport(self.name, True, self.generation, len(sql_ids), None)
        path = self.dir / _vector_file(self.generation)
        vi = None
        if not path.exists():
            report.problems.append(f"vector file for generation {self.generation} is missing")
            report.needs_rebuild = True
        else:
            try:
                vi, header = VectorIndex.load(path)
                if header["generation"] != self.generation:
                    report.problems.append(f"vector file says generation {header['generation']}, SQL says {self.generation}")
                if vi.dim != self.dim:
                    report.problems.append(f"vector dimension {vi.dim} != collection dimension {self.dim}")
                    report.needs_rebuild = True
            except IndexCorrupted as exc:
                report.problems.append(str(exc))
                report.needs_rebuild = True
                vi = None
        if vi is not None and not report.needs_rebuild:
            faiss_ids = vi.ids()
            report.faiss_count = len(faiss_ids)
            only_sql = np.setdiff1d(sql_ids, faiss_ids)
            only_faiss = np.setdiff1d(faiss_ids, sql_ids)
            if len(only_sql):
                report.problems.append(f"{len(only_sql)} documents have no vector (row ids {_preview(only_sql)})")
            if len(only_faiss):
                report.problems.append(f"{len(only_faiss)} vectors have no document (row ids {_preview(only_faiss)})")
        if self.row["doc_count"] != len(sql_ids):
            report.problems.append(f"collection row says {self.row['doc_count']} documents, SQL holds {len(sql_ids)}")
        stray = sorted(p.name for p in self.dir.glob("vectors-*.faiss") if p.name != path.name)
        if stray:
            report.problems.append(f"stray vector files from interrupted writes: {', '.join(stray)}")
        if check_model:
            from embedsearch.embedders import model_fingerprint

            try:
                fp = model_fingerprint(self.row["model"], self.embedder_options)
                if fp != self.row["model_fingerprint"]:
                    report.problems.append(
                        f"model {self.row['model']} changed on disk "
                        f"(fingerprint {fp[:12]} != {self.row['model_fingerprint'][:12]})"
                    )
            except Exception as exc:  # the model may be gone; that is a finding, not a crash
                report.problems.append(f"model {self.row['model']} cannot be checked: {exc}")
        report.ok = not report.problems
        return report

    def repair(self, embedder: Embedder | None = None, *, rebuild: bool = False, progress: bool = False) -> dict[str, Any]:
        """Make FAISS agree with SQL, re-embedding stored text where vectors are missing.

        ``rebuild`` re-embeds every document (with ``embedder``, whose fingerprint then
        becomes the collection's); otherwise only the difference is fixed.
        """
        actions: list[str] = []
        with self._writer, _file_lock(self.dir / ".lock"):
            self.refresh()
            report = self.verify(check_model=False)
            self._remove_stray_files()
            if not rebuild and not report.needs_rebuild and not report.problems:
                return {"repaired": False, "actions": ["nothing to repair"]}
            if embedder is None:
                from embedsearch.embedders import load_embedder

                embedder = load_embedder(self.row["model"], options=self.embedder_options)
            if not rebuild:
                # partial repairs mix old and new vectors, so they need the very same model
                self.check_embedder(embedder)
            sql_ids = self._sql_ids()
            if rebuild or report.needs_rebuild:
                vi = VectorIndex(embedder.dim, self.row["index_spec"], self.row["metric"])
                todo = sql_ids
                actions.append(f"rebuilt the index from the stored text of {len(sql_ids)} documents")
            else:
                vi, _ = VectorIndex.load(self.dir / _vector_file(self.generation))
                faiss_ids = vi.ids()
                stale = np.setdiff1d(faiss_ids, sql_ids)
                if len(stale):
                    vi.remove(stale)
                    actions.append(f"removed {len(stale)} vectors without documents")
                todo = np.setdiff1d(sql_ids, faiss_ids)
                if len(todo):
                    actions.append(f"re-embedded {len(todo)} documents without vectors")
            for part in _chunks(todo, 1024):
                rows = self.fetch(part)
                texts = [rows[i][1] for i in part]
                vi.add(embedder.embed(texts, progress=progress), np.asarray(part, dtype=np.int64))
            extra = {}
            if rebuild or report.needs_rebuild:
                extra = {
                    "model": embedder.spec,
                    "model_fingerprint": embedder.fingerprint,
                    "embedder_config": embedder.config(),
                    "dim": embedder.dim,
                }
            self._commit([], None, [], vectors=vi, extra_values=extra)
            if not actions:
                actions.append("rewrote the index file and the collection row")
        return {"repaired": True, "actions": actions, "generation": self.generation}


def _preview(ids: np.ndarray, n: int = 5) -> str:
    head = ", ".join(str(int(i)) for i in ids[:n])
    return head + (", ..." if len(ids) > n else "")
