"""A collection's writes: adding, updating and deleting documents as commits, sealing the
growing segment, and the writer's leftover clean-up.

How a write stays consistent (and survives ``kill -9``):

1. Writers are serialised per collection by a lock file (processes) and a lock (threads), in
   the order store/locks.py writes down.
2. A batch appends its vectors to the growing segment's log at the committed end and fsyncs
   (a batch of a seal's size or more is written as a sealed segment file instead), then one
   commit (store/commit.py) changes the document rows (store/batch_rows.py), records
   tombstones for the rows it replaced or deleted, updates the segment list and bumps the
   generation.
3. When the growing segment reaches the seal size it is written as a sealed segment (temp
   file, fsync, rename) and one commit swaps it into the segment list.
4. Merges (``store/maintenance.py``) build their segment without holding the writer lock, and
   swap it in with one short commit.

A crash before a commit leaves the old state: log bytes past the committed count are ignored,
and files the segment list does not name are leftovers that the next writer removes
(store/deleter.py). A crash after it leaves the new state. See ``indexes/README.md`` for the
files. Part of :class:`embedsearch.store.collection.Collection` (a mixin).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from embedsearch.corpus import Document, batched
from embedsearch.embedders.base import Embedder
from embedsearch.errors import (
    DimensionMismatch,
    InvalidArgument,
    disk_full_reason,
)
from embedsearch.store import deleter, manifest, space
from embedsearch.store.filters import parse_filter
from embedsearch.store.growing import truncate_log
from embedsearch.store.locks import file_lock
from embedsearch.store.metadata import (
    documents,
)
from embedsearch.store.segment_files import segment_files
from embedsearch.store.view import SegmentSet

log = logging.getLogger("embedsearch.store")

_IN_CHUNK = 500  # ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits


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


def _chunks(ids: np.ndarray | list, size: int = _IN_CHUNK) -> Iterator[list]:
    ids = [i.item() if isinstance(i, np.generic) else i for i in ids]  # numpy ints bind as blobs on SQLite
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, then raise it: a commit and the caller's
    record of it (``on_commit``) happen together, so what an interrupted command reports as
    committed is exactly what is. Only in the main thread (where Python delivers signals)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if caught:
            raise KeyboardInterrupt


class CollectionWrites:
    """Writes of a collection (mixed into Collection)."""

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
            space.ensure_reserve(self.store.settings.data_dir)  # adds stop short of the space deletes need
            try:
                yield view
            except BaseException as exc:
                self._give_back(exc)
                raise

    def _give_back(self, failure: BaseException) -> None:
        """After a failed write: drop what it wrote that no commit names (the log's tail, a new
        segment's files); after a full disk also give SQLite's WAL back as far as the disk allows
        (the reserve stays: it is for deletes, store/space.py)."""
        try:
            self.refresh()
            self._clean_leftovers(self.view())
        except Exception as exc:  # noqa: BLE001 - the next writer cleans up; the write's own error is the one to report
            log.debug("clean-up after a failed write left for the next writer: %s", exc)
        if disk_full_reason(failure) is not None:
            space.checkpoint(self.store.engine)

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
            from embedsearch.progress import bar as progress_bar

            bar = progress_bar(total, f"adding to {self.name}", "doc", leave=True)
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
                        with interrupts_deferred():  # a commit and its count are reported together
                            self._commit_upsert(items, np.vstack([item[2] for item in items]), existing, result, spans)
                            if on_commit is not None:
                                on_commit(result)

                for chunk in batched(docs, batch_size):
                    latest: dict[str, tuple[Document, str]] = {}
                    for doc in chunk:  # within a chunk the last version of an id wins
                        check_document(doc)
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
            check_document(doc)
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

    def add_embedded(
        self, docs: Iterable[Document], embed: Callable[[list[str]], tuple[np.ndarray, list | None, int]]
    ) -> AddResult:
        """Add (or update) documents whose vectors are computed elsewhere (a Ray cluster), in one
        commit: under the writer lock, unchanged documents are skipped, ``embed`` gets the texts
        of the rest and returns what :meth:`embed_documents` would (vectors, each document's
        passage spans or None, how many were cut short), and one commit adds them, so a failed
        ``embed`` changes nothing. The caller vouches that ``embed`` uses the collection's model."""
        latest: dict[str, Document] = {}
        for doc in docs:  # the last version of an id wins, as in add_documents
            check_document(doc)
            latest[doc.id] = doc
        result = AddResult()
        with self._writing():
            with self.store.engine.connect() as conn:
                existing = self._lookup(conn, list(latest))
            todo = []
            for doc in latest.values():
                h = doc.content_hash
                if doc.id in existing and existing[doc.id][1] == h:
                    result.unchanged += 1
                else:
                    todo.append((doc, h))
            if todo:
                vectors, spans, truncated = embed([d.text for d, _ in todo])
                vectors = np.asarray(vectors, dtype=np.float32)
                if vectors.ndim != 2 or vectors.shape[1] != self.dim or not np.isfinite(vectors).all():
                    raise DimensionMismatch(
                        f"embedded vectors have shape {vectors.shape}; collection {self.name!r} is {self.dim}-d"
                    )
                result.truncated = truncated
                self._commit_upsert(todo, vectors, existing, result, spans)
        result.generation = self.generation
        if result.commits:
            self._after_write()
        return result

    @space.frees_space(lambda coll: coll.store)
    def delete(self, external_ids: Iterable[str]) -> tuple[int, list[str]]:
        """Delete documents by id; returns (deleted count, ids that were not found)."""
        wanted = list(dict.fromkeys(external_ids))
        with self._writing():
            with self.store.engine.connect() as conn:
                existing = self._lookup(conn, wanted)
            missing = [i for i in wanted if i not in existing]
            if existing:
                self._commit_removal([rid for rid, _ in existing.values()])
        if existing:
            self._after_write()
        return len(existing), missing

    def _commit_removal(self, row_ids: list[int]) -> None:
        """Remove rows in one commit; on a full disk's reserve (store/space.py) in commits of
        :data:`space.EMERGENCY_CHUNK`, each checkpointed, so the WAL stays small."""
        if not space.on_reserve():
            self._commit([], None, row_ids)
            return
        for part in batched(row_ids, space.EMERGENCY_CHUNK):
            self._commit([], None, list(part))
            space.checkpoint(self.store.engine, mode="PASSIVE")

    @space.frees_space(lambda coll: coll.store)
    def delete_where(self, where: dict | str | None) -> int:
        """Delete every document matching a filter, in one commit; returns how many. ``{}``
        (and None) match every document, as in :func:`count` and MongoDB."""
        spec = parse_filter(where) or {}
        with self._writing():
            with self.store.engine.connect() as conn:
                query = select(documents.c.row_id).where(documents.c.collection_id == self.id)
                if spec:
                    query = query.where(self.filter_condition(conn, spec))
                row_ids = [int(r[0]) for r in conn.execute(query)]
            if row_ids:
                self._commit_removal(row_ids)
        if row_ids:
            self._after_write()
        return len(row_ids)


def check_document(doc: Document) -> None:
    """Refuse what SQL cannot hold faithfully before anything is written."""
    from embedsearch.corpus import metadata_problem

    if not isinstance(doc.metadata, dict):
        raise InvalidArgument(f"document {doc.id!r}: metadata must be a JSON object")
    problem = metadata_problem(doc.metadata) or metadata_problem(doc.text, "the text") or metadata_problem(doc.id, "the id")
    if problem:
        raise InvalidArgument(f"document {doc.id!r}: metadata must be strict JSON: {problem}")
