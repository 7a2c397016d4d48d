"""Index specs: what a user may ask for, what each builds, and what ``auto`` resolves to.

A spec describes the index of every *sealed segment* of a collection. Specs that need
training (IVF, SQ8) are trained once per collection and the trained, empty index is shared by
every segment, so IVF segments can be merged list by list.

``auto`` resolves by collection size (see ``auto_spec``): exact Flat while a brute-force scan
is cheap, then an inverted file whose list count grows with the collection. HNSW is not part
of ``auto``: segments multiply graph builds (a graph cannot be merged, so each merge rebuilds
one), while IVF segments merge list by list. ``benchmarks/bench_scale.py`` measures the build
time and recall of the candidates; the README has the figures.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from embedsearch.errors import InvalidIndexSpec

METRICS = ("cosine", "ip")
AUTO_IVF_AT = 50_000  # auto: exact Flat below this many vectors, an inverted file from here on
# FAISS's HNSW defaults (efConstruction 40, efSearch 16) give poor recall on real embeddings;
# these cost a slower build for recall@10 around 0.97 on clustered data (see the contract test)
HNSW_EF_CONSTRUCTION = 100
HNSW_EF_SEARCH = 128
# a Refine spec re-ranks k * this many candidates per segment from the stored full vectors; on 1M
# clustered 384-d vectors in IVF1024,PQ48 (bench_scale.py large) recall@10 was 0.735 at 4, 0.927 at
# 10 and 1.000 at 25, at any nprobe: PQ's ranking, not the probed lists, is what the factor fixes
REFINE_FACTOR = 10
_SPEC_RE = re.compile(
    r"^(?:(?P<flat>Flat)|HNSW(?P<hnsw>[0-9]+)|(?P<sq>SQ8)"
    r"|IVF(?P<nlist>[0-9]+)(?:,(?P<quant>Flat|SQ8|PQ(?P<pqm>[0-9]+)))?(?P<refine>,(?:Refine|RFlat))?)$",
    re.IGNORECASE,
)
SPEC_HELP = (
    "Flat, HNSW32 (any M), SQ8, IVF{nlist} / IVF{nlist},Flat, IVF{nlist},SQ8, IVF{nlist},PQ{m}, "
    "IVF{nlist},PQ{m},Refine / IVF{nlist},SQ8,Refine (re-ranked from stored full vectors), or auto"
)


@dataclass(frozen=True)
class IndexSpec:
    """A parsed index spec. ``kind`` is flat, hnsw, sq or ivf."""

    kind: str
    text: str
    hnsw_m: int = 0
    nlist: int = 0
    quant: str = "Flat"  # for IVF: Flat, SQ8 or PQ
    pq_m: int = 0
    refine: bool = False  # keep full vectors beside the codes and re-rank with them

    @property
    def needs_training(self) -> bool:
        return self.kind in ("ivf", "sq")

    @property
    def ivf(self) -> bool:
        return self.kind == "ivf"

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

    def max_train_points(self) -> int:
        """Vectors sampled for training: k-means subsamples to 256 points per centroid anyway."""
        if self.kind == "sq":
            return 100_000
        return max(self.min_train_points(), 256 * self.nlist, 65_536 if self.quant == "PQ" else 0)

    def factory(self) -> str:
        """The faiss factory string of one segment's index (ids are the collection's row ids:
        IDMap2 around indexes without ids of their own; IVF stores ids in its lists)."""
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
    refine = bool(m.group("refine"))
    suffix = ",Refine" if refine else ""
    if quant == "FLAT":
        if refine:
            raise InvalidIndexSpec(f"IVF{nlist},Flat already stores full vectors; Refine applies to SQ8 and PQ codes")
        return IndexSpec("ivf", f"IVF{nlist},Flat", nlist=nlist, quant="Flat")
    if quant == "SQ8":
        return IndexSpec("ivf", f"IVF{nlist},SQ8{suffix}", nlist=nlist, quant="SQ8", refine=refine)
    pq_m = int(m.group("pqm"))
    if dim is not None and (pq_m < 1 or dim % pq_m):
        raise InvalidIndexSpec(f"PQ{pq_m}: m must divide the dimension {dim}")
    return IndexSpec("ivf", f"IVF{nlist},PQ{pq_m}{suffix}", nlist=nlist, quant="PQ", pq_m=pq_m, refine=refine)


def validate_spec(text: str, dim: int | None = None) -> str:
    """Return the canonical form of a spec, ``auto`` included: exactly the grammar the service's
    OpenAPI document states (service/constraints.py), so no space around it."""
    if isinstance(text, str) and text != text.strip():
        raise InvalidIndexSpec(f"index spec {text!r} has spaces around it; valid: {SPEC_HELP}")
    if isinstance(text, str) and text.lower() == "auto":
        return "auto"
    return parse_spec(text, dim).text


def auto_spec(n: int) -> str:
    """What ``auto`` trains for a collection of ``n`` vectors: Flat while small, then an inverted
    file with about 4*sqrt(n) lists (a power of two, at least 39 training points per list)."""
    if n < AUTO_IVF_AT:
        return "Flat"
    nlist = 2 ** int(round(math.log2(4 * math.sqrt(n))))
    while nlist > 1 and 39 * nlist > n:
        nlist //= 2
    return f"IVF{nlist},Flat"


def target_spec(requested: str, n: int, dim: int) -> IndexSpec:
    """The spec a collection that asked for ``requested`` trains at ``n`` vectors."""
    return parse_spec(auto_spec(n) if requested == "auto" else requested, dim)


def check_metric(metric: str) -> int:
    """The faiss metric for a collection metric (both are inner products: cosine collections
    store unit vectors)."""
    import faiss

    if metric not in METRICS:
        raise InvalidIndexSpec(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return faiss.METRIC_INNER_PRODUCT


def default_nprobe(nlist: int) -> int:
    """IVF lists probed when the caller does not say: a quarter of them, at least 8. Measured with
    benchmarks/bench_filters.py (recall@10 unfiltered): on 100k MiniLM vectors (IVF1024) an eighth
    gave 0.948 and 3/16 0.966; on 100k hashing vectors 3/16 gave 0.930 and a quarter 0.958, with
    every filtered selectivity at or above it and within 1.6x of the unfiltered query."""
    return int(min(nlist, max(8, nlist // 4)))


def new_faiss_index(dim: int, spec: IndexSpec, metric: str = "cosine", train: np.ndarray | None = None):
    """An empty FAISS index for ``spec`` exactly as a segment builds it (trained when the spec
    needs it); the ANN benchmark measures the same indexes."""
    import faiss

    index = faiss.index_factory(dim, spec.factory(), check_metric(metric))
    if spec.kind == "ivf":
        if train is None:
            raise InvalidIndexSpec(f"{spec.text} needs training vectors")
        index.train(np.ascontiguousarray(train, dtype=np.float32))
    elif spec.kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    elif spec.kind == "sq":
        if train is None or not len(train):
            raise InvalidIndexSpec("SQ8 needs training vectors")
        index.train(np.ascontiguousarray(train, dtype=np.float32))
    return index


def describe(index) -> str:
    """The spec string of a built FAISS index."""
    import faiss

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
