"""A collection's reads: counts, documents by row id or id, filter selections, and vector
searches that see one generation for vectors and rows (:meth:`CollectionReads.at_one_generation`).

Part of :class:`embedsearch.store.collection.Collection` (a mixin: the state lives there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select

from embedsearch.corpus import Document
from embedsearch.errors import (
    DimensionMismatch,
    InvalidArgument,
)
from embedsearch.store import hits, passage_rows, payload
from embedsearch.store.filters import compile_filter, parse_filter
from embedsearch.store.locks import file_lock
from embedsearch.store.metadata import (
    documents,
)
from embedsearch.store.selection import Selection, filter_key
from embedsearch.store.timings import Stopwatch
from embedsearch.store.view import committed_generation

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


class CollectionReads:
    """Reads of a collection (mixed into Collection)."""

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
            generation = self.committed_generation()
        key = filter_key(spec)
        cached = self._selections.get(key, generation)
        if cached is not None:
            return cached
        with self.store.engine.connect() as conn:
            cond = self.filter_condition(conn, spec)
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

    def filter_condition(self, conn, spec: dict):
        """A parsed filter as a SQL condition on this collection's documents (conditions on
        indexed fields use the payload index)."""
        scope = payload.PayloadScope(self.id, payload.field_kinds(conn, self.id))
        return compile_filter(spec, documents.c.meta, self.store.dialect, scope)

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
        timings: dict[str, float] | None = None,
    ) -> list[list[Hit]]:
        """Nearest documents for each query vector, optionally restricted by a metadata filter.

        A filtered search returns ``min(k, matching documents)`` hits: the filter selects ids
        in SQL (cached per filter and generation) and each segment's search is restricted to
        them. ``columns`` (of "text", "metadata") are read for the hits; the others are None.
        The hits are the documents as of the generation whose vectors were searched (see
        :meth:`at_one_generation`), so the k guarantee holds while others commit.
        ``timings``: a dict the seconds of each stage (view, filter, dense, passages, rows) are
        added to (store/timings.py).
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise DimensionMismatch(f"query vectors are {queries.shape[1]}-d; collection {self.name!r} is {self.dim}-d")
        if k < 1:
            raise InvalidArgument("k must be at least 1")
        if not np.isfinite(queries).all():
            raise DimensionMismatch("query vectors contain NaN or infinity")
        return self.at_one_generation(lambda: self._search_once(queries, k, where, nprobe, ef_search, columns, timings))

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
        """The vector searcher (store/searcher.py): the store's for a sharded collection when it
        is wired to a cluster, else the view in this process. Returns (generation, live vectors, search function returning
        scores, ids and the generation it searched)."""
        remote = self.store.searcher_for(self)  # a sharded collection on a store wired to a cluster
        if remote is not None:
            return remote.generation(), remote.live(), remote.search
        view = self.view()
        generation = view.generation

        def local(*args, **kwargs):
            with self._rw.read():  # the view another thread syncs is the same object
                return (*view.search(*args, **kwargs), view.generation)

        return generation, view.live(), local

    def _search_once(self, queries, k, where, nprobe, ef_search, columns, timings=None) -> list[list[Hit]]:
        clock = Stopwatch(timings)
        generation, available, search = self._searcher()
        clock.lap("view")
        selection = self.selection(where, generation)
        clock.lap("filter")
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
            return self._search_passages(searcher, available, queries, k, selection, nprobe, ef_search, columns, clock)
        scores, ids = searcher(queries, k, selection=selection, nprobe=nprobe, ef_search=ef_search)
        clock.lap("dense")
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
        clock.lap("rows")
        return results

    def _search_passages(
        self, searcher, available, queries, k, selection, nprobe, ef_search, columns, clock: Stopwatch
    ) -> list[list[Hit]]:
        """Search passages; each query's first k distinct documents, each scored by its best
        passage. Passages are fetched 4k at a time, 4 times more while some query has fewer
        than k documents and more passages remain, so the k guarantee holds."""
        available = available if selection is None else selection.count
        depth = max(1, min(max(4 * k, 16), available))
        while True:
            scores, ids = searcher(queries, depth, selection=selection, nprobe=nprobe, ef_search=ef_search)
            clock.lap("dense")
            wanted = np.unique(ids[ids >= 0])
            where = passage_rows.lookup(self.store.engine, self.store.dialect, self.id, wanted)
            if len(where) != len(wanted):
                raise StaleRead
            grouped = passage_rows.best_per_document(scores, ids, where, k)
            clock.lap("passages")
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
        clock.lap("rows")
        return results
