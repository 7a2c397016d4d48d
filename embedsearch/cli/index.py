"""``embedsearch index``: create, add, delete, list, info, verify, repair, optimize, drop (get, docs and
count are in ``cli/documents.py``)."""

from __future__ import annotations

import inspect
import json
import sys

import click

from embedsearch.cli.output import echo_json, table
from embedsearch.corpus import FORMATS, Duplicates, ReadOptions, iter_documents, resolve_sources, scan, spool_stdin
from embedsearch.progress import wanted as progress_wanted
from embedsearch.store.specs import SPEC_HELP

MAX_WARNINGS = 20


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def device_option(f):
    return click.option(
        "--device",
        default=None,
        help="Where the model runs: cpu, cuda, cuda:1 … (default: CUDA when available). 'cpu' also keeps FAISS on the CPU.",
    )(f)


def word_model_options(f):
    """--pooling and --oov: how a word-vector model turns a text into one vector."""
    f = click.option(
        "--oov",
        type=click.Choice(["skip", "subword"]),
        default=None,
        help="Word-vector models: skip unknown words, or build them from character n-grams (FastText; its default).",
    )(f)
    return click.option(
        "--pooling",
        type=click.Choice(["mean", "sif"]),
        default=None,
        help="Word-vector models: average word vectors (mean, default) or SIF weighting with the common component removed.",
    )(f)


def read_options(f):
    """Options that say how input files become documents (shared with training later)."""
    opts = [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(FORMATS),
            default=None,
            help="Input format (default: from the extension; stdin: txt).",
        ),
        click.option("--per-line", is_flag=True, help="txt: one document per non-blank line instead of one per file."),
        click.option("--text-field", default="text", show_default=True, help="jsonl/csv: field holding the text."),
        click.option("--id-field", default="id", show_default=True, help="jsonl/csv: field holding the document id."),
        click.option("--encoding", default="utf-8", show_default=True, help="Input encoding, e.g. latin-1."),
        click.option("--skip-bad", is_flag=True, help="Skip malformed records (reported on stderr) instead of stopping."),
        click.option("--glob", "glob_pattern", default="**/*", show_default=True, help="Files to take from directories."),
        click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE", help="Metadata added to every document (repeatable)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _parse_meta(pairs: tuple[str, ...]) -> dict:
    meta = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--meta")
        try:
            meta[key] = json.loads(value)  # numbers, booleans and JSON stay typed
        except json.JSONDecodeError:
            meta[key] = value
    return meta


def build_read_options(fmt, per_line, text_field, id_field, encoding, skip_bad, glob_pattern, meta) -> ReadOptions:
    return ReadOptions(
        format=fmt,
        per_line=per_line,
        text_field=text_field,
        id_field=id_field,
        encoding=encoding,
        skip_bad=skip_bad,
        glob=glob_pattern,
        metadata=_parse_meta(meta),
    )


class Warnings:
    """Collects skipped-record messages; prints the first few, counts the rest."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        if self.count <= MAX_WARNINGS:
            click.echo(f"skipped: {message}", err=True)

    def summary(self) -> None:
        if self.count > MAX_WARNINGS:
            click.echo(f"skipped {self.count} records in all ({self.count - MAX_WARNINGS} not shown)", err=True)


def with_examples(text: str):
    """Append an examples block to a command's help (kept verbatim by click)."""

    def deco(f):
        # dedent first: the examples are not indented like the docstring, which would leave
        # the docstring's own indentation in the help
        f.__doc__ = inspect.cleandoc(f.__doc__ or "") + "\n\n\b\nExamples:\n" + text
        return f

    return deco


@click.group()
def index() -> None:
    """Create and maintain collections (FAISS vectors + SQL metadata)."""


@index.command("create")
@click.argument("name")
@click.option(
    "--model",
    "-m",
    default="minilm",
    show_default=True,
    help="Built-in model name (minilm, minilm-onnx, minilm-int8, hashing) or a model directory.",
)
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnx", "int8"]),
    default=None,
    help="Sentence models: run on PyTorch (default), ONNX Runtime fp32 (same vectors, shares the fingerprint) "
    "or ONNX Runtime int8 (own fingerprint); the ONNX model is built offline on first use and cached "
    "under the data directory (_models).",
)
@click.option("--index", "index_spec", default="auto", show_default=True, help=f"FAISS index: {SPEC_HELP}.")
@click.option(
    "--metric",
    type=click.Choice(["cosine", "ip"]),
    default="cosine",
    show_default=True,
    help="Similarity: cosine (normalised) or raw inner product.",
)
@click.option(
    "--index-field",
    "index_fields",
    multiple=True,
    metavar="FIELD",
    help="Metadata field to build a payload index on, so filters on it read an index instead of every "
    "document's JSON (repeatable; dotted paths reach into objects). Change later with `index alter`.",
)
@click.option(
    "--lexical/--no-lexical",
    default=True,
    show_default=True,
    help="Build a lexical (full-text) index beside the vectors, for `search --mode lexical|hybrid`.",
)
@click.option(
    "--chunk-tokens",
    type=int,
    default=None,
    metavar="N",
    help="Split documents into passages of at most N tokens of the model's tokenizer, one vector each "
    "(default for sentence models: the model's window, 254 for MiniLM); a hit is a document scored by "
    "its best passage.",
)
@click.option(
    "--chunk-overlap", type=int, default=None, metavar="M", help="Tokens consecutive passages share (default 0)."
)
@click.option(
    "--no-chunking",
    "no_chunking",
    is_flag=True,
    help="One vector per document: text past the model's window is cut off (`index add` says how many were).",
)
@click.option(
    "--shards",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Ray actors the collection's segments are spread over; searches fan out to them and merge exactly "
    "(needs the ray extra; RAY_ADDRESS or a local cluster).",
)
@word_model_options
@device_option
@json_option
@with_examples(
    "  embedsearch index create news --model minilm\n"
    "  embedsearch index create manuals --model minilm --chunk-tokens 200 --chunk-overlap 40\n"
    "  embedsearch --db postgresql+psycopg2://... index create web --model minilm --shards 4\n"
    "  embedsearch index create vectors-only --model minilm --no-lexical\n"
    "  embedsearch index create news --model minilm --index-field year --index-field source\n"
    "  embedsearch index create docs --model models/glove --pooling sif\n"
    "  embedsearch index create big --model minilm --index IVF1024,SQ8\n"
    "  embedsearch index create local --model ./models/my-st-model --index HNSW32\n"
    "  embedsearch index create news8 --model minilm-int8                 # ONNX Runtime, int8\n"
    "  embedsearch index create tickets --model models/support-v2 --backend int8\n"
    "  embedsearch index create fast --model models/static               # a student from 'train distill'"
)
@click.pass_obj
def create(
    app, name, model, backend, index_spec, metric, index_fields, lexical, chunk_tokens, chunk_overlap, no_chunking,
    shards, pooling, oov, device, as_json,
):  # fmt: skip
    """Create an empty collection NAME bound to a model."""
    from embedsearch.store.documents_api import create_collection

    coll = create_collection(
        app.store,
        name,
        model,
        index_spec,
        metric,
        options={"pooling": pooling, "oov": oov, "backend": backend},
        device=device,
        index_fields=index_fields,
        lexical=lexical,
        chunk_tokens=chunk_tokens,
        chunk_overlap=chunk_overlap,
        chunking=False if no_chunking else None,
        shards=shards,
    )
    if as_json:
        echo_json({**coll.info(), "data_dir": str(app.settings.data_dir), "db": app.db_display()})
    else:
        config = coll.embedder_config
        opts = "".join(f", {k} {v}" for k, v in (config.get("options") or {}).items())
        fields = f", payload indexes on {', '.join(index_fields)}" if index_fields else ""
        fields += ", lexical index" if lexical else ", no lexical index"
        if coll.chunking is not None:
            fields += f", passages of {coll.chunking.tokens} tokens ({coll.chunking.overlap} overlap)"
        if coll.shards > 1:
            fields += f", {coll.shards} shards on Ray"
        click.echo(
            f"created collection {name!r}: model {config.get('name', coll.model)} ({coll.dim}-d{opts}), "
            f"index {index_spec}, metric {metric}{fields}"
        )
        click.echo(app.where())
        click.echo(f"next: {app.command('index', 'add', name, 'FILES...')}")


@index.command("add")
@click.argument("name")
@click.argument("inputs", nargs=-1, required=True)
@read_options
@click.option(
    "--batch-size", default=256, show_default=True, type=click.IntRange(1, 100_000), help="Documents embedded per step."
)
@click.option(
    "--commit-every",
    default=2048,
    show_default=True,
    type=click.IntRange(1),
    help="Documents per committed batch (a crash keeps every committed batch).",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="auto",
    default=None,
    metavar="[ADDRESS]",
    help="Embed on a Ray cluster (an actor pool, one model per actor) and commit everything in one transaction; "
    "ADDRESS: a cluster (default: RAY_ADDRESS, a cluster running here, or a local one).",
)
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(1, 1024), help="With --ray: embedding actors."
)
@device_option
@json_option
@with_examples(
    "  embedsearch index add news docs/*.txt\n"
    "  embedsearch index add web corpus/ --ray              # embed in a Ray actor pool\n"
    "  embedsearch index add news notes.txt --per-line --meta source=notes\n"
    "  embedsearch index add news articles.jsonl --text-field body --id-field url\n"
    "  embedsearch index add news table.csv --encoding latin-1\n"
    "  cat more.jsonl | embedsearch index add news - --format jsonl"
)
@click.pass_obj
def add(
    app,
    name,
    inputs,
    fmt,
    per_line,
    text_field,
    id_field,
    encoding,
    skip_bad,
    glob_pattern,
    meta,
    batch_size,
    commit_every,
    ray_address,
    workers,
    device,
    as_json,
):
    """Add documents from INPUTS (files, directories, or - for stdin) to NAME.

    Documents whose id exists are updated when their text or metadata changed and skipped
    when not. All input is read and checked once before anything is written, so a bad line
    stops the command with the collection untouched (or is skipped with --skip-bad).
    """
    coll = app.store.open(name)
    opts = build_read_options(fmt, per_line, text_field, id_field, encoding, skip_bad, glob_pattern, meta)
    stdin_path = spool_stdin(sys.stdin) if "-" in inputs else None
    try:
        sources = resolve_sources(inputs, opts, stdin_path)
        warn = Warnings()
        dups = Duplicates()
        total = scan(sources, opts, on_skip=warn, duplicates=dups)
        warn.summary()
        progress = progress_wanted(as_json)
        committed: list = []  # the running result after each commit (what an interrupt keeps)
        try:
            if ray_address is not None:
                from embedsearch.cluster.ingest import add_documents_on_ray

                embedder = None
                result = add_documents_on_ray(
                    coll, iter_documents(sources, opts), address=ray_address, workers=workers, progress=progress
                )
            else:
                embedder = coll.load_embedder(device=device)
                coll.device = device
                result = coll.add_documents(
                    iter_documents(sources, opts),
                    embedder,
                    batch_size=batch_size,
                    commit_every=commit_every,
                    progress=progress,
                    total=total,
                    on_commit=lambda r: committed.append(r.to_dict()),
                )
        except KeyboardInterrupt:
            click.echo(interrupted_message(committed[-1] if committed else None, total, ray_address is not None), err=True)
            raise click.exceptions.Exit(130) from None
    finally:
        if stdin_path is not None:
            stdin_path.unlink(missing_ok=True)
    out = {
        "collection": name,
        **result.to_dict(),
        "skipped": warn.count,
        "duplicates": dups.to_dict(),
        "documents": coll.doc_count,
    }
    if result.truncated:  # once per command, with the count (stderr, so --json output stays clean)
        window = f" of {embedder.token_window()} tokens" if embedder is not None else ""
        click.echo(
            f"warning: {result.truncated} documents are longer than model {coll.model}'s window{window} "
            f"and were embedded cut short: text past it cannot be found by dense search. A collection "
            f"created without --no-chunking splits them into passages.",
            err=True,
        )
    if as_json:
        echo_json(out)
    else:
        click.echo(
            f"{name}: added {result.added}, updated {result.updated}, unchanged {result.unchanged}"
            + (f", skipped {warn.count} bad records" if warn.count else "")
            + (f" ({result.passages} passages)" if coll.chunking is not None and result.passages else "")
            + f"; {out['documents']} documents (generation {result.generation})"
        )
        if dups.records:
            more = ", ..." if len(dups.repeated) > len(dups.first()) else ""
            click.echo(
                f"{dups.records} records repeated the id of an earlier record ({len(dups.repeated)} ids: "
                f"{', '.join(dups.first())}{more}); the last record of each id was kept"
            )


def interrupted_message(last: dict | None, total: int | None, on_ray: bool) -> str:
    """What Ctrl-C during `index add` kept: every commit before it (each is whole), nothing after."""
    if last is None or not last.get("commits"):
        kept = "interrupted: nothing was committed" + (" (a Ray job commits once, at the end)" if on_ray else "")
        return kept + "; the collection is as it was (run the same command again to add the documents)"
    done = last["added"] + last["updated"]
    seen = done + last["unchanged"]
    left = f"; {total - seen:,} not added" if total is not None and total >= seen else ""
    return (
        f"interrupted: {done:,} documents committed in {last['commits']} batch{'es' if last['commits'] != 1 else ''} "
        f"(added {last['added']:,}, updated {last['updated']:,}; {last['unchanged']:,} were unchanged){left} "
        "(run the same command again to continue: committed documents are skipped as unchanged)"
    )


@index.command("delete")
@click.argument("name")
@click.option("--id", "ids", multiple=True, help="Document id to delete (repeatable).")
@click.option("--ids-file", type=click.File("r", encoding="utf-8"), help="File with one id per line ('-' for stdin).")
@click.option("--where", default=None, help="Delete every document matching this metadata filter (JSON; '{}' matches all).")
@click.option("--yes", is_flag=True, help="Confirm --where '{}', which deletes every document.")
@json_option
@with_examples(
    "  embedsearch index delete news --id doc-17\n"
    "  embedsearch index delete news --ids-file stale.txt\n"
    '  embedsearch index delete news --where \'{"source": "old-feed"}\'\n'
    "  embedsearch index delete news --where '{}' --yes      # every document"
)
@click.pass_obj
def delete(app, name, ids, ids_file, where, yes, as_json):
    """Delete documents from NAME by id or by filter (each in one commit)."""
    from embedsearch.store.filters import parse_filter

    wanted = list(ids)
    if ids_file is not None:
        wanted += [line.strip() for line in ids_file if line.strip()]
    if not wanted and where is None:
        raise click.UsageError("say what to delete: --id, --ids-file or --where")
    if where is not None and not parse_filter(where) and not yes:
        raise click.UsageError(f"--where {where!r} matches every document of {name}; add --yes to delete them all")
    coll = app.store.open(name)
    deleted, missing = coll.delete(wanted) if wanted else (0, [])
    if where is not None:
        deleted += coll.delete_where(where)
    if as_json:
        echo_json({"collection": name, "deleted": deleted, "not_found": missing, "documents": coll.doc_count})
        return
    click.echo(f"{name}: deleted {deleted}; {coll.doc_count} documents left")
    if missing:
        click.echo(f"not found: {', '.join(missing[:20])}" + (" …" if len(missing) > 20 else ""), err=True)


@index.command("list")
@json_option
@with_examples(
    "  embedsearch index list\n  embedsearch --db postgresql+psycopg2://user:pw@127.0.0.1/embedsearch index list --json"
)
@click.pass_obj
def list_(app, as_json):
    """List collections."""
    rows = app.store.list() if app.has_data() else []
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no collections in {app.settings.data_dir} (create one with `embedsearch index create`)")
        return
    click.echo(
        table(
            [
                (
                    r["name"],
                    r["doc_count"],
                    r["model"],
                    r["dim"],
                    r["active_spec"] + ("" if r["index_spec"] == r["active_spec"] else f" ({r['index_spec']})"),
                    r["generation"],
                )
                for r in rows
            ],
            ["name", "documents", "model", "dim", "index", "generation"],
            flex=2,
        )
    )


@index.command("info")
@click.argument("name")
@json_option
@with_examples("  embedsearch index info news\n  embedsearch index info news --json")
@click.pass_obj
def info(app, name, as_json):
    """Show a collection's model, index, counts, files and how it is searched by default."""
    from embedsearch.search import describe_plan, plan
    from embedsearch.store.snapshot import last_snapshot

    coll = app.store.open(name)
    data = coll.info()
    data["last_snapshot"] = last_snapshot(coll)
    if "search" in data:
        data["search"]["runs"] = describe_plan(plan(coll))
    if as_json:
        echo_json(data)
        return
    for key in (
        "name",
        "model",
        "model_fingerprint",
        "dim",
        "metric",
        "index_spec",
        "active_spec",
        "pending",
        "doc_count",
        "faiss_count",
        "tombstones",
        "generation",
        "format",
        "index_bytes",
        "path",
        "created_at",
        "updated_at",
        "error",
    ):
        if data.get(key) is not None:
            click.echo(f"{key:18} {data[key]}")
    if data.get("training"):
        t = data["training"]
        click.echo(f"{'training':18} {t['spec']} trained on a sample of {t['sample']} of {t['trained_on']} vectors")
    if data.get("index_fields"):
        fields = ", ".join(f"{f} ({n} entries)" for f, n in data["index_fields"].items())
        click.echo(f"{'index fields':18} {fields}")
    lex = data.get("lexical")
    if "lexical" in data:
        size = "" if not lex or lex.get("bytes") is None else f", {lex['bytes']} bytes"
        click.echo(f"{'lexical':18} " + (f"{lex['documents']} documents{size}" if lex else "none (index alter NAME --lexical)"))
    if "passages" in data:
        ch = (data.get("embedder_config") or {}).get("chunking")
        how = "off (one vector per document)"
        if ch:
            how = f"{data['passages']} passages of at most {ch['tokens']} tokens, {ch['overlap']} overlap"
        click.echo(f"{'passages':18} {how}")
    if data.get("search"):
        stored = [k for k in ("mode", "fusion", "alpha", "stop_words") if data["search"].get(k) is not None]
        why = f"stored by index alter ({', '.join(stored)})" if stored else "the library's default"
        click.echo(f"{'search':18} {data['search']['runs']} ({why})")
    snap = data.get("last_snapshot")
    if snap:
        where = f"{snap['file']} ({snap['bytes']} bytes)"
        click.echo(f"{'last snapshot':18} {snap['taken_at']} of generation {snap['generation']}: {where}")
    shards = (data.get("embedder_config") or {}).get("shards")
    if shards:
        click.echo(f"{'shards':18} {shards} Ray actors (searches fan out to them)")
    if data.get("segments"):
        click.echo(
            table(
                [
                    (s["id"], s["state"], s["spec"], s["vectors"], s["tombstones"], f"{s['rows'][0]}-{s['rows'][1]}", s["bytes"])
                    for s in data["segments"]
                ],
                ["segment", "state", "spec", "vectors", "tombstones", "row ids", "bytes"],
            )
        )


@index.command("verify")
@click.argument("name")
@click.option("--no-model-check", is_flag=True, help="Skip hashing the model files.")
@json_option
@with_examples(
    "  embedsearch index verify news\n  embedsearch index verify news --no-model-check --json || embedsearch index repair news"
)
@click.pass_obj
def verify(app, name, no_model_check, as_json):
    """Check that FAISS and SQL agree (ids, counts, generation, dimension, model).

    Exits 1 when a problem is found; `embedsearch index repair NAME` fixes it.
    """
    report = app.store.open(name).verify(check_model=not no_model_check)
    if as_json:
        echo_json(report.to_dict())
    elif report.ok:
        click.echo(f"{name}: ok ({report.sql_count} documents, generation {report.generation})")
        if report.leftovers:
            click.echo(f"  {len(report.leftovers)} leftover file(s) of an interrupted write; the next write removes them")
    else:
        click.echo(f"{name}: {len(report.problems)} problem(s)")
        for p in report.problems:
            click.echo(f"  - {p}")
        rebuild = report.needs_rebuild or report.model_changed
        click.echo(f"run `embedsearch index repair {name}" + (" --rebuild`" if rebuild else "`"))
    if not report.ok:
        sys.exit(1)


@index.command("repair")
@click.argument("name")
@click.option("--rebuild", is_flag=True, help="Re-embed every document from its stored text (also adopts a changed model).")
@click.option("--model", "-m", default=None, help="Model to rebuild with (default: the collection's).")
@click.option("--lexical", is_flag=True, help="Rebuild (or build) the lexical index from the stored text, in one transaction.")
@device_option
@json_option
@with_examples(
    "  embedsearch index repair news\n"
    "  embedsearch index repair news --lexical              # rebuild (or build) the lexical index\n"
    "  embedsearch index repair news --rebuild              # re-embed every document from its stored text\n"
    "  embedsearch index repair news --model ./models/new-st   # adopt a changed model"
)
@click.pass_obj
def repair(app, name, rebuild, model, lexical, device, as_json):
    """Make the vectors (and with --lexical the lexical index) agree with the stored documents again."""
    coll = app.store.open(name)
    if lexical:
        out = coll.set_lexical(True, rebuild=True)
        if not rebuild and not model:
            if as_json:
                echo_json({"collection": name, **out})
            else:
                click.echo(f"{name}: lexical index rebuilt ({out['documents_indexed']} documents)")
            return
        click.echo(f"{name}: lexical index rebuilt ({out['documents_indexed']} documents)", err=as_json)
    embedder = None
    if model:
        from embedsearch.embedders import load_embedder

        embedder = load_embedder(model, device=device, options=coll.embedder_options or None)
    result = coll.repair(embedder, rebuild=rebuild or bool(model), progress=progress_wanted(as_json))
    if as_json:
        echo_json({"collection": name, **result})
    else:
        for a in result["actions"]:
            click.echo(f"{name}: {a}")


@index.command("optimize")
@click.argument("name")
@click.option(
    "--retrain",
    is_flag=True,
    help="Retrain the IVF/PQ/SQ template on a sample of all the data now (otherwise it is retrained "
    "once the collection holds 4x what it was trained on).",
)
@json_option
@with_examples("  embedsearch index optimize news\n  embedsearch index optimize big --retrain --json")
@click.pass_obj
def optimize(app, name, retrain, as_json):
    """Seal the growing segment, merge segments as far as the size limit allows, purge every
    tombstone, and retrain when due. Searches go on while it runs."""
    coll = app.store.open(name)
    result = coll.optimize(retrain=retrain, progress=progress_wanted(as_json))
    info = coll.info()
    out = {"collection": name, **result, "segments": len(info["segments"]), "tombstones": info["tombstones"]}
    if as_json:
        echo_json(out)
        return
    for m in result["merges"]:
        if "retrained" in m:
            click.echo(f"{name}: retrained {m['retrained']} on {m['on']} vectors")
        else:
            click.echo(
                f"{name}: merged {len(m['segments'])} segments ({m['reason']}): "
                f"{m['vectors']} vectors, {m['purged']} tombstones purged"
            )
    click.echo(f"{name}: {out['segments']} segments, {out['tombstones']} tombstones (generation {coll.generation})")


@index.command("drop")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@with_examples("  embedsearch index drop news\n  embedsearch index drop scratch --yes")
@click.pass_obj
def drop(app, name, yes):
    """Delete collection NAME: its documents and its vector file."""
    coll = app.store.open(name)
    if not yes:
        click.confirm(f"drop collection {name!r} with {coll.doc_count} documents?", abort=True)
    app.store.drop(name)
    click.echo(f"dropped {name}")
