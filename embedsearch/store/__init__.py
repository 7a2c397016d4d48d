"""Collections: FAISS segments plus SQL rows, kept consistent under concurrent use.

The public surface (import these from ``embedsearch.store``; the modules behind them are the
store's own business):

* :class:`Store`: collections by name (create, open, list, drop);
* :class:`Collection`: add / add_vectors / delete / delete_where, get / fetch / count /
  selection, search_vectors, info / verify / repair / optimize / merge;
* :class:`Hit`, :class:`AddResult`: what searches and writes return;
* :class:`StaleRead`: raised inside :meth:`Collection.at_one_generation` reads that saw two
  generations (callers of the public methods never see it).

Inside the store the layers run catalog > collection (facade; reading, writing) > admin
(verify, repair, legacy, maintenance) > rows (batch_rows, filters, payload, lexical, passages,
hits, metadata) > engine (commit, deleter, manifest, view, segments, growing, merging, specs,
selection, locks); pyproject.toml's import-linter contracts enforce them.
"""

from __future__ import annotations

from embedsearch.store.catalog import Store
from embedsearch.store.collection import AddResult, Collection, StaleRead
from embedsearch.store.reading import Hit

__all__ = ["AddResult", "Collection", "Hit", "StaleRead", "Store"]
