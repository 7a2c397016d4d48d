"""The write path's engine side: one batch's vectors appended to the growing log (or written
as a sealed segment when the batch is large) and committed with its rows; sealing the growing
segment; training the template when the spec needs one. Every commit goes through
store/commit.py. Part of :class:`embedsearch.store.collection.Collection` (a mixin).
"""

from __future__ import annotations

import numpy as np

from embedsearch.corpus import Document
from embedsearch.errors import (
    InconsistentCollection,
)
from embedsearch.store import batch_rows, manifest
from embedsearch.store.commit import commit
from embedsearch.store.crashpoints import crash_point
from embedsearch.store.growing import append_records, create_log, growing_meta, record_dtype
from embedsearch.store.maintenance import train_template
from embedsearch.store.segment_files import SegmentMeta, segment_file, write_sealed
from embedsearch.store.specs import parse_spec, target_spec
from embedsearch.store.view import SegmentSet


class CollectionSealing:
    """A collection's commits of vectors and its seals (mixed into Collection)."""

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
            c.tombstones = batch_rows.apply(
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

        if view.training is not None:
            return None
        n = view.live() + (len(extra) if extra is not None else 0)
        spec = target_spec(self.row["index_spec"], n, self.dim)
        if not spec.needs_training or n < spec.min_train_points():
            return None
        return train_template(self, view, spec, n, extra)
