"""The query pipeline: embed the queries once, search FAISS (filtered), join the metadata."""

from __future__ import annotations

from collections.abc import Sequence

from embedsearch.embedders.base import Embedder
from embedsearch.errors import InvalidArgument
from embedsearch.store.collection import Collection, Hit
from embedsearch.store.filters import parse_filter

MAX_K = 10_000


def search(
    collection: Collection,
    queries: Sequence[str],
    k: int = 10,
    *,
    where: dict | str | None = None,
    embedder: Embedder | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    columns: Sequence[str] = ("text", "metadata"),
) -> list[list[Hit]]:
    """Search ``collection`` for each query text; one list of hits per query.

    The collection's own model is loaded (and checked against its fingerprint) unless an
    ``embedder`` is passed, which must be that same model. ``columns`` (of "text", "metadata")
    are read for the hits; leave one out and it is None.
    """
    if not 1 <= k <= MAX_K:
        raise InvalidArgument(f"k must be between 1 and {MAX_K}")
    spec = parse_filter(where) if not isinstance(where, dict) else where  # fail on a bad filter before embedding
    if embedder is None:
        embedder = collection.load_embedder()
    else:
        collection.check_embedder(embedder)
    vectors = embedder.embed(list(queries))
    return collection.search_vectors(vectors, k, where=spec, nprobe=nprobe, ef_search=ef_search, columns=columns)

