"""The query pipeline: dense (embed the queries once, search FAISS, filtered), lexical (the full-text
index in SQL, filtered), or hybrid (both, fused); then join the metadata and mark the matches.

Modes (``mode``):

* ``dense``: FAISS over the embeddings; the score is the collection's similarity (cosine or inner product).
* ``lexical``: the lexical index (store/lexical.py); the score is BM25 on SQLite, ``ts_rank_cd`` on
  PostgreSQL; only documents holding a query word are hits.
* ``hybrid``: both rankings, ``depth`` candidates each, fused (search_fusion.py); the score is the
  fused score (RRF, or the weighted sum of min-max normalised scores).

The default is hybrid when the collection has a lexical index, dense otherwise. A filter applies
in every mode, and every mode returns ``k`` distinct documents whenever ``k`` documents match
(lexical: match the filter and hold a query word).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from embedsearch.embedders.base import Embedder
from embedsearch.errors import InvalidArgument
from embedsearch.highlights import highlights
from embedsearch.search_fusion import DEFAULT_FUSION, FUSIONS, check, fuse
from embedsearch.store import Collection, Hit, StaleRead, lexical, passage_rows
from embedsearch.store.filters import parse_filter
from embedsearch.store.stop_words import DEFAULT_LANGUAGE, without_stop_words
from embedsearch.store.stop_words import languages as stop_word_languages
from embedsearch.store.stop_words import stop_words as stop_word_list
from embedsearch.store.timings import STAGES, Stopwatch

MAX_K = 10_000
MODES = ("dense", "lexical", "hybrid")
MIN_DEPTH = 50  # candidates each side gives a hybrid search, at least (and at least 2k)

__all__ = [
    "DEFAULT_FUSION", "FUSIONS", "MAX_K", "MODES", "STAGES", "Plan", "describe_plan", "plan", "resolve_mode", "search",
    "set_defaults",
]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one search runs: its mode, and for hybrid mode the fusion and its alpha (None for rrf)."""

    mode: str
    fusion: str
    alpha: float | None
    stop_words: str = DEFAULT_LANGUAGE  # the language whose stop words lexical matching leaves out


def plan(collection: Collection, mode: str | None = None, fusion: str | None = None, alpha: float | None = None) -> Plan:
    """What a search of ``collection`` runs: each of ``mode``, ``fusion`` and ``alpha`` as given,
    else as the collection stores it (``index alter --default-mode/--fusion/--alpha``), else the
    library's default (hybrid with a lexical index, dense without; :data:`DEFAULT_FUSION`).
    One statement reads both the stored settings and whether there is a lexical index."""
    stored = collection.search_settings()
    has = stored["lexical"]
    _check_mode(mode)
    if mode is None:
        mode = stored["mode"] if stored["mode"] in MODES and (has or stored["mode"] == "dense") else None
        mode = mode or ("hybrid" if has else "dense")
    if mode != "dense" and not has:
        raise InvalidArgument(
            f"collection {collection.name!r} has no lexical index, so it can only be searched in dense mode; "
            f"`embedsearch index alter {collection.name} --lexical` builds one"
        )
    if fusion is None:
        fusion = stored["fusion"] if stored["fusion"] in FUSIONS else DEFAULT_FUSION
    if alpha is None and stored["fusion"] == fusion and stored["alpha"] is not None:
        alpha = stored["alpha"]  # the stored weight goes with the stored fusion, named or not
    language = stored.get("stop_words")
    if language not in stop_word_languages():  # a list no longer shipped: the default, not a broken search
        language = DEFAULT_LANGUAGE
    return Plan(mode, fusion, check(fusion, alpha), language)


def _check_mode(mode: str | None) -> None:
    if mode is not None and mode not in MODES:
        raise InvalidArgument(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")


def describe_plan(p: Plan) -> str:
    """``"hybrid, relative fusion, alpha 0.85"``: how a search runs, in words (and which stop words
    lexical matching leaves out, when not the default's)."""
    out = p.mode
    if p.mode == "hybrid":
        out += f", {p.fusion} fusion" + ("" if p.alpha is None else f", alpha {p.alpha:g}")
    if p.mode != "dense" and p.stop_words != DEFAULT_LANGUAGE:
        out += ", no stop words" if p.stop_words == "none" else f", {p.stop_words} stop words"
    return out


def resolve_mode(collection: Collection, mode: str | None) -> str:
    """The mode a search runs in: ``mode``, or the collection's default (see :func:`plan`)."""
    return plan(collection, mode).mode


def set_defaults(
    collection: Collection,
    *,
    mode: str | None = None,
    fusion: str | None = None,
    alpha: float | None = None,
    stop_words: str | None = None,
    reset: bool = False,
    lexical: bool | None = None,
    dry_run: bool = False,
) -> dict:
    """Store how ``collection`` is searched when a query does not say (``index alter``); the CLI,
    the service and the web page all search through :func:`plan`. Values left None keep what is
    stored (``reset``: forget everything first). ``lexical``: whether the collection will have a
    lexical index when the settings apply (None: as it has now), so a caller can check settings
    before building or dropping one; ``dry_run``: check only. The read, the check and the write
    are one transaction under the collection's writer lock, so concurrent changes compose.
    Returns the stored settings."""
    _check_mode(mode)
    if fusion is not None:
        check(fusion, None)
    if stop_words is not None:
        stop_word_list(stop_words)  # refused when there is no such list

    def change(current: dict) -> dict:
        has = current["lexical"] if lexical is None else lexical
        stored = {} if reset else {k: v for k, v in current.items() if k != "lexical"}
        if mode is not None:
            if mode != "dense" and not has:
                raise InvalidArgument(
                    f"{mode} mode needs a lexical index; `embedsearch index alter {collection.name} --lexical` builds one"
                )
            stored["mode"] = mode
        if fusion is not None:
            stored["alpha"] = stored.get("alpha") if stored.get("fusion") == fusion else None
            stored["fusion"] = fusion
        if stop_words is not None:
            stored["stop_words"] = stop_words
        if alpha is not None:
            stored["fusion"] = stored.get("fusion") or DEFAULT_FUSION  # the weight belongs to a fusion
            stored["alpha"] = check(stored["fusion"], alpha)
        return stored

    if dry_run:
        return change(collection.search_settings())
    return collection.update_search_settings(change)


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
    mode: str | None = None,
    fusion: str | None = None,
    alpha: float | None = None,
    depth: int | None = None,
    vectors: np.ndarray | None = None,
    timings: dict[str, float] | None = None,
) -> list[list[Hit]]:
    """Search ``collection`` for each query text; one list of hits per query.

    The collection's own model is loaded (and checked against its fingerprint) unless an
    ``embedder`` is passed, which must be that same model; lexical mode needs no model.
    ``columns`` (of "text", "metadata") are read for the hits; leave one out and it is None.
    Each hit's ``extras`` say how it matched: ``mode``, the ``ranks`` it had on each side of a
    hybrid search, and ``highlights`` (query words in its text, when the text is read).
    ``vectors``: the queries already embedded with the collection's model (the service batches
    concurrent queries); ``depth``: candidates each side of a hybrid search gives (default
    ``max(2k, 50)``); ``timings``: a dict the seconds of each stage the search runs are added
    to, by stage name (:data:`STAGES`: plan, embed, view, filter, dense, lexical, fuse, passages,
    rows, annotate; see store/timings.py). Left None, no clock is read.
    """
    clock = Stopwatch(timings)
    if not 1 <= k <= MAX_K:
        raise InvalidArgument(f"k must be between 1 and {MAX_K}")
    spec = parse_filter(where) if not isinstance(where, dict) else where  # fail on a bad filter before embedding
    mode, fusion, alpha, language = dataclasses.astuple(plan(collection, mode, fusion, alpha))
    stop = stop_word_list(language)
    queries = list(queries)
    clock.lap("plan")
    if mode != "lexical" and vectors is None:
        if embedder is None:
            embedder = collection.load_embedder()
        else:
            collection.check_embedder(embedder)
        vectors = embedder.embed(queries)
        clock.lap("embed")
    if mode == "dense":
        results = collection.search_vectors(
            vectors, k, where=spec, nprobe=nprobe, ef_search=ef_search, columns=columns, timings=timings
        )
        clock.skip()  # search_vectors counted its stages
        out = [_annotate(hits, terms(q, stop), "dense", columns) for q, hits in zip(queries, results, strict=True)]
        clock.lap("annotate")
        return out
    n = k if mode == "lexical" else max(k, depth or max(2 * k, MIN_DEPTH))
    return collection.at_one_generation(
        lambda: _search_words(
            collection, queries, vectors, k, n, spec, mode, fusion, alpha, nprobe, ef_search, columns, stop, timings
        )
    )


def terms(query: str, stop: frozenset[str]) -> list[str]:
    """The words a lexical search matches and highlights mark: the query's words, less the stop
    words unless the query has nothing else."""
    return without_stop_words(lexical.query_terms(query, limit=None), stop)[: lexical.MAX_TERMS]


def _search_words(
    collection, queries, vectors, k, n, spec, mode, fusion, alpha, nprobe, ef_search, columns, stop, timings=None
) -> list[list[Hit]]:
    """Lexical and hybrid searches, once: raises StaleRead when a commit removed a ranked
    document before its row was read (the caller runs it again)."""
    clock = Stopwatch(timings)
    selection = collection.selection(spec)
    clock.lap("filter")
    if selection is not None and not selection.count:
        return [[] for _ in queries]
    selected = None if selection is None else selection.doc_ids
    dense = None
    if mode == "hybrid":
        dense = collection.search_vectors(vectors, n, where=spec, nprobe=nprobe, ef_search=ef_search, columns=(), timings=timings)
        clock.skip()  # search_vectors counted its stages
    out = []
    for i, q in enumerate(queries):
        words = terms(q, stop)
        lex_ids, lex_scores = lexical.search_selected(collection.store.engine, collection.id, words, n, selected)
        clock.lap("lexical")
        if dense is None:
            ranked = [(int(r), float(s), None) for r, s in zip(lex_ids.tolist(), lex_scores.tolist(), strict=True)]
        else:
            d_ids = np.asarray([h.row_id for h in dense[i]], dtype=np.int64)
            d_scores = np.asarray([h.score for h in dense[i]], dtype=np.float64)
            f = fuse((d_ids, d_scores), (lex_ids, lex_scores), k, fusion=fusion, alpha=alpha)
            ranked = [
                (int(r), float(s), {"ranks": {"dense": int(dr) or None, "lexical": int(lr) or None}})
                for r, s, dr, lr in zip(f.ids, f.scores, f.dense_rank, f.lexical_rank, strict=True)
            ]
            clock.lap("fuse")
        rows = collection.fetch([r for r, _, _ in ranked], columns)
        if len(rows) != len({r for r, _, _ in ranked}):
            raise StaleRead  # a commit replaced or deleted a ranked document meanwhile
        hits = [Hit(rows[r][0], s, rows[r][1], rows[r][2], r, extra) for r, s, extra in ranked]
        clock.lap("rows")
        if collection.chunking is not None:
            _add_passages(collection, hits, {h.row_id: h.extras for h in dense[i]} if dense is not None else {}, words)
            clock.lap("passages")
        out.append(_annotate(hits, words, mode, columns))
        clock.lap("annotate")
    return out


def _add_passages(collection: Collection, hits: list[Hit], dense: dict, words: list[str]) -> None:
    """The passage of each hit of a chunked collection: the one dense search scored best, else
    (found by its words alone) the one holding most query words."""
    wanted = set(words)
    lexical_only = [h for h in hits if h.row_id not in dense]
    spans = {}
    if lexical_only:
        with collection.store.engine.connect() as conn:
            spans = passage_rows.spans_of(conn, collection.id, [h.row_id for h in lexical_only])
    for h in hits:
        found = dense.get(h.row_id)
        if found is not None:
            a, b = found["start"], found["end"]
        else:
            options = spans.get(h.row_id) or [(0, len(h.text or ""))]
            text = h.text or ""
            a, b = max(options, key=lambda ab: len(highlights(text[ab[0] : ab[1]], list(wanted))))
        h.extras = {**(h.extras or {}), "passage": None if h.text is None else h.text[a:b], "start": a, "end": b}


def _annotate(hits: list[Hit], words: list[str], mode: str, columns: Sequence[str]) -> list[Hit]:
    marked = words if "text" in columns else []
    for h in hits:
        extras = {"mode": mode, **(h.extras or {})}
        if "text" in columns and h.text is not None:
            if "start" in extras:  # a passage: the words in it (offsets still in the whole text)
                a = extras["start"]
                extras["highlights"] = [
                    {**w, "start": w["start"] + a, "end": w["end"] + a} for w in highlights(h.text[a : extras["end"]], marked)
                ]
            else:
                extras["highlights"] = highlights(h.text, marked)
        h.extras = extras
    return hits
