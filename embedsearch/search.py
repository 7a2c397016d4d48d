"""The query pipeline: embed the queries once, search FAISS (filtered), join the metadata."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from embedsearch.embedders.base import Embedder
from embedsearch.errors import CorpusError, InvalidArgument
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
) -> list[list[Hit]]:
    """Search ``collection`` for each query text; one list of hits per query.

    The collection's own model is loaded (and checked against its fingerprint) unless an
    ``embedder`` is passed, which must be that same model.
    """
    if not 1 <= k <= MAX_K:
        raise InvalidArgument(f"k must be between 1 and {MAX_K}")
    spec = parse_filter(where) if not isinstance(where, dict) else where  # fail on a bad filter before embedding
    if embedder is None:
        embedder = collection.load_embedder()
    else:
        collection.check_embedder(embedder)
    vectors = embedder.embed(list(queries))
    return collection.search_vectors(vectors, k, where=spec, nprobe=nprobe, ef_search=ef_search)


def read_queries(path: str, stream: IO[str] | None = None) -> Iterator[str]:
    """Queries from a file (or ``-``): one per line, or jsonl objects with a ``query`` field."""
    handle = stream if path == "-" else None
    if handle is None:
        p = Path(path)
        if not p.is_file():
            raise CorpusError(f"{path}: no such file")
        handle = open(p, encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        for lineno, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            if text.startswith("{"):
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
                q = obj.get("query") if isinstance(obj, dict) else None
                if not isinstance(q, str) or not q.strip():
                    raise CorpusError(f"{path}:{lineno}: expected a non-empty 'query' string")
                yield q.strip()
            else:
                yield text
    except UnicodeDecodeError:
        raise CorpusError(f"{path}: not valid UTF-8") from None
    finally:
        if handle is not stream:
            handle.close()
