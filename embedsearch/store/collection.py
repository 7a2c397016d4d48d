"""A collection: SQL rows plus a list of segments, kept consistent; the facade over its reads
(store/reading.py), writes (store/writing.py), merges (store/maintenance.py), verify and
repair (store/verify.py, store/repair.py). Open one through :class:`embedsearch.store.Store`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from embedsearch.embedders.base import Embedder
from embedsearch.errors import (
    CollectionNotFound,
    DimensionMismatch,
    FingerprintMismatch,
    InconsistentCollection,
    IndexCorrupted,
    InvalidArgument,
)
from embedsearch.passages import Chunking, embed_texts
from embedsearch.store import lexical, manifest, payload, search_settings, space
from embedsearch.store.locks import RWLock, file_lock
from embedsearch.store.reading import CollectionReads, StaleRead
from embedsearch.store.sealing import CollectionSealing
from embedsearch.store.selection import SelectionCache
from embedsearch.store.specs import target_spec
from embedsearch.store.view import SegmentSet, committed_generation
from embedsearch.store.writing import AddResult, CollectionWrites

SEAL_BYTES = 32 << 20  # the growing segment is sealed once its vectors take this much
MAX_SEGMENT_BYTES = 2 << 30  # merges stop growing a segment past this (bounds a merge's memory)

if TYPE_CHECKING:
    from pathlib import Path

    from embedsearch.store.catalog import Store

__all__ = ["AddResult", "Collection", "StaleRead"]


class Collection(CollectionReads, CollectionWrites, CollectionSealing):
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

    @property
    def doc_count(self) -> int:
        """Documents as of the last commit this object saw (``count()`` asks SQL)."""
        return int(self.row["doc_count"])

    @property
    def model(self) -> str:
        """The model spec the collection was built with."""
        return str(self.row["model"])

    @property
    def model_fingerprint(self) -> str:
        """The fingerprint of the model's weights and config the collection is pinned to."""
        return str(self.row["model_fingerprint"])

    @property
    def active_spec(self) -> str:
        """The index spec new segments are built as now (``auto`` resolves over time)."""
        return str(self.row["active_spec"])

    @property
    def embedder_config(self) -> dict[str, Any]:
        """How the collection embeds: the model's settings, chunking, shards."""
        return dict(self.row["embedder_config"] or {})

    def info(self) -> dict[str, Any]:
        from embedsearch.store.verify import describe

        self.refresh()
        return describe(self)

    # ---- loading --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the collection row; the view catches up lazily if its generation moved."""
        row = self.store.fetch_row(self.name)
        if row is None or row["id"] != self.id:
            raise CollectionNotFound(f"collection {self.name!r} no longer exists")
        self.row = dict(row)

    def view(self, known: manifest.CommittedState | None = None) -> SegmentSet:
        """The segments of the latest commit (opening only what changed since the last call).
        ``known``: what a commit of this process just recorded (store/commit.py), which brings
        a view at the generation before it up to date without reading SQL again."""
        from embedsearch.store.legacy import load_legacy_view

        with self._sync_lock:
            view = self._view
            if known is not None and view is not None and not view.legacy and view.generation == known.generation - 1:
                with self._rw.write():
                    self._view = view.sync(self.store.engine, self.id, known)
                return self._view
            if view is not None and view.generation == self.committed_generation():
                return view
            with self._rw.write():
                if self.is_legacy():
                    self._view = load_legacy_view(self)
                    return self._view
                if view is None or view.legacy:
                    view = SegmentSet(self.dir, self.dim, self.metric)
                    view.use_gpu = self._gpu_wanted()
                try:
                    self._view = view.sync(self.store.engine, self.id)
                except (IndexCorrupted, InconsistentCollection) as exc:
                    self._view = None
                    raise type(exc)(f"collection {self.name!r}: {exc}; run `embedsearch index repair {self.name}`") from None
            return self._view

    def committed_generation(self) -> int:
        with self.store.engine.connect() as conn:
            return committed_generation(conn, self.id, self.name)

    def is_legacy(self) -> bool:
        """Whether the collection is still in the pre-segment single-file format."""
        with self.store.engine.connect() as conn:
            return not manifest.has_segments(conn, self.id)

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

    def load_embedder(self, device: str | None = None, batch_size: int = 32, spec: str | None = None,
                      root: Path | None = None) -> Embedder:  # fmt: skip
        """Load the collection's model (or ``spec``, e.g. the same model moved elsewhere) and
        check that it is the model the collection was built with. ``root``: a directory every file
        of the model must lie in (the service's --models-dir)."""
        from embedsearch.embedders import load_embedder

        embedder = load_embedder(spec or self.row["model"], device=device, batch_size=batch_size, options=self.embedder_options,
                                 root=root)  # fmt: skip
        self.check_embedder(embedder)
        return embedder

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

    @space.frees_space(lambda coll: coll.store)
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

    def search_settings(self) -> dict[str, Any]:
        """How the collection is searched when a query does not say, in one statement:
        ``{"lexical": has a lexical index, "mode", "fusion", "alpha"}`` (None: not set; the
        query layer, embedsearch/search.py, gives them meaning)."""
        with self.store.engine.connect() as conn:
            return search_settings.read(conn, self.id)

    def update_search_settings(self, change) -> dict[str, Any]:
        """Replace the stored search settings with ``change(current)`` (current: as
        :meth:`search_settings` reads them; the result: keys mode, fusion, alpha, stop_words,
        None for not set), read and written in one transaction under the writer lock, so two
        processes changing different settings both keep their change. ``change`` validates
        (embedsearch.search.set_defaults) and may raise: nothing is written then."""
        with self._writing():
            with self.store.engine.begin() as conn:
                values = change(search_settings.read(conn, self.id))
                search_settings.write(conn, self.id, values)
                return {f: values.get(f) for f in search_settings.FIELDS}

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

    # ---- verify and repair ------------------------------------------------------------------
    def verify(self, check_model: bool = True):
        """Compare SQL and the segments: files, checksums, ids, counts, dimension, model. The
        report is of one generation: a check that a concurrent commit overlapped runs again
        (:meth:`at_one_generation`), so writers elsewhere never make it report a problem."""
        from embedsearch.store.verify import verify

        def once():
            generation = self.committed_generation()
            report = verify(self, check_model=check_model)
            if self.committed_generation() != generation:
                raise StaleRead
            return report

        return self.at_one_generation(once)

    def repair(self, embedder: Embedder | None = None, *, rebuild: bool = False, progress: bool = False) -> dict[str, Any]:
        """Make the segments agree with SQL, re-embedding stored text where vectors are missing.

        ``rebuild`` re-embeds every document (with ``embedder``, whose fingerprint then
        becomes the collection's); otherwise only the difference is fixed.
        """
        from embedsearch.store.repair import repair

        return repair(self, embedder, rebuild=rebuild, progress=progress)
