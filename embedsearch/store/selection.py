"""Filter results as bitmaps, computed once per (filter, generation) and handed to FAISS.

A filtered search needs the set of live row ids whose metadata matches the filter. SQL computes
it (with the payload indexes where they apply); this module keeps the answer per collection
as a :class:`Selection`: the sorted ids, and a bitmap over row ids that FAISS reads directly
through ``IDSelectorBitmap`` (one bit test per candidate, nothing built per query). Every commit
bumps the collection's generation; a selection is used only by views at or before the generation
it was computed at, so a commit invalidates it and the next search computes it anew.

Consistency without a snapshot transaction: the generation is read before and after the row
query, and an unchanged generation proves that no commit happened in between (the same rule as
the segment list, :meth:`SegmentSet._read_state`). A search uses a selection only with a view
of the same generation (store/reading.py): a newer selection would leave out the old row of a
document updated after the view, whose new row the view does not hold yet, and the search would
come back short.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

CACHE_ENTRIES = 64  # filters kept per collection
CACHE_BYTES = 256 << 20  # and at most this much memory for their ids and bitmaps


@dataclass
class Selection:
    """Live row ids matching one filter, as of ``generation``. In a chunked collection ``ids``
    are the vector ids of the matching documents' passages and ``docs`` the documents' row ids."""

    ids: np.ndarray  # sorted, unique int64: what FAISS is restricted to
    generation: int
    _bitmap: np.ndarray | None = field(default=None, repr=False)
    docs: np.ndarray | None = None  # sorted, unique document row ids, when they differ from ids

    @property
    def doc_ids(self) -> np.ndarray:
        """Row ids of the matching documents (the lexical index and deletes key on them)."""
        return self.ids if self.docs is None else self.docs

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        size = self.ids.nbytes + (0 if self.docs is None else self.docs.nbytes)
        if self._bitmap is not None:
            size += self._bitmap.nbytes
        return size

    def bitmap(self) -> np.ndarray:
        """Bit ``i`` set when row id ``i`` is selected (FAISS's ``IDSelectorBitmap`` layout:
        byte ``i >> 3``, bit ``i & 7``)."""
        if self._bitmap is None:
            hi = int(self.ids[-1]) + 1 if len(self.ids) else 0
            bits = np.zeros((hi + 7) // 8 * 8, dtype=bool)
            bits[self.ids] = True
            self._bitmap = np.packbits(bits, bitorder="little")
        return self._bitmap

    def selector(self):
        """A FAISS selector over this selection (valid while the selection is alive)."""
        import faiss

        return faiss.IDSelectorBitmap(self.bitmap())

    def between(self, lo: int, hi: int) -> np.ndarray:
        """The selected ids in [lo, hi) (a view of ``ids``)."""
        a, b = np.searchsorted(self.ids, [lo, hi])
        return self.ids[a:b]

    def count_between(self, lo: int, hi: int) -> int:
        a, b = np.searchsorted(self.ids, [lo, hi])
        return int(b - a)


def filter_key(spec: dict) -> str:
    """A canonical text for a parsed filter (key order does not matter to a filter's meaning
    except inside operators' values, which json keeps as they are)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class SelectionCache:
    """The latest selection of each recently used filter, least recently used dropped first."""

    def __init__(self, entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Selection] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str, generation: int) -> Selection | None:
        """A selection computed at ``generation`` or later, or None."""
        with self._lock:
            sel = self._items.get(key)
            if sel is None or sel.generation < generation:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return sel

    def put(self, key: str, sel: Selection) -> None:
        with self._lock:
            old = self._items.get(key)
            if old is not None and old.generation > sel.generation:
                return
            self._items[key] = sel
            self._items.move_to_end(key)
            self._shrink()

    def _shrink(self) -> None:
        total = sum(s.nbytes for s in self._items.values())
        while self._items and (len(self._items) > self.entries or total > self.max_bytes):
            _, dropped = self._items.popitem(last=False)
            total -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
