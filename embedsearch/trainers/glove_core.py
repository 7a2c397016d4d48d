"""GloVe (Pennington, Socher and Manning, 2014) as plain functions over numpy arrays.

:func:`cooccurrence` counts the symmetric, 1/distance-weighted co-occurrence matrix in
bounded memory; :class:`GloveModel` fits word and context vectors to log X with weighted
least squares, f(x) = min(1, (x / x_max) ** alpha), and AdaGrad, as the reference C code does:
vectors and biases start uniform in [-0.5, 0.5] / dim, squared-gradient sums start at 1, vector
gradients are clipped then scaled by the learning rate while biases step at rate 1, the
entries are shuffled once and each thread trains a contiguous slice of them, and the final
vectors are word + context. On CPU the epochs run in compiled Hogwild threads (numba); on a
CUDA device they run in PyTorch mini-batches. :func:`prepare_entries` keeps the shuffled
entries in memory, or streams them from disk when they exceed the memory budget.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedsearch.errors import InvalidArgument

#: entries per thread hash table are capped at this fraction of its slots before draining
_MAX_LOAD = 0.75


@dataclass
class Cooccurrence:
    """The full symmetric co-occurrence matrix as COO arrays (both (i, j) and (j, i))."""

    rows: np.ndarray  # int32
    cols: np.ndarray  # int32
    values: np.ndarray  # float32
    vocab_size: int
    drains: int  # times a hash table filled up and was drained (memory stayed bounded)

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    def to_dense(self) -> np.ndarray:
        out = np.zeros((self.vocab_size, self.vocab_size), dtype=np.float64)
        np.add.at(out, (self.rows, self.cols), self.values)
        return out


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def window_pairs(doc_ends: np.ndarray, window: int) -> int:
    """How many (token, earlier token within ``window``) pairs the documents hold: the number of
    counting events, an upper bound on the non-zeros of the upper triangle."""
    lengths = np.diff(np.concatenate(([0], np.asarray(doc_ends, dtype=np.int64))))
    m = np.minimum(lengths, window)
    return int((m * (m - 1) // 2 + np.maximum(0, lengths - window) * window).sum())


def cooccurrence(
    ids: np.ndarray,
    doc_ends: np.ndarray,
    vocab_size: int,
    window: int,
    *,
    threads: int | None = None,
    memory_mb: int = 512,
    dense_words: int | None = None,
    table_slots: int | None = None,
) -> Cooccurrence:
    """Count X[i, j] = sum over pairs within ``window`` of 1 / distance, symmetric.

    ``ids`` are vocabulary ids (frequency ranks) with documents ending at ``doc_ends``.
    The counting structures are sized to the corpus, up to ``memory_mb``: a dense triangle for
    the most frequent words of at most a quarter of the budget and a quarter of the counting
    events (beyond that its cells are mostly empty), and per-thread hash tables of at most a
    quarter of the budget with room for a sixth of the events, drained into arrays when they
    fill (then merged by sorting at the end). The result takes 12 bytes per non-zero and is
    written in place from the structures (the upper triangle, then its mirror). ``dense_words``
    and ``table_slots`` override the sizing (tests use them to force draining).
    """
    from embedsearch.trainers import glove_kernels as K

    if window < 1:
        raise InvalidArgument("window must be at least 1")
    threads = threads or default_threads()
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    doc_ends = np.ascontiguousarray(doc_ends, dtype=np.int64)
    budget = max(64, memory_mb) * 2**20
    events = window_pairs(doc_ends, window)
    if dense_words is None:
        cells = min(budget // 4 // 4, events // 4)
        dense_words = int((2 * cells) ** 0.5)
    dense_k = int(min(vocab_size, max(1, dense_words)))
    dense = np.zeros(dense_k * (dense_k + 1) // 2, dtype=np.float32)
    # 12 bytes per slot, room for a sixth of the events: text repeats its pairs (the dictionary
    # corpus: 39M events, 5.4M distinct pairs outside the dense block); a table that fills is drained
    want = min((budget // 4) // (12 * threads), events / threads / 6 / _MAX_LOAD)
    slots = int(max(1024, want)) if table_slots is None else max(16, int(table_slots))
    keys = np.full((threads, slots), -1, dtype=np.int64)
    vals = np.zeros((threads, slots), dtype=np.float32)
    filled = np.zeros(threads, dtype=np.int64)
    positions = np.zeros(threads, dtype=np.int64)
    # a token adds at most 2 * window entries after the fill check, so keep that much headroom
    max_fill = max(1, min(int(slots * _MAX_LOAD), slots - 2 * window - 1))
    # thread t owns the pairs whose smaller id is t mod threads: its chunks never share a key
    # with another thread's, only with its own earlier ones
    chunks: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(threads)]
    drains = 0
    while True:
        done = K.count_cooccurrences(
            ids, doc_ends, int(window), dense_k, dense, keys, vals, filled, positions, max_fill, int(vocab_size)
        )
        if done:
            break
        for t in range(threads):
            if filled[t] >= max_fill:
                chunks[t].append(K.drain_table(keys, vals, t))
                filled[t] = 0
                drains += 1
    for t in range(threads):
        if chunks[t]:
            # the same pair may sit in several of this thread's chunks and its table: sort and sum runs
            chunks[t].append(K.drain_table(keys, vals, t))
            k = np.concatenate([c[0] for c in chunks[t]])
            v = np.concatenate([c[1] for c in chunks[t]])
            chunks[t] = []
            order = np.argsort(k)
            k, v = k[order], v[order]
            del order
            starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
            chunks[t] = [(k[starts], np.add.reduceat(v, starts).astype(np.float32))]
            del k, v, starts
    n_upper = (K.dense_nonzeros(dense) + sum(c[0].shape[0] for cs in chunks for c in cs)
               + sum(K.table_used(keys, t) for t in range(threads)))  # fmt: skip
    # room for both halves; pages past the diagonal's share are never touched, so never resident
    rows = np.empty(2 * n_upper, dtype=np.int32)
    cols = np.empty(2 * n_upper, dtype=np.int32)
    values = np.empty(2 * n_upper, dtype=np.float32)
    pos = K.dense_into(dense, dense_k, rows, cols, values, 0)
    del dense
    for t in range(threads):
        for k, v in chunks[t]:
            pos = K.keys_into(k, v, np.int64(vocab_size), rows, cols, values, pos)
        chunks[t] = []
        pos = K.table_into(keys, vals, t, np.int64(vocab_size), rows, cols, values, pos)
    del keys, vals
    n = K.mirror_into(rows, cols, values, n_upper)
    return Cooccurrence(rows=rows[:n], cols=cols[:n], values=values[:n], vocab_size=int(vocab_size), drains=drains)


class GloveModel:
    """Weights and optimiser state of one GloVe fit."""

    def __init__(self, vocab_size: int, dim: int, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        scale = np.float32(1.0 / dim)

        def uniform(shape):
            x = rng.random(shape, dtype=np.float32)
            x -= np.float32(0.5)
            x *= scale
            return x

        self.W = uniform((vocab_size, dim))
        self.C = uniform((vocab_size, dim))
        self.bw = uniform(vocab_size)
        self.bc = uniform(vocab_size)
        self.gW = np.ones_like(self.W)
        self.gC = np.ones_like(self.C)
        self.gbw = np.ones_like(self.bw)
        self.gbc = np.ones_like(self.bc)
        self.rng = rng

    def vectors(self) -> np.ndarray:
        """Word plus context vectors (the reference's default output)."""
        return (self.W + self.C).astype(np.float32)


#: bytes per training entry: int32 row, int32 column, float32 log X
ENTRY_BYTES = 12
#: entries per thread read from disk at a time when the entries are streamed
STREAM_BLOCK = 1 << 20


class Entries:
    """The shuffled training entries (row, column, log X), in memory or in three files on disk.

    On disk, each epoch reads them block by block (``STREAM_BLOCK`` entries per thread at a
    time), so training holds the weights and a few MiB of entries; the files stay in the page
    cache when memory allows, and are read from disk when it does not, as the reference's
    training reads its shuffled file.
    """

    def __init__(self, n: int, arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None, directory: Path | None):
        self.n = n
        self.arrays = arrays
        self.directory = directory

    @property
    def streamed(self) -> bool:
        return self.arrays is None

    def files(self) -> list[Path]:
        assert self.directory is not None
        return [self.directory / f"glove-{name}.bin" for name in ("rows", "cols", "logx")]

    def remove_files(self) -> None:
        if self.directory is not None:
            for f in self.files():
                f.unlink(missing_ok=True)

    def load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All entries as arrays (the CUDA path uploads them)."""
        if self.arrays is not None:
            return self.arrays
        rows, cols, logx = (np.fromfile(f, dtype=dt) for f, dt in zip(self.files(), _ENTRY_DTYPES, strict=True))
        return rows, cols, logx


_ENTRY_DTYPES = (np.int32, np.int32, np.float32)


def prepare_entries(
    cooc: Cooccurrence, seed: int, *, memory_mb: int = 512, spill_dir: Path | None = None
) -> Entries:
    """Shuffle ``cooc``'s entries once (in place: ``cooc`` is consumed) and turn counts into log X.

    The entries stay in memory when they take at most a quarter of ``memory_mb``; otherwise (and
    when ``spill_dir`` is given) they are written to ``spill_dir`` and streamed each epoch.
    """
    from embedsearch.trainers import glove_kernels as K

    rows, cols, values = cooc.rows, cooc.cols, cooc.values
    cooc.rows = cooc.cols = cooc.values = np.zeros(0, dtype=np.int32)
    n = int(rows.shape[0])
    K.shuffle_log(rows, cols, values, np.int64(seed))
    if spill_dir is None or n * ENTRY_BYTES <= memory_mb * 2**20 // 4:
        return Entries(n, (rows, cols, values), None)
    entries = Entries(n, None, Path(spill_dir))
    Path(spill_dir).mkdir(parents=True, exist_ok=True)
    for f, a in zip(entries.files(), (rows, cols, values), strict=True):
        a.tofile(f)
    return entries


def epoch_cpu(model: GloveModel, entries: Entries, lr: float, threads: int, *, x_max: float, alpha: float,
              grad_clip: float = 100.0) -> float:  # fmt: skip
    """One compiled Hogwild epoch: thread t trains the t-th contiguous slice of the shuffled
    entries, as the reference's threads do; returns the mean cost per entry."""
    from embedsearch.trainers import glove_kernels as K

    n = entries.n
    chunk = (n + threads - 1) // threads
    bounds = [(min(n, t * chunk), min(n, (t + 1) * chunk)) for t in range(threads)]
    args = (np.float32(lr), np.float32(np.log(x_max)), np.float32(alpha), np.float32(grad_clip))
    weights = (model.W, model.C, model.bw, model.bc, model.gW, model.gC, model.gbw, model.gbc)
    if not entries.streamed:
        starts = np.array([b[0] for b in bounds], dtype=np.int64)
        stops = np.array([b[1] for b in bounds], dtype=np.int64)
        total = K.glove_epoch(*weights, *entries.arrays, starts, stops, *args)
        return float(total) / max(1, n)
    block = min(STREAM_BLOCK, max(1, chunk))
    bufs = [np.empty(threads * block, dtype=dt) for dt in _ENTRY_DTYPES]
    total = 0.0
    handles = [open(f, "rb") for f in entries.files()]
    try:
        for offset in range(0, chunk, block):
            starts = np.arange(threads, dtype=np.int64) * block
            stops = starts.copy()
            for t, (lo, hi) in enumerate(bounds):
                count = max(0, min(block, hi - (lo + offset)))
                for fh, buf in zip(handles, bufs, strict=True):
                    if count:
                        fh.seek((lo + offset) * buf.itemsize)
                        fh.readinto(memoryview(buf[t * block : t * block + count]))
                stops[t] += count
            total += K.glove_epoch(*weights, *bufs, starts, stops, *args)
    finally:
        for fh in handles:
            fh.close()
    return total / max(1, n)


class TorchGlove:
    """The same objective and AdaGrad in PyTorch mini-batches, for CUDA devices.

    Updates within a batch are summed per row (``index_add_``) before the AdaGrad step, the
    usual mini-batch form of the per-entry updates the CPU path makes; the squared-gradient
    sums grow by each entry's squared gradient, as they do entry by entry.
    """

    def __init__(self, model: GloveModel, entries: Entries, device: str, *, x_max: float, alpha: float,
                 batch_size: int = 1 << 16) -> None:  # fmt: skip
        import torch

        self.torch = torch
        self.model = model
        self.device = torch.device(device)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)  # noqa: E731
        self.W, self.C, self.bw, self.bc = t(model.W), t(model.C), t(model.bw), t(model.bc)
        self.gW, self.gC, self.gbw, self.gbc = t(model.gW), t(model.gC), t(model.gbw), t(model.gbc)
        rows, cols, logx = entries.load()
        self.rows, self.cols = t(rows).long(), t(cols).long()
        self.logx = t(logx)
        self.fx = torch.clamp(torch.exp(alpha * (self.logx - float(np.log(x_max)))), max=1.0)
        self.batch_size = batch_size

    def epoch(self, lr: float, grad_clip: float = 100.0) -> float:
        torch = self.torch
        n = self.rows.shape[0]
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for s in range(0, n, self.batch_size):
                i = self.rows[s : s + self.batch_size]
                j = self.cols[s : s + self.batch_size]
                wi, cj = self.W[i], self.C[j]
                diff = (wi * cj).sum(1) + self.bw[i] + self.bc[j] - self.logx[s : s + self.batch_size]
                fdiff = self.fx[s : s + self.batch_size] * diff
                total += (0.5 * fdiff * diff).sum(dtype=torch.float64)
                # as the CPU kernel: clip, then scale vector gradients by lr; biases take fdiff unscaled
                g1 = (fdiff[:, None] * cj).clamp_(-grad_clip, grad_clip) * lr
                g2 = (fdiff[:, None] * wi).clamp_(-grad_clip, grad_clip) * lr
                self._step(self.W, self.gW, i, g1)
                self._step(self.C, self.gC, j, g2)
                self._step(self.bw, self.gbw, i, fdiff)
                self._step(self.bc, self.gbc, j, fdiff)
        return float(total) / max(1, n)

    def _step(self, param, gradsq, idx, grad) -> None:
        touched, inverse, counts = self.torch.unique(idx, return_inverse=True, return_counts=True)
        shape = (touched.shape[0],) + tuple(grad.shape[1:])
        acc = grad.new_zeros(shape).index_add_(0, inverse, grad)
        sq = grad.new_zeros(shape).index_add_(0, inverse, grad * grad)
        # m per-entry steps in a row divide by a squared-gradient sum that grows by each entry's
        # square; dividing the summed step by G + (m - 1)/m of the batch's squares is exact for
        # m = 1 and keeps a frequent row's summed step bounded (the biases step at rate 1, so the
        # square of the sum, or G alone, would let them jump by hundreds in one batch)
        m = counts.to(grad.dtype).reshape((-1,) + (1,) * (grad.dim() - 1))
        g = gradsq[touched]
        param[touched] -= acc / (g + sq * ((m - 1) / m)).sqrt()
        gradsq[touched] = g + sq

    def sync(self) -> None:
        """Copy weights back into the numpy model."""
        for name in ("W", "C", "bw", "bc", "gW", "gC", "gbw", "gbc"):
            getattr(self.model, name)[...] = getattr(self, name).cpu().numpy()
