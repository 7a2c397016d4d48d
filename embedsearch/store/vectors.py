"""FAISS vectors for one collection: index specs, add/delete/search, safe persistence.

Design notes (why, not what):

* Every spec is wrapped so that ids are the collection's int64 row ids.
* HNSW cannot remove vectors, so deletes there are tombstones (excluded through an
  IDSelector at search time) and the graph is rebuilt once tombstones pass a quarter of it.
* IVF and PQ need training data. Until a collection holds enough vectors, an IVF spec is
  served by an exact Flat index ("pending") and trained automatically once there are enough.
* HNSW and IVF searches with a selector can miss matches when the selected set is small (the
  graph or the probed lists do not reach them), so small filtered sets are searched exactly
  over reconstructed vectors, and any row that still comes back short is redone exactly.
* One file holds one generation: a JSON header (generation, spec, checksum) + tombstones +
  the FAISS bytes, written to a temp file, fsynced and renamed, so a reader sees either the
  old generation or the new one and a truncated or corrupted file is detected by checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedsearch.errors import DimensionMismatch, IndexCorrupted, InvalidArgument, InvalidIndexSpec

METRICS = ("cosine", "ip")
MAGIC = b"ESVECS01"
AUTO_HNSW_AT = 50_000  # auto: exact Flat below this many vectors, HNSW32 from here on
EXACT_FILTER_MAX = 20_000  # filtered sets this small are searched exactly
COMPACT_RATIO = 0.25  # rebuild an HNSW graph when this share of it is tombstones
# FAISS's HNSW defaults (efConstruction 40, efSearch 16) give poor recall on real embeddings;
# these cost a slower build for recall@10 around 0.97 on clustered data (see the contract test)
HNSW_EF_CONSTRUCTION = 100
HNSW_EF_SEARCH = 128
_SPEC_RE = re.compile(
    r"^(?:(?P<flat>Flat)|HNSW(?P<hnsw>\d+)|(?P<sq>SQ8)|IVF(?P<nlist>\d+)(?:,(?P<quant>Flat|SQ8|PQ(?P<pqm>\d+)))?)$",
    re.IGNORECASE,
)
SPEC_HELP = "Flat, HNSW32 (any M), SQ8, IVF{nlist} / IVF{nlist},Flat, IVF{nlist},SQ8, IVF{nlist},PQ{m}, or auto"


@dataclass(frozen=True)
class IndexSpec:
    """A parsed index spec. ``kind`` is flat, hnsw, sq or ivf."""

    kind: str
    text: str
    hnsw_m: int = 0
    nlist: int = 0
    quant: str = "Flat"  # for IVF: Flat, SQ8 or PQ
    pq_m: int = 0

    @property
    def needs_training(self) -> bool:
        return self.kind in ("ivf", "sq")

    def min_train_points(self) -> int:
        """Vectors needed before training: faiss warns below 39 points per centroid; a scalar
        quantizer learns per-dimension ranges, which a thousand vectors estimate well."""
        if self.kind == "sq":
            return 1000
        if self.kind != "ivf":
            return 0
        need = 39 * self.nlist
        if self.quant == "PQ":
            need = max(need, 1024)  # 256 centroids per sub-quantizer need a few points each
        return need

    def factory(self) -> str:
        if self.kind == "flat":
            return "IDMap2,Flat"
        if self.kind == "hnsw":
            return f"IDMap2,HNSW{self.hnsw_m},Flat"
        if self.kind == "sq":
            return "IDMap2,SQ8"
        quant = f"PQ{self.pq_m}" if self.quant == "PQ" else self.quant
        return f"IVF{self.nlist},{quant}"


def parse_spec(text: str, dim: int | None = None) -> IndexSpec:
    """Parse an index spec (not ``auto``), raising :class:`InvalidIndexSpec` with the valid forms."""
    m = _SPEC_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise InvalidIndexSpec(f"unknown index spec {text!r}; valid: {SPEC_HELP}")
    if m.group("flat"):
        return IndexSpec("flat", "Flat")
    if m.group("hnsw"):
        hm = int(m.group("hnsw"))
        if not 4 <= hm <= 256:
            raise InvalidIndexSpec(f"HNSW M must be between 4 and 256, got {hm}")
        return IndexSpec("hnsw", f"HNSW{hm}", hnsw_m=hm)
    if m.group("sq"):
        return IndexSpec("sq", "SQ8")
    nlist = int(m.group("nlist"))
    if not 1 <= nlist <= 1 << 20:
        raise InvalidIndexSpec(f"IVF nlist must be between 1 and 1048576, got {nlist}")
    quant = (m.group("quant") or "Flat").upper()
    if quant == "FLAT":
        return IndexSpec("ivf", f"IVF{nlist},Flat", nlist=nlist, quant="Flat")
    if quant == "SQ8":
        return IndexSpec("ivf", f"IVF{nlist},SQ8", nlist=nlist, quant="SQ8")
    pq_m = int(m.group("pqm"))
    if dim is not None and (pq_m < 1 or dim % pq_m):
        raise InvalidIndexSpec(f"PQ{pq_m}: m must divide the dimension {dim}")
    return IndexSpec("ivf", f"IVF{nlist},PQ{pq_m}", nlist=nlist, quant="PQ", pq_m=pq_m)


def validate_spec(text: str, dim: int | None = None) -> str:
    """Return the canonical form of a spec, ``auto`` included."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return "auto"
    return parse_spec(text, dim).text


def auto_spec(n: int) -> str:
    """What ``auto`` builds for a collection of ``n`` vectors."""
    return "Flat" if n < AUTO_HNSW_AT else "HNSW32"


def _faiss():
    import faiss

    return faiss


def _metric(metric: str) -> int:
    if metric not in METRICS:
        raise InvalidIndexSpec(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return _faiss().METRIC_INNER_PRODUCT


def default_nprobe(nlist: int) -> int:
    """IVF lists probed when the caller does not say: an eighth of them, at least 8."""
    return int(min(nlist, max(8, nlist // 8)))


def new_faiss_index(dim: int, spec: IndexSpec, metric: str = "cosine", train: np.ndarray | None = None):
    """An empty FAISS index for ``spec`` exactly as a collection builds it (trained when the
    spec needs it); the ANN benchmark measures the same indexes."""
    faiss = _faiss()
    index = faiss.index_factory(dim, spec.factory(), _metric(metric))
    if spec.kind == "ivf":
        if train is None:
            raise InvalidIndexSpec(f"{spec.text} needs training vectors")
        ivf = faiss.extract_index_ivf(index)
        index.train(train)
        # a hashtable direct map makes reconstruct() and remove_ids() work with arbitrary ids
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    elif spec.kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    elif spec.kind == "sq":
        if train is None or not len(train):
            raise InvalidIndexSpec("SQ8 needs training vectors")
        index.train(train)
    return index


class VectorIndex:
    """A FAISS index keyed by int64 ids, with the bookkeeping FAISS leaves to us."""

    def __init__(self, dim: int, spec: str = "auto", metric: str = "cosine") -> None:
        if dim <= 0:
            raise DimensionMismatch(f"dimension must be positive, got {dim}")
        self.dim = int(dim)
        self.metric = metric
        _metric(metric)
        self.spec = validate_spec(spec, dim)  # what the user asked for
        self.tombstones = np.zeros(0, dtype=np.int64)
        self.index = self._new_index(self._target_spec(0))
        self._gpu_index = None
        self._ids_cache: np.ndarray | None = None
        self.use_gpu = False

    # ---- construction -------------------------------------------------------------------
    def _target_spec(self, n: int) -> IndexSpec:
        """The spec to build for ``n`` vectors: resolves auto and pending IVF."""
        if self.spec == "auto":
            return parse_spec(auto_spec(n))
        spec = parse_spec(self.spec, self.dim)
        if spec.needs_training and n < spec.min_train_points():
            return parse_spec("Flat")
        return spec

    def _new_index(self, spec: IndexSpec, train: np.ndarray | None = None):
        return new_faiss_index(self.dim, spec, self.metric, train)

    @property
    def active_spec(self) -> str:
        """The spec actually built now (``Flat`` for auto while small, or for a pending IVF)."""
        return _describe(self.index)

    @property
    def pending(self) -> str | None:
        """Why the requested spec is not built yet, if it is not."""
        if self.spec == "auto":
            return None
        spec = parse_spec(self.spec, self.dim)
        if spec.needs_training and self.active_spec == "Flat":
            need = spec.min_train_points()
            return f"{spec.text} is trained once the collection holds {need} vectors; exact Flat until then"
        return None

    # ---- sizes and ids --------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Live vectors (tombstones excluded)."""
        return int(self.index.ntotal) - len(self.tombstones)

    def ids(self) -> np.ndarray:
        """Every live id, sorted (cached until the next write)."""
        if getattr(self, "_ids_cache", None) is None:
            self._ids_cache = self._collect_ids()
        return self._ids_cache

    def _collect_ids(self) -> np.ndarray:
        faiss = _faiss()
        if isinstance(self.index, faiss.IndexIDMap2) or hasattr(self.index, "id_map"):
            all_ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        else:
            ivf = faiss.extract_index_ivf(self.index)
            inv = ivf.invlists
            parts = [faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy() for i in range(inv.nlist) if inv.list_size(i)]
            all_ids = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
        if len(self.tombstones):
            all_ids = np.setdiff1d(all_ids, self.tombstones, assume_unique=False)
        return np.sort(all_ids)

    # ---- writes ---------------------------------------------------------------------------
    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise DimensionMismatch(f"vectors have shape {vectors.shape}; this collection is {self.dim}-dimensional")
        if not np.isfinite(vectors).all():
            raise DimensionMismatch("vectors contain NaN or infinity")
        return vectors

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add vectors under ids that must not be present already."""
        vectors = self._check(vectors)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) != len(vectors):
            raise DimensionMismatch(f"{len(vectors)} vectors but {len(ids)} ids")
        if not len(ids):
            return
        if len(self.tombstones):
            # a re-used id must not be hidden by an old tombstone: drop the old entry for good
            clash = np.intersect1d(ids, self.tombstones)
            if len(clash):
                self._compact()
        target = self._target_spec(self.ntotal + len(ids))
        if target.text != self.active_spec:
            self._rebuild(target, extra=(vectors, ids))
        else:
            self.index.add_with_ids(vectors, ids)
        self._gpu_index = None
        self._ids_cache = None

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (absent ones are ignored); returns how many were removed."""
        faiss = _faiss()
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if not len(ids):
            return 0
        present = np.intersect1d(ids, self.ids())
        if not len(present):
            return 0
        if "HNSW" in self.active_spec:
            self.tombstones = np.union1d(self.tombstones, present)
            self._ids_cache = None
            if len(self.tombstones) > COMPACT_RATIO * self.index.ntotal:
                self._compact()
        else:
            self.index.remove_ids(faiss.IDSelectorArray(present))
        self._gpu_index = None
        self._ids_cache = None
        return len(present)

    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        ids = self.ids()
        return self.reconstruct(ids), ids

    def _compact(self) -> None:
        vectors, ids = self._all_vectors()
        self.tombstones = np.zeros(0, dtype=np.int64)
        self._rebuild(self._target_spec(len(ids)), base=(vectors, ids))

    def _rebuild(self, target: IndexSpec, extra=None, base=None) -> None:
        """Re-create the index as ``target`` from the current vectors (plus ``extra``)."""
        vectors, ids = base if base is not None else self._all_vectors()
        if extra is not None:
            vectors = np.vstack([vectors, extra[0]])
            ids = np.concatenate([ids, extra[1]])
        index = self._new_index(target, train=vectors)
        if len(ids):
            index.add_with_ids(vectors, ids)
        self.index = index
        self.tombstones = np.zeros(0, dtype=np.int64)
        self._ids_cache = None

    # ---- reads ----------------------------------------------------------------------------
    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors for ids (decoded, so approximate for SQ and PQ)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.index.reconstruct_batch(ids)

    def _search_params(self, k: int, nprobe: int | None, ef_search: int | None, sel=None):
        faiss = _faiss()
        active = self.active_spec
        if active.startswith("IVF"):
            nlist = faiss.extract_index_ivf(self.index).nlist
            probe = nprobe or default_nprobe(nlist)
            return faiss.SearchParametersIVF(sel=sel, nprobe=int(min(probe, nlist)))
        if "HNSW" in active:
            return faiss.SearchParametersHNSW(sel=sel, efSearch=int(ef_search or max(HNSW_EF_SEARCH, 2 * k)))
        return faiss.SearchParameters(sel=sel) if sel is not None else None

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        allowed: np.ndarray | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; ids are -1 where fewer than k vectors qualify.

        ``allowed`` restricts the search to those ids; the result then holds
        ``min(k, len(allowed))`` hits for every query, whatever the index type.
        """
        faiss = _faiss()
        queries = self._check(queries)
        k = int(k)
        if k <= 0:
            raise InvalidArgument("k must be positive")
        nq = len(queries)
        if allowed is None:
            if not len(self.tombstones):
                index = self._search_index()
                return index.search(queries, k, params=self._search_params(k, nprobe, ef_search))
            sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(self.tombstones))
            scores, ids = self.index.search(queries, k, params=self._search_params(k, nprobe, ef_search, sel))
            want = min(k, self.ntotal)
            short = (ids[:, :want] < 0).any(axis=1) if want else np.zeros(nq, dtype=bool)
            if short.any():
                # the graph walk was cut off by tombstones; answer those queries exactly
                s2, i2 = self._exact(queries[short], k, self.ids())
                scores[short], ids[short] = s2, i2
            return scores, ids
        # only live ids: a stale id must neither crash reconstruct() nor count towards k
        allowed = np.intersect1d(np.asarray(allowed, dtype=np.int64), self.ids())
        if not len(allowed):
            return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)
        active = self.active_spec
        if active != "Flat" and len(allowed) <= EXACT_FILTER_MAX:
            return self._exact(queries, k, allowed)
        sel = faiss.IDSelectorBatch(allowed)
        scores, ids = self.index.search(queries, k, params=self._search_params(k, nprobe, ef_search, sel))
        want = min(k, len(allowed))
        short = (ids[:, :want] < 0).any(axis=1)
        if short.any():
            s2, i2 = self._exact(queries[short], k, allowed)
            scores[short], ids[short] = s2, i2
        return scores, ids

    def _exact(self, queries: np.ndarray, k: int, ids: np.ndarray, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over the given ids, in chunks so memory stays bounded."""
        nq = len(queries)
        best_s = np.full((nq, k), -np.inf, dtype=np.float32)
        best_i = np.full((nq, k), -1, dtype=np.int64)
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            sims = queries @ self.reconstruct(part).T
            all_s = np.hstack([best_s, sims])
            all_i = np.hstack([best_i, np.broadcast_to(part, (nq, len(part)))])
            kk = min(k, all_s.shape[1])
            top = np.argpartition(-all_s, kk - 1, axis=1)[:, :kk]
            best_s = np.take_along_axis(all_s, top, axis=1)
            best_i = np.take_along_axis(all_i, top, axis=1)
        order = np.argsort(-best_s, axis=1, kind="stable")
        return np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)

    # ---- GPU ------------------------------------------------------------------------------
    def _search_index(self):
        """The index unfiltered searches run on: a GPU replica when enabled and supported."""
        if not self.use_gpu or "HNSW" in self.active_spec:
            return self.index
        if self._gpu_index is None:
            faiss = _faiss()
            try:
                self._gpu_index = faiss.index_cpu_to_all_gpus(self.index)
            except Exception:  # unsupported index type on GPU: stay on the CPU
                self.use_gpu = False
                return self.index
        return self._gpu_index

    def enable_gpu(self, device: str | None) -> bool:
        """Use a GPU replica for searches when FAISS sees one and the user did not ask for CPU."""
        if device == "cpu":
            self.use_gpu = False
            return False
        faiss = _faiss()
        self.use_gpu = hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0
        return self.use_gpu

    # ---- persistence ----------------------------------------------------------------------
    def to_bytes(self, generation: int) -> bytes:
        faiss = _faiss()
        payload = faiss.serialize_index(self.index).tobytes()
        tomb = self.tombstones.astype("<i8").tobytes()
        header = {
            "generation": int(generation),
            "dim": self.dim,
            "metric": self.metric,
            "spec": self.spec,
            "active_spec": self.active_spec,
            "ntotal": self.ntotal,
            "tombstones": len(self.tombstones),
            "payload_bytes": len(payload),
            "sha256": hashlib.sha256(tomb + payload).hexdigest(),
        }
        head = json.dumps(header, sort_keys=True).encode()
        return MAGIC + struct.pack("<I", len(head)) + head + tomb + payload

    def save(self, path: Path, generation: int) -> None:
        """Write atomically: temp file in the same directory, fsync, rename, fsync the directory."""
        path = Path(path)
        data = self.to_bytes(generation)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "index file") -> tuple[VectorIndex, dict]:
        faiss = _faiss()
        if len(data) < len(MAGIC) + 4 or not data.startswith(MAGIC):
            raise IndexCorrupted(f"{where}: not an embedsearch vector file (bad magic or truncated)")
        (hlen,) = struct.unpack_from("<I", data, len(MAGIC))
        start = len(MAGIC) + 4
        try:
            header = json.loads(data[start : start + hlen])
            ntomb = int(header["tombstones"])
            plen = int(header["payload_bytes"])
        except (ValueError, KeyError, TypeError):
            raise IndexCorrupted(f"{where}: unreadable header (truncated or corrupted)") from None
        body = data[start + hlen :]
        if len(body) != 8 * ntomb + plen:
            raise IndexCorrupted(f"{where}: truncated ({len(body)} of {8 * ntomb + plen} body bytes)")
        if hashlib.sha256(body).hexdigest() != header.get("sha256"):
            raise IndexCorrupted(f"{where}: checksum mismatch (the file is corrupted)")
        self = cls.__new__(cls)
        self.dim = int(header["dim"])
        self.metric = header["metric"]
        self.spec = header["spec"]
        self.tombstones = np.frombuffer(body[: 8 * ntomb], dtype="<i8").astype(np.int64)
        try:
            self.index = faiss.deserialize_index(np.frombuffer(body[8 * ntomb :], dtype=np.uint8))
        except RuntimeError as exc:
            raise IndexCorrupted(f"{where}: FAISS could not read the index ({str(exc).splitlines()[0]})") from None
        if self.index.d != self.dim:
            raise IndexCorrupted(f"{where}: index dimension {self.index.d} != header dimension {self.dim}")
        self._gpu_index = None
        self._ids_cache = None
        self.use_gpu = False
        return self, header

    @classmethod
    def load(cls, path: Path) -> tuple[VectorIndex, dict]:
        """Read a vector file, checking magic, length and checksum; returns (index, header)."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise IndexCorrupted(f"{path}: vector file is missing") from None
        return cls.from_bytes(data, where=str(path))


def _describe(index) -> str:
    """The spec string of a built FAISS index."""
    faiss = _faiss()
    inner = index.index if isinstance(index, faiss.IndexIDMap2) else index
    inner = faiss.downcast_index(inner)
    if isinstance(inner, faiss.IndexHNSW):
        return f"HNSW{inner.hnsw.nb_neighbors(1)}"
    if isinstance(inner, faiss.IndexScalarQuantizer):
        return "SQ8"
    if isinstance(inner, faiss.IndexFlat):
        return "Flat"
    if isinstance(inner, faiss.IndexIVF):
        if isinstance(inner, faiss.IndexIVFPQ):
            return f"IVF{inner.nlist},PQ{inner.pq.M}"
        if isinstance(inner, faiss.IndexIVFScalarQuantizer):
            return f"IVF{inner.nlist},SQ8"
        return f"IVF{inner.nlist},Flat"
    return type(inner).__name__


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
