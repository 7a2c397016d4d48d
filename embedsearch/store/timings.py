"""Where a search's time goes: seconds per stage, added to a dict the caller hands in.

A search (``embedsearch.search.search``, ``Collection.search_vectors``) takes ``timings``: a
dict, or None (the default) when nobody asks. With a dict, each stage's seconds are added to
``timings[stage]`` (a stage that runs several times, per query or on a retried read, adds up);
the stages are :data:`STAGES`. With None the stopwatch does nothing: no clock is read.
"""

from __future__ import annotations

from time import perf_counter

#: every stage a search reports, in the order a search runs them (a bounded set: metric labels)
STAGES = (
    "plan",  # the filter parsed, the collection's stored search settings read (SQL)
    "embed",  # the query texts to vectors
    "view",  # the segments opened or brought to the latest commit (after a write), or the shards asked
    "filter",  # the metadata filter to the matching row ids (SQL; cached per filter and generation)
    "dense",  # FAISS over the segments, or over the shards
    "lexical",  # the full-text index (SQL)
    "fuse",  # the dense and lexical rankings into one (hybrid)
    "passages",  # the passages of a chunked collection: their documents, and each hit's passage
    "rows",  # the hits' rows: ids, text and metadata (SQL)
    "annotate",  # each hit's extras: mode, ranks, highlights
)


class Stopwatch:
    """Adds the time since the last lap to a stage: ``lap("dense")`` after the dense search."""

    __slots__ = ("last", "out")

    def __init__(self, out: dict[str, float] | None) -> None:
        self.out = out
        self.last = perf_counter() if out is not None else 0.0

    def lap(self, stage: str) -> None:
        """Count the time since the last lap (or the start) to ``stage``."""
        if self.out is not None:
            now = perf_counter()
            self.out[stage] = self.out.get(stage, 0.0) + (now - self.last)
            self.last = now

    def skip(self) -> None:
        """Start the next lap now: the time since the last one is counted elsewhere (a call that
        reports its own stages into the same dict) or nowhere."""
        if self.out is not None:
            self.last = perf_counter()
