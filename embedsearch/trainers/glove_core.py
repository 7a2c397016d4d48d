"""GloVe (Pennington, Socher and Manning, 2014) as plain functions over numpy arrays.

:func:`cooccurrence` counts the symmetric, 1/distance-weighted co-occurrence matrix in
bounded memory; :class:`GloveModel` fits word and context vectors to log X with weighted
least squares, f(x) = min(1, (x / x_max) ** alpha), and AdaGrad, as the reference C code does:
vectors and biases start uniform in [-0.5, 0.5] / dim, squared-gradient sums start at 1, the
entries are shuffled once, and the final vectors are word + context. On CPU the epochs run in
compiled Hogwild threads (numba); on a CUDA device they run in PyTorch mini-batches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from embedsearch.errors import InvalidArgument

#: entries per thread hash table are capped at this fraction of its slots before draining
_MAX_LOAD = 0.6


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


def cooccurrence(
    ids: np.ndarray,
    doc_ends: np.ndarray,
    vocab_size: int,
    window: int,
    *,
    threads: int | None = None,
    memory_mb: int = 1024,
    dense_words: int | None = None,
    table_slots: int | None = None,
) -> Cooccurrence:
    """Count X[i, j] = sum over pairs within ``window`` of 1 / distance, symmetric.

    ``ids`` are vocabulary ids (frequency ranks) with documents ending at ``doc_ends``.
    ``memory_mb`` bounds the counting structures (dense triangle plus hash tables); the result
    itself is proportional to the number of non-zero cells. ``dense_words`` and
    ``table_slots`` override the split of that memory (tests use them to force draining).
    """
    from embedsearch.trainers import _glove_kernels as K

    if window < 1:
        raise InvalidArgument("window must be at least 1")
    threads = threads or default_threads()
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    doc_ends = np.ascontiguousarray(doc_ends, dtype=np.int64)
    budget = max(64, memory_mb) * 2**20
    if dense_words is None:
        # a quarter of the budget for the dense triangle of the most frequent words
        dense_words = int((2 * (budget // 4) / 4) ** 0.5)
    dense_k = int(min(vocab_size, max(1, dense_words)))
    dense = np.zeros(dense_k * (dense_k + 1) // 2, dtype=np.float32)
    # the rest for the tables: 12 bytes per slot, a power of two per thread
    slots = 1 << max(10, int(np.log2(max(1024, (budget - dense.nbytes) // (12 * threads)))))
    # a small corpus cannot fill that: a thread sees at most n_tokens * window / threads pairs
    needed = int(ids.shape[0]) * int(window) / threads / _MAX_LOAD + 1024
    slots = min(slots, 1 << int(np.ceil(np.log2(needed))))
    if table_slots is not None:
        slots = 1 << max(4, int(np.log2(table_slots)))
    keys = np.full((threads, slots), -1, dtype=np.int64)
    vals = np.zeros((threads, slots), dtype=np.float32)
    filled = np.zeros(threads, dtype=np.int64)
    positions = np.zeros(threads, dtype=np.int64)
    # a token adds at most 2 * window entries after the fill check, so keep that much headroom
    max_fill = max(1, min(int(slots * _MAX_LOAD), slots - 2 * window - 1))
    chunks: list[tuple[np.ndarray, np.ndarray]] = []
    drains = 0
    while True:
        done = K.count_cooccurrences(
            ids, doc_ends, int(window), dense_k, dense, keys, vals, filled, positions, max_fill, int(vocab_size)
        )
        for t in range(threads):
            if filled[t] >= max_fill or done:
                used = keys[t] >= 0
                if used.any():
                    k = keys[t][used]
                    order = np.argsort(k, kind="stable")
                    chunks.append((k[order], vals[t][used][order]))
                keys[t].fill(-1)
                vals[t].fill(0)
                filled[t] = 0
                if not done:
                    drains += 1
        if done:
            break
    if chunks:
        keys_all = np.concatenate([c[0] for c in chunks])
        vals_all = np.concatenate([c[1] for c in chunks])
        if drains:
            # the same pair may sit in several drained chunks: sort and sum runs
            order = np.argsort(keys_all, kind="stable")
            keys_all, vals_all = keys_all[order], vals_all[order]
            starts = np.flatnonzero(np.concatenate(([True], keys_all[1:] != keys_all[:-1])))
            vals_all = np.add.reduceat(vals_all, starts).astype(np.float32)
            keys_all = keys_all[starts]
        sparse_a = (keys_all // vocab_size).astype(np.int32)
        sparse_b = (keys_all % vocab_size).astype(np.int32)
    else:
        sparse_a = sparse_b = np.zeros(0, dtype=np.int32)
        vals_all = np.zeros(0, dtype=np.float32)
    dense_a, dense_b, dense_v = K.dense_to_coo(dense, dense_k)
    a = np.concatenate([dense_a, sparse_a])
    b = np.concatenate([dense_b, sparse_b])
    v = np.concatenate([dense_v, vals_all])
    off = a != b
    return Cooccurrence(
        rows=np.concatenate([a, b[off]]),
        cols=np.concatenate([b, a[off]]),
        values=np.concatenate([v, v[off]]),
        vocab_size=int(vocab_size),
        drains=drains,
    )


class GloveModel:
    """Weights and optimiser state of one GloVe fit."""

    def __init__(self, vocab_size: int, dim: int, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        scale = np.float32(1.0 / dim)
        self.W = ((rng.random((vocab_size, dim), dtype=np.float32) - 0.5) * scale).astype(np.float32)
        self.C = ((rng.random((vocab_size, dim), dtype=np.float32) - 0.5) * scale).astype(np.float32)
        self.bw = ((rng.random(vocab_size, dtype=np.float32) - 0.5) * scale).astype(np.float32)
        self.bc = ((rng.random(vocab_size, dtype=np.float32) - 0.5) * scale).astype(np.float32)
        self.gW = np.ones_like(self.W)
        self.gC = np.ones_like(self.C)
        self.gbw = np.ones_like(self.bw)
        self.gbc = np.ones_like(self.bc)
        self.rng = rng

    def vectors(self) -> np.ndarray:
        """Word plus context vectors (the reference's default output)."""
        return (self.W + self.C).astype(np.float32)


def prepare_targets(cooc: Cooccurrence, x_max: float, alpha: float, rng: np.random.Generator):
    """Shuffle the entries once and precompute log X and f(X)."""
    order = rng.permutation(cooc.nnz)
    rows = cooc.rows[order]
    cols = cooc.cols[order]
    x = cooc.values[order]
    logx = np.log(x).astype(np.float32)
    fx = np.minimum(np.float32(1.0), (x / np.float32(x_max)) ** np.float32(alpha)).astype(np.float32)
    return rows, cols, logx, fx


def epoch_cpu(model: GloveModel, targets, lr: float, threads: int, grad_clip: float = 100.0) -> float:
    """One compiled Hogwild epoch; returns the mean cost per entry."""
    from embedsearch.trainers import _glove_kernels as K

    rows, cols, logx, fx = targets
    total = K.glove_epoch(
        model.W, model.C, model.bw, model.bc, model.gW, model.gC, model.gbw, model.gbc,
        rows, cols, logx, fx, np.float32(lr), int(threads), np.float32(grad_clip),
    )  # fmt: skip
    return float(total) / max(1, rows.shape[0])


class TorchGlove:
    """The same objective and AdaGrad in PyTorch mini-batches, for CUDA devices.

    Updates within a batch are summed per row (``index_add_``) before the AdaGrad step, the
    usual mini-batch form of the per-entry updates the CPU path makes.
    """

    def __init__(self, model: GloveModel, targets, device: str, batch_size: int = 1 << 16) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.device = torch.device(device)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)  # noqa: E731
        self.W, self.C, self.bw, self.bc = t(model.W), t(model.C), t(model.bw), t(model.bc)
        self.gW, self.gC, self.gbw, self.gbc = t(model.gW), t(model.gC), t(model.gbw), t(model.gbc)
        rows, cols, logx, fx = targets
        self.rows, self.cols = t(rows.astype(np.int64)), t(cols.astype(np.int64))
        self.logx, self.fx = t(logx), t(fx)
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
        touched, inverse = self.torch.unique(idx, return_inverse=True)
        acc = grad.new_zeros((touched.shape[0],) + tuple(grad.shape[1:])).index_add_(0, inverse, grad)
        param[touched] -= acc / gradsq[touched].sqrt()
        gradsq[touched] += acc * acc

    def sync(self) -> None:
        """Copy weights back into the numpy model."""
        for name in ("W", "C", "bw", "bc", "gW", "gC", "gbw", "gbc"):
            getattr(self.model, name)[...] = getattr(self, name).cpu().numpy()
