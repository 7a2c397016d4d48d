"""Compiled inner loops of GloVe (numba): co-occurrence counting and AdaGrad epochs.

Imported only when GloVe runs, so numba's compile cost never touches other commands.
Functions are cached to disk (``cache=True``) after their first compilation.

Counting. Every token looks back ``window`` positions inside its document and adds
1/distance to the pair (min(i, j), max(i, j)); the matrix is symmetric, so only its upper
triangle is counted and the lower half is mirrored at the end. Pairs of two frequent words
(both ids below ``dense_k``; ids are frequency ranks, so this is where most events land) go
to a packed dense triangle; the rest go to an open-addressing hash table of fixed size.
Thread ``t`` of ``T`` owns the pairs whose smaller id is ``t`` mod ``T``: all threads scan
the same token stream but never write the same cell, so no locks and no merge step. When a
thread's table passes its load limit, the caller drains it into sorted arrays and
continues from where the thread stopped, so memory stays bounded by the table size.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_EMPTY = np.int64(-1)


@njit(cache=True, nogil=True)
def _slot(key, n_slots):
    # multiplicative hashing (Knuth; keys are i * V + j, close together for a row), then the
    # hash's high 32 bits mapped onto [0, n_slots) by a multiply-shift, so a table can have any
    # size, not only a power of two
    h = (key * np.int64(-7046029254386353131)) ^ (key >> np.int64(29))
    return (((h >> np.int64(32)) & np.int64(0xFFFFFFFF)) * n_slots) >> np.int64(32)


@njit(cache=True, parallel=True)
def count_cooccurrences(ids, doc_ends, window, dense_k, dense, keys, vals, filled, positions, max_fill, vocab_size):
    """Count co-occurrences of ``ids`` (documents end at ``doc_ends``) into ``dense`` (packed
    upper triangle over ids < dense_k) and the per-thread hash tables ``keys``/``vals``.

    ``positions[t]`` is where thread t resumes; a thread stops early when its table holds
    ``max_fill`` entries and reports that position. Returns True when every thread finished.
    """
    n_threads = keys.shape[0]
    n_slots = np.int64(keys.shape[1])
    n = ids.shape[0]
    n_docs = doc_ends.shape[0]
    done = np.zeros(n_threads, dtype=np.bool_)
    for t in prange(n_threads):
        p = positions[t]
        # find the document that holds position p
        lo = 0
        hi = n_docs
        while lo < hi:
            mid = (lo + hi) // 2
            if doc_ends[mid] <= p:
                lo = mid + 1
            else:
                hi = mid
        doc = lo
        doc_start = 0 if doc == 0 else doc_ends[doc - 1]
        fill = filled[t]
        stopped = False
        while p < n:
            while doc_ends[doc] <= p:
                doc += 1
                doc_start = doc_ends[doc - 1]
            if fill >= max_fill:
                stopped = True
                break
            wi = np.int64(ids[p])
            first = p - window
            if first < doc_start:
                first = doc_start
            for q in range(p - 1, first - 1, -1):
                wj = np.int64(ids[q])
                if wi < wj:
                    a = wi
                    b = wj
                else:
                    a = wj
                    b = wi
                if a % n_threads != t:
                    continue
                # a pair of the same word is counted for both orders, as the reference does
                w = np.float32(1.0) / np.float32(p - q)
                if a == b:
                    w = w + w
                if b < dense_k:
                    dense[b * (b + 1) // 2 + a] += w
                else:
                    key = a * vocab_size + b
                    h = _slot(key, n_slots)
                    while True:
                        k = keys[t, h]
                        if k == key:
                            vals[t, h] += w
                            break
                        if k == -1:
                            keys[t, h] = key
                            vals[t, h] = w
                            fill += 1
                            break
                        h += 1
                        if h == n_slots:
                            h = 0
            p += 1
        positions[t] = p
        filled[t] = fill
        done[t] = not stopped
    return done.all()


@njit(cache=True)
def dense_nonzeros(dense):
    n = 0
    for x in range(dense.shape[0]):
        if dense[x] != 0:
            n += 1
    return n


@njit(cache=True)
def dense_into(dense, dense_k, rows, cols, vals, pos):
    """Write the non-zero cells of the packed triangle as (a, b, value), a <= b, from ``pos``;
    returns the position after the last one written."""
    for b in range(dense_k):
        base = b * (b + 1) // 2
        for a in range(b + 1):
            v = dense[base + a]
            if v != 0:
                rows[pos] = a
                cols[pos] = b
                vals[pos] = v
                pos += 1
    return pos


@njit(cache=True)
def drain_table(keys, vals, t):
    """The used slots of thread ``t``'s table as (keys, values), unsorted; empties the table."""
    n = 0
    for h in range(keys.shape[1]):
        if keys[t, h] >= 0:
            n += 1
    k = np.empty(n, dtype=np.int64)
    v = np.empty(n, dtype=np.float32)
    i = 0
    for h in range(keys.shape[1]):
        if keys[t, h] >= 0:
            k[i] = keys[t, h]
            v[i] = vals[t, h]
            i += 1
            keys[t, h] = -1
            vals[t, h] = 0
    return k, v


@njit(cache=True)
def table_into(keys, vals, t, vocab_size, rows, cols, out, pos):
    """Write thread ``t``'s table as (a, b, value) from ``pos``; returns the next position."""
    for h in range(keys.shape[1]):
        k = keys[t, h]
        if k >= 0:
            rows[pos] = k // vocab_size
            cols[pos] = k % vocab_size
            out[pos] = vals[t, h]
            pos += 1
    return pos


@njit(cache=True)
def table_used(keys, t):
    n = 0
    for h in range(keys.shape[1]):
        if keys[t, h] >= 0:
            n += 1
    return n


@njit(cache=True)
def keys_into(keys, kvals, vocab_size, rows, cols, vals, pos):
    """Write pair keys a * vocab_size + b as (a, b, value) from ``pos``; returns the next position."""
    for x in range(keys.shape[0]):
        rows[pos] = keys[x] // vocab_size
        cols[pos] = keys[x] % vocab_size
        vals[pos] = kvals[x]
        pos += 1
    return pos


@njit(cache=True)
def mirror_into(rows, cols, vals, n_upper):
    """Append (b, a, v) for every off-diagonal (a, b, v) among the first ``n_upper`` entries."""
    pos = n_upper
    for x in range(n_upper):
        if rows[x] != cols[x]:
            rows[pos] = cols[x]
            cols[pos] = rows[x]
            vals[pos] = vals[x]
            pos += 1
    return pos


@njit(cache=True)
def shuffle_log(rows, cols, vals, seed):
    """Shuffle three parallel arrays in place (Fisher-Yates, seeded) and replace each value by its log."""
    np.random.seed(seed)
    for x in range(rows.shape[0] - 1, 0, -1):
        y = np.random.randint(0, x + 1)
        r = rows[x]
        rows[x] = rows[y]
        rows[y] = r
        c = cols[x]
        cols[x] = cols[y]
        cols[y] = c
        v = vals[x]
        vals[x] = vals[y]
        vals[y] = v
    for x in range(vals.shape[0]):
        vals[x] = np.log(vals[x])


@njit(cache=True)
def bucket_order(n_buckets, n, seed):
    """A random bucket for each of ``n`` entries, as an order that groups them by bucket, and the counts."""
    np.random.seed(seed)
    bucket = np.empty(n, dtype=np.int32)
    counts = np.zeros(n_buckets, dtype=np.int64)
    for x in range(n):
        b = np.random.randint(0, n_buckets)
        bucket[x] = b
        counts[b] += 1
    starts = np.zeros(n_buckets, dtype=np.int64)
    for b in range(1, n_buckets):
        starts[b] = starts[b - 1] + counts[b - 1]
    order = np.empty(n, dtype=np.int64)
    for x in range(n):
        order[starts[bucket[x]]] = x
        starts[bucket[x]] += 1
    return order, counts


@njit(cache=True, parallel=True, fastmath=True)
def glove_epoch(W, C, bw, bc, gW, gC, gbw, gbc, rows, cols, logx, starts, stops, lr, log_x_max, alpha, grad_clip):
    """One AdaGrad pass over the non-zero entries (Hogwild: threads share the weights).

    Thread t trains entries ``starts[t]:stops[t]`` of the (pre-shuffled) entries. Returns the
    summed weighted squared error 0.5 * f(X) * (w.c + b + b' - log X)^2, where
    f(X) = min(1, (X / x_max) ^ alpha) is computed here from log X (one exp per entry, so the
    entries take 12 bytes, not 16).

    The update is the reference C code's: a vector component's gradient f(X) * diff * c is
    clipped to ``grad_clip`` and then scaled by ``lr``; the biases take the unscaled gradient
    f(X) * diff, so they learn at AdaGrad rate 1 whatever ``lr`` is (their squared-gradient sums
    grow by f(X)^2 * diff^2). Scaling the bias step by ``lr`` too (what this kernel did before)
    leaves the biases under-fitted and WordSim-353 0.03 lower at lr 0.1 (issue 18).
    """
    n_threads = starts.shape[0]
    dim = W.shape[1]
    costs = np.zeros(n_threads, dtype=np.float64)
    for t in prange(n_threads):
        cost = 0.0
        for k in range(starts[t], stops[t]):
            i = rows[k]
            j = cols[k]
            lx = logx[k]
            diff = bw[i] + bc[j] - lx
            for d in range(dim):
                diff += W[i, d] * C[j, d]
            fx = np.float32(1.0)
            if lx < log_x_max:
                fx = np.exp(alpha * (lx - log_x_max))
            fdiff = fx * diff
            cost += 0.5 * fdiff * diff
            for d in range(dim):
                g1 = fdiff * C[j, d]
                g2 = fdiff * W[i, d]
                if g1 > grad_clip:
                    g1 = grad_clip
                elif g1 < -grad_clip:
                    g1 = -grad_clip
                if g2 > grad_clip:
                    g2 = grad_clip
                elif g2 < -grad_clip:
                    g2 = -grad_clip
                g1 *= lr
                g2 *= lr
                W[i, d] -= g1 / np.sqrt(gW[i, d])
                C[j, d] -= g2 / np.sqrt(gC[j, d])
                gW[i, d] += g1 * g1
                gC[j, d] += g2 * g2
            bw[i] -= fdiff / np.sqrt(gbw[i])
            bc[j] -= fdiff / np.sqrt(gbc[j])
            gbw[i] += fdiff * fdiff
            gbc[j] += fdiff * fdiff
        costs[t] = cost
    return costs.sum()
