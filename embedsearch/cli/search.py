"""``embedsearch search``: semantic search over a collection."""

from __future__ import annotations

import json
import sys

import click

from embedsearch.cli.index import device_option
from embedsearch.cli.output import echo_json, shorten, table
from embedsearch.highlights import mark
from embedsearch.queries import QUERY_FORMATS, read_queries
from embedsearch.search import FUSIONS, MAX_K, MODES, STAGES, plan
from embedsearch.search import search as run_search
from embedsearch.store.filters import parse_filter

HIT_FIELDS = ("id", "score", "text", "metadata", "mode", "ranks", "highlights", "passage", "start", "end")
CONTEXT = 40  # characters shown before the first highlighted word in the table


def _project(hit, fields: list[str] | None) -> dict:
    """A hit as a dict with only the requested fields (metadata keys allowed by name)."""
    full = hit.to_dict()
    if not fields:
        return full
    out = {}
    for f in fields:
        if f in HIT_FIELDS:
            out[f] = full[f]
        elif f.startswith("metadata."):
            out[f] = _dig(hit.metadata, f[len("metadata.") :])
        else:
            out[f] = _dig(hit.metadata, f)
    return out


def _columns(fields: list[str] | None) -> tuple[str, ...]:
    """The document columns that the requested fields need (``--fields id,score`` reads none)."""
    if not fields:
        return ("text", "metadata")
    need = ("text",) if "text" in fields else ()
    return need + (("metadata",) if any(f not in ("id", "score", "text") for f in fields) else ())


def _dig(meta: dict, dotted: str):
    cur = meta
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


@click.command()
@click.argument("name")
@click.argument("query", required=False)
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1, MAX_K), help="Number of hits.")
@click.option("--where", default=None, help='Metadata filter, JSON: {"source": "lee", "year": {"$gte": 2001}}.')
@click.option("--fields", default=None, help="Comma-separated fields to show: id, score, text, metadata, or metadata keys.")
@click.option("--json", "as_json", is_flag=True, help="Print the hits as one JSON array.")
@click.option("--jsonl", "as_jsonl", is_flag=True, help="Print one JSON object per hit.")
@click.option(
    "--queries",
    "queries_file",
    default=None,
    help="Run every query in FILE ('-' for stdin): one per line, or jsonl with a 'query' field. Prints one JSON line per query.",
)
@click.option(
    "--queries-format",
    type=click.Choice(QUERY_FORMATS),
    default="auto",
    show_default=True,
    help="Format of the --queries file, for the whole file: txt (a query per line, whatever it starts with) or "
    "jsonl; auto: jsonl for .jsonl/.ndjson, txt otherwise and for stdin.",
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default=None,
    help="dense: embeddings (FAISS); lexical: words (the full-text index); hybrid: both, fused. "
    "Default: the collection's (index alter --default-mode), else hybrid when it has a lexical index, else dense.",
)
@click.option(
    "--fusion",
    type=click.Choice(FUSIONS),
    default=None,
    help="How hybrid mode fuses the two rankings: relative (alpha x dense + (1 - alpha) x lexical, each side's "
    "scores divided by its best; the default), rrf (reciprocal rank fusion, k=60) or weighted (the same sum, "
    "scores min-max normalised). Default: the collection's (index alter --fusion), else relative.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1),
    default=None,
    help="relative and weighted fusion: the dense side's weight (relative: the base weight, moved per query by how sure "
    "each side is; default: the collection's, else 0.85 relative, 0.5 weighted).",
)
@click.option("--nprobe", type=click.IntRange(1), default=None, help="IVF lists to visit (more: better recall, slower).")
@click.option("--ef-search", type=click.IntRange(1), default=None, help="HNSW candidate list size (more: better recall, slower).")
@click.option(
    "--model",
    "-m",
    default=None,
    help="Model to embed queries with; must be the collection's model "
    "(useful when its directory moved). Default: the collection's.",
)
@click.option(
    "--ray",
    "ray_address",
    default=None,
    metavar="ADDRESS",
    help="The Ray cluster a sharded collection's shards run on (default: RAY_ADDRESS, a cluster running "
    "here, or a local one).",
)
@click.option("--timings", "show_timings", is_flag=True,
              help="Print on stderr the milliseconds each stage of the search took (embed, filter, dense, rows...).")  # fmt: skip
@device_option
@click.pass_obj
def search(
    app,
    name,
    query,
    k,
    where,
    fields,
    as_json,
    as_jsonl,
    queries_file,
    queries_format,
    mode,
    fusion,
    alpha,
    nprobe,
    ef_search,
    model,
    ray_address,
    device,
    show_timings,
):
    """Search collection NAME for QUERY.

    \b
    Filters have MongoDB's semantics (arrays included): $eq $ne $gt $gte $lt $lte
    $in $nin $exists $not $all $size $elemMatch, $and $or $nor; nested metadata with
    dots ("author.name"). A filtered search returns k hits whenever at least k
    documents match the filter (lexical mode: match it and hold a query word).

    \b
    Modes: dense (embeddings), lexical (BM25 on SQLite, ts_rank_cd on PostgreSQL, over the words
    of the query: operators, quotes and punctuation are not syntax, only word separators), hybrid
    (both rankings fused). The table marks the query's words in each hit as **word**; --json gives
    them as highlights with character offsets.

    \b
    Examples:
      embedsearch search news "central bank raises interest rates" -k 5
      embedsearch search news "error E1234 on startup" --mode lexical --json
      embedsearch search news "bushfire smoke" --mode hybrid --fusion weighted --alpha 0.7
      embedsearch search news "bushfires" --where '{"source": "lee"}' --json
      embedsearch search news "floods" --fields id,score,source
      embedsearch search news --queries questions.txt > results.jsonl
      embedsearch search news --queries questions.jsonl --queries-format jsonl
      embedsearch search news "bushfire smoke" --timings
    """
    if (query is None) == (queries_file is None):
        raise click.UsageError("give either a QUERY or --queries FILE")
    spec = parse_filter(where)  # a malformed filter fails before the model loads
    field_list = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
    queries = None
    if queries_file is not None:  # so does a malformed query file
        queries = list(read_queries(queries_file, queries_format, sys.stdin))
        if not queries:
            raise click.UsageError(f"{queries_file}: no queries")
    if queries is None and not query.strip():
        raise click.UsageError("the query is empty")  # before the collection and the model
    if ray_address is not None:
        app.ray_address = ray_address  # before the store is opened
    coll = app.store.open(name)
    coll.device = device
    how = plan(coll, mode, fusion, alpha)  # a bad mode, fusion or alpha fails before the model loads
    mode = how.mode
    embedder = None if mode == "lexical" else coll.load_embedder(device=device, spec=model)
    how = {"mode": mode, "fusion": how.fusion, "alpha": how.alpha, "nprobe": nprobe, "ef_search": ef_search}
    how["timings"] = {} if show_timings else None
    if queries is not None:
        results = run_search(coll, queries, k, where=spec, embedder=embedder, columns=_columns(field_list), **how)
        _echo_timings(how["timings"])
        for q, hits in zip(queries, results, strict=True):
            click.echo(json.dumps({"query": q, "hits": [_project(h, field_list) for h in hits]}, ensure_ascii=False))
        return
    columns = _columns(field_list or (None if as_json or as_jsonl else ["score", "id", "text", "metadata"]))
    hits = run_search(coll, [query], k, where=spec, embedder=embedder, columns=columns, **how)[0]
    _echo_timings(how["timings"])
    if as_json:
        echo_json([_project(h, field_list) for h in hits])
    elif as_jsonl:
        for h in hits:
            click.echo(json.dumps(_project(h, field_list), ensure_ascii=False))
    elif not hits:
        why = " (no document matches the filter)" if spec else ""
        if mode == "lexical" and not why:
            from embedsearch.store.lexical import query_terms

            why = " (no document holds a word of the query)" if query_terms(query) else " (the query has no words)"
        click.echo("no hits" + why)
    else:
        cols = field_list or ["score", "id", "text", "metadata"]
        rows = []
        for rank, h in enumerate(hits, 1):
            d = _project(h, cols)
            if "text" in d and h.text is not None:
                d["text"] = _marked(h.text, (h.extras or {}).get("highlights") or [], (h.extras or {}).get("start"))
            rows.append([rank] + [_cell(c, d.get(c)) for c in cols])
        flex = 1 + cols.index("text") if "text" in cols else None
        click.echo(table(rows, ["#"] + cols, flex=flex))


def _echo_timings(timings: dict[str, float] | None) -> None:
    """``--timings``: each stage's milliseconds, on stderr (stdout keeps only the hits)."""
    if timings:
        stages = ", ".join(f"{stage} {timings[stage] * 1000:.2f}" for stage in STAGES if stage in timings)
        click.echo(f"stage ms: {stages}; total {sum(timings.values()) * 1000:.2f}", err=True)


def _marked(text: str, spans: list[dict], passage_start: int | None = None) -> str:
    """The text with the query's words marked, starting shortly before the first one (so the
    table's shortened column shows it), or at the matching passage of a collection split into
    passages (its highlights are the words in that passage)."""
    if passage_start is not None and (not spans or spans[0]["start"] - passage_start <= CONTEXT):
        start = passage_start
    elif not spans:
        return text
    else:
        start = max(0, spans[0]["start"] - CONTEXT)
    if start and start != passage_start:
        start = text.rfind(" ", 0, start + 1) + 1 or start  # at a word boundary
    shifted = [{**s, "start": s["start"] - start, "end": s["end"] - start} for s in spans]
    return ("…" if start else "") + mark(text[start:], shifted)


def _cell(name: str, value) -> str:
    if name == "score" and isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return shorten(json.dumps(value, ensure_ascii=False), 60)
    return "" if value is None else str(value)
