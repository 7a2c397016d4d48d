"""The vector-search seam: how a collection's search reaches its vectors.

A :class:`VectorSearcher` answers top-k queries over one collection's segments and says which
generation it searched. The store has one implementation, the view in this process
(``Collection`` uses it unless told otherwise); ``embedsearch.cluster.shards`` has another, the
collection's segments spread over Ray actors. Which one a collection uses is decided where
the program is wired: a :class:`~embedsearch.store.Store` built with ``searchers=`` (a function
from a collection to a searcher, or None for the local one) hands that searcher to sharded
collections. The store never imports the cluster layer, and a sharded collection opened by a
plain ``Store`` is searched in this process, with the same answers.

:func:`partitioned_search` is the partition-and-merge rule both implementations share, here so
that it is tested without Ray: N searchers over disjoint segment sets, merged exactly, equal
the one searcher over all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

MAX_SHARDS = 256


class VectorSearcher(Protocol):
    """Top-k vector search over one collection at one generation."""

    def generation(self) -> int:
        """The committed generation this searcher will search next."""

    def live(self) -> int:
        """Live vectors of the collection."""

    def search(self, queries: np.ndarray, k: int, *, selection=None, nprobe=None, ef_search=None):
        """``(scores, ids, generation searched)``; ids -1 where fewer than k vectors exist."""


def partitioned_search(parts: Sequence[Callable], queries: np.ndarray, k: int, **kwargs) -> tuple[np.ndarray, np.ndarray, int]:
    """Search every part (each returns scores, ids, generation) and merge exactly (best score,
    ties by row id). Raises ValueError when the parts searched different generations (the
    caller asks again)."""
    from embedsearch.store.topk import sort_topk

    answers = [part(queries, k, **kwargs) for part in parts]
    generations = {int(g) for _, _, g in answers}
    if len(generations) != 1:
        raise ValueError(f"parts searched generations {sorted(generations)}")
    scores = np.hstack([s for s, _, _ in answers])
    ids = np.hstack([i for _, i, _ in answers])
    return (*sort_topk(scores, ids, k), generations.pop())


def check_shards(shards: int) -> int:
    """A valid shard count (1 .. MAX_SHARDS)."""
    from embedsearch.errors import InvalidArgument

    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise InvalidArgument(f"shards must be between 1 and {MAX_SHARDS}")
    return shards
