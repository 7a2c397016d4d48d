"""Segments: the pieces a collection's vectors live in, and how one of them is searched.

* A **sealed** segment is immutable: one plain FAISS index file, ``seg-<id>.faiss``, that
  ``faiss.read_index`` opens as it is. Refine specs keep the full vectors beside it in two plain
  ``.npy`` files (ids sorted, vectors in the same order). Checksums, counts and the row-id range
  live in SQL (the segment list), not in a header. Sealed files are opened memory-mapped, so
  opening costs the same at any size and pages are read as searches touch them.
* The **growing** segment holds the newest vectors: an append-only log of (id, vector)
  records, ``growing-<id>.log``, of which SQL says how many are committed; in memory it is an
  exact Flat index. See :mod:`embedsearch.store.growing`.

Every segment covers a contiguous range of row ids (row ids only grow, and merges take
adjacent segments), so a set of ids is routed to segments by binary search. Deleted and
replaced rows are tombstones until a merge drops them: a search passes them to FAISS as an
excluding selector, and a filtered search only ever passes ids that SQL says are live.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedsearch.errors import IndexCorrupted
from embedsearch.store.segment_files import SegmentMeta, refine_files
from embedsearch.store.specs import (
    HNSW_EF_SEARCH,
    REFINE_FACTOR,
    IndexSpec,
    default_nprobe,
    parse_spec,
)
from embedsearch.store.topk import empty_topk, exact_topk

EXACT_FILTER_MAX = 20_000  # filtered sets this small are searched exactly (graphs) or over every list (IVF)
HNSW_EF_FILTER_MAX = 4096  # a filter would need a wider graph walk than this: searched exactly
# IVF: a filter selecting this few in a segment is searched over every list (each selected vector
# costs a distance, every other one a bit test); above it nprobe grows by the square root of the
# inverse selectivity, at most IVF_WIDEN_MAX times. bench_filters.py (tie-aware recall@10): a 4x
# cap dropped a 1% filter to 0.89 at 300k (hashing, IVF2048) where every list gave 1.0; growing by
# the inverse itself held recall at 0.998 for a 30% filter but cost 2.06-2.08x the unfiltered query
# (100k MiniLM vectors); the square root gives 0.984 at 1.40x there, and at 300k hashing vectors
# 0.956-1.000 from 0.1% to 90% at 0.37-1.30x
EXACT_IVF_MAX = 20_000
IVF_WIDEN_MAX = 8.0
EXACT_SCAN_QUERIES = 32  # up to this many queries, an exact filtered search of a graph scans its storage


def _faiss():
    import faiss

    return faiss


def build_index(spec: IndexSpec, dim: int, metric: str, template_path: Path | None, vectors: np.ndarray, ids: np.ndarray):
    """A segment index holding ``vectors`` under ``ids``: a copy of the collection's trained
    template for IVF and SQ8, a fresh index otherwise."""
    from embedsearch.store.specs import new_faiss_index

    faiss = _faiss()
    if spec.needs_training:
        if template_path is None:
            raise IndexCorrupted(f"{spec.text} segment without a trained template")
        index = faiss.read_index(str(template_path))
    else:
        index = new_faiss_index(dim, spec, metric)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    return index


class Segment:
    """A searchable segment: an index whose ids are row ids, plus the bookkeeping around it."""

    def __init__(self, meta: SegmentMeta, index, dim: int, full: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.meta = meta
        self.index = index
        self.dim = dim
        self.spec = parse_spec(meta.spec, dim)
        self.full = full  # Refine: (sorted ids, vectors), memory-mapped
        self._ids: np.ndarray | None = None
        self._gpu = None
        self._recon = None
        self._labels_cache: np.ndarray | None = None
        self.path: Path | None = None

    # ---- opening --------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: Path, meta: SegmentMeta, dim: int, *, mmap: bool = True) -> Segment:
        """Open a sealed segment, memory-mapped. A missing file raises FileNotFoundError (a
        merge may have replaced it since the segment list was read); a damaged one
        :class:`IndexCorrupted`."""
        faiss = _faiss()
        path = directory / meta.file
        size = path.stat().st_size  # FileNotFoundError propagates: the caller re-reads the list
        spec = parse_spec(meta.spec, dim)
        ids_name, vec_name = refine_files(meta.seg_id)
        if spec.refine:
            size += (directory / ids_name).stat().st_size + (directory / vec_name).stat().st_size
        if size != meta.bytes:
            raise IndexCorrupted(f"segment {meta.file}: {size} bytes on disk, the segment list says {meta.bytes}")
        # IVF: inverted lists mapped from the file; others: the flat codes mapped (the two
        # flags cannot be combined: the IFC reader is not a file the IVF hook can map)
        flags = (faiss.IO_FLAG_MMAP if spec.ivf else faiss.IO_FLAG_MMAP_IFC) if mmap else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise IndexCorrupted(f"segment {meta.file}: FAISS could not read it ({str(exc).splitlines()[0]})") from None
        if mmap and spec.ivf:
            # faiss reads mapped lists as OnDiskInvertedLists, whose search first starts 32 threads
            # to prefetch the probed lists: 2 ms a query here, three times the search itself
            lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
            if hasattr(lists, "prefetch_nthread"):
                lists.prefetch_nthread = 0
        if index.d != dim or index.ntotal != meta.count:
            raise IndexCorrupted(
                f"segment {meta.file}: {index.ntotal} vectors of dimension {index.d}, "
                f"the segment list says {meta.count} of dimension {dim}"
            )
        full = None
        if spec.refine:
            try:
                mode = "r" if mmap else None
                full = (
                    np.load(directory / ids_name, mmap_mode=mode, allow_pickle=False),
                    np.load(directory / vec_name, mmap_mode=mode, allow_pickle=False),
                )
            except ValueError as exc:
                raise IndexCorrupted(f"segment {meta.file}: unreadable full vectors ({exc})") from None
        seg = cls(meta, index, dim, full)
        seg.path = path
        return seg

    # ---- ids and vectors --------------------------------------------------------------------
    def ids(self) -> np.ndarray:
        """Every id stored in the segment (tombstones included), sorted."""
        if self._ids is None:
            faiss = _faiss()
            if self.spec.ivf:
                inv = faiss.extract_index_ivf(self.index).invlists
                parts = [
                    faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy() for i in range(inv.nlist) if inv.list_size(i)
                ]
                ids = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
            else:
                ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            self._ids = np.sort(ids)
        return self._ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors for ids of this segment: exact for Flat, HNSW, IVF,Flat and Refine
        specs; decoded codes (approximate) for SQ8 and PQ."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.full is not None:
            pos = np.searchsorted(self.full[0], ids)
            return np.asarray(self.full[1][pos], dtype=np.float32)
        if self.spec.ivf:
            if self._recon is None:
                # a memory-mapped IVF keeps no id -> position map: read a copy with one (merges only)
                faiss = _faiss()
                recon = faiss.read_index(str(self.path)) if self.path is not None else faiss.clone_index(self.index)
                faiss.extract_index_ivf(recon).set_direct_map_type(faiss.DirectMap.Hashtable)
                self._recon = recon
            return self._recon.reconstruct_batch(ids)
        return self.index.reconstruct_batch(ids)

    def release(self) -> None:
        """Drop the in-memory copy that ``vectors`` reads a memory-mapped IVF segment into."""
        self._recon = None

    def all_vectors(self, dead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(live ids, their vectors): what a merge or a rebuild carries over."""
        ids = np.setdiff1d(self.ids(), dead, assume_unique=True) if len(dead) else self.ids()
        return ids, self.vectors(ids)

    # ---- search -----------------------------------------------------------------------------
    def _params(self, k: int, nprobe: int | None, ef_search: int | None, sel=None, exhaustive: bool = False):
        faiss = _faiss()
        if self.spec.ivf:
            nlist = faiss.extract_index_ivf(self.index).nlist
            probe = nlist if exhaustive else min(nprobe or default_nprobe(nlist), nlist)
            return faiss.SearchParametersIVF(sel=sel, nprobe=int(probe))
        if self.spec.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=sel, efSearch=int(ef_search or max(HNSW_EF_SEARCH, 2 * k)))
        return faiss.SearchParameters(sel=sel) if sel is not None else None

    def filtered_plan(self, k: int, selected: int, nprobe: int | None, ef_search: int | None) -> tuple[str, int]:
        """How a filter selecting ``selected`` of this segment's vectors is searched: ("exact", 0),
        or ("index", effort) where effort is the nprobe or efSearch, widened by the inverse of the
        selectivity (graphs) or its square root (IVF, at most 8x) so that the lists probed or the
        graph walked hold enough selected vectors (bench_filters.py measures the recall this gives)."""
        faiss = _faiss()
        if self.spec.kind == "hnsw":
            if selected <= EXACT_FILTER_MAX:
                return "exact", 0
            ef = ef_search or max(HNSW_EF_SEARCH, 2 * k)
            wide = int(np.ceil(ef * self.meta.count / selected))
            if wide > HNSW_EF_FILTER_MAX:
                return "exact", 0
            return "index", max(ef, wide)
        if self.spec.ivf:
            nlist = faiss.extract_index_ivf(self.index).nlist
            if selected <= EXACT_IVF_MAX:
                return "index", nlist
            probe = min(nprobe or default_nprobe(nlist), nlist)
            widen = min((self.meta.count / selected) ** 0.5, IVF_WIDEN_MAX)
            return "index", min(nlist, max(probe, int(np.ceil(probe * widen))))
        return "index", 0  # Flat and SQ scan every code anyway

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        selection=None,
        selector=None,
        dead: np.ndarray | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query within this segment; -1 ids where fewer qualify.

        ``selection`` (a :class:`~embedsearch.store.selection.Selection` of live ids, with its
        FAISS ``selector``) restricts the search and guarantees ``min(k, selected here)`` hits;
        otherwise ``dead`` ids are excluded and every query gets ``min(k, live vectors)`` hits,
        whatever the index type.
        """
        faiss = _faiss()
        nq = len(queries)
        kk = k * REFINE_FACTOR if self.spec.refine else k
        if selection is not None:
            here = selection.between(self.meta.row_lo, self.meta.row_hi)
            if not len(here):
                return empty_topk(nq, k)
            want = min(k, len(here))
            how, effort = self.filtered_plan(kk, len(here), nprobe, ef_search)
            sel = selector if selector is not None else selection.selector()
            if how == "exact":
                scores, ids = self._exact(queries, kk, here, sel, present=False)
            else:
                if self.spec.ivf:
                    params = faiss.SearchParametersIVF(sel=sel, nprobe=int(effort))
                elif self.spec.kind == "hnsw":
                    params = faiss.SearchParametersHNSW(sel=sel, efSearch=int(effort))
                else:
                    params = faiss.SearchParameters(sel=sel)
                scores, ids = self._faiss_search(self.index, queries, kk, params)
                short = (ids[:, :want] < 0).any(axis=1)
                if short.any():
                    # the graph walk or the probed lists held too few selected vectors
                    scores[short], ids[short] = self._exact(queries[short], kk, here, sel, present=False)
        else:
            dead = dead if dead is not None else np.zeros(0, dtype=np.int64)
            live = self.meta.count - len(dead)
            if live <= 0:
                return empty_topk(nq, k)
            want = min(k, live)
            sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(dead)) if len(dead) else None
            index = self._search_index() if sel is None else self.index
            scores, ids = self._faiss_search(index, queries, kk, self._params(kk, nprobe, ef_search, sel))
            short = (ids[:, :want] < 0).any(axis=1)
            if short.any():
                # the graph walk or the probed lists were cut off by tombstones: answer exactly
                pool = np.setdiff1d(self.ids(), dead, assume_unique=True) if len(dead) else self.ids()
                scores[short], ids[short] = self._exact(queries[short], kk, pool)
        if self.spec.refine:
            scores, ids = self._rerank(queries, ids, k)
        return scores[:, :k], ids[:, :k]

    def _faiss_search(self, index, queries: np.ndarray, k: int, params) -> tuple[np.ndarray, np.ndarray]:
        """``index.search``, except that an IDMap is bypassed: its label translation is an OpenMP
        parallel loop even for one query, and on a busy machine waking the thread team cost a
        single HNSW query 12 ms instead of 0.8 ms (100k vectors, 2 threads, load 6). The inner
        index is searched (a selector translated to its positions, as IDMap does) and its labels
        mapped to row ids here."""
        faiss = _faiss()
        if index is not self.index or not isinstance(index, faiss.IndexIDMap):
            return index.search(queries, k, params=params)
        sel = params.sel if params is not None else None
        translated = faiss.IDSelectorTranslated(index.id_map, sel) if sel is not None else None
        if translated is not None:
            params.sel = translated  # kept alive by the local until the search returns
        scores, pos = index.index.search(queries, k, params=params)
        if translated is not None:
            params.sel = sel
        return scores, self._row_ids(pos)

    def _row_ids(self, pos: np.ndarray) -> np.ndarray:
        """Row ids of an IDMap-wrapped index's positions (-1 stays -1)."""
        return np.where(pos >= 0, self._labels()[np.maximum(pos, 0)], -1)

    def _labels(self) -> np.ndarray:
        """Row id of each position of an IDMap-wrapped index."""
        if self._labels_cache is None or len(self._labels_cache) != self.index.ntotal:
            self._labels_cache = _faiss().vector_to_array(self.index.id_map).astype(np.int64)
        return self._labels_cache

    def _present(self, ids: np.ndarray) -> np.ndarray:
        """The given ids that this segment stores (SQL and a damaged segment may disagree; verify
        reports that, a search must not crash on it). IVF answers exactly through its lists, where
        an absent id is simply never found."""
        if self.spec.ivf:
            return ids
        have = self.ids()
        if not len(have):
            return have
        pos = np.searchsorted(have, ids).clip(max=len(have) - 1)
        return ids[have[pos] == ids]

    def _exact(
        self, queries: np.ndarray, k: int, ids: np.ndarray, sel=None, *, present: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the given ids of this segment (on the stored codes); ``sel``, when
        given, is a FAISS selector of (at least) the same ids; ``present=False`` when some ids
        may not be stored here (SQL's view of a damaged segment)."""
        faiss = _faiss()
        if self.spec.ivf:
            params = self._params(k, None, None, sel if sel is not None else faiss.IDSelectorBatch(ids), exhaustive=True)
            return self.index.search(queries, k, params=params)
        if sel is not None and self.spec.kind == "hnsw" and len(queries) <= EXACT_SCAN_QUERIES:
            # a few queries: scan the graph's flat storage, computing distances only for the
            # selected (a bit test per vector), instead of gathering the selected vectors
            storage = faiss.downcast_index(self.index.index).storage
            translated = faiss.IDSelectorTranslated(self.index.id_map, sel)
            scores, pos = storage.search(queries, k, params=faiss.SearchParameters(sel=translated))
            return scores, self._row_ids(pos)
        return exact_topk(queries, k, ids if present else self._present(ids), self.vectors)

    def _rerank(self, queries: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Re-score candidates with the full vectors (FAISS's refine step, per segment)."""
        nq, kk = cand.shape
        valid = cand >= 0
        if not valid.any():
            return empty_topk(nq, k)
        safe = np.where(valid, cand, cand[valid][0])  # any stored id stands in for the padding
        vecs = self.vectors(safe.ravel()).reshape(nq, kk, self.dim)
        scores = np.einsum("qd,qkd->qk", queries, vecs).astype(np.float32)
        scores[~valid] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        ids = np.where(np.take_along_axis(valid, order, axis=1), np.take_along_axis(cand, order, axis=1), -1)
        return np.take_along_axis(scores, order, axis=1), ids

    # ---- GPU --------------------------------------------------------------------------------
    use_gpu = False

    def _search_index(self):
        """A GPU replica for unfiltered searches when enabled and the index type supports it."""
        if not self.use_gpu or self.spec.kind == "hnsw":
            return self.index
        if self._gpu is None:
            try:
                self._gpu = _faiss().index_cpu_to_all_gpus(self.index)
            except Exception:  # unsupported on the GPU: stay on the CPU
                self.use_gpu = False
                return self.index
        return self._gpu
