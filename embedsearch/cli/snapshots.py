"""``embedsearch index snapshot / verify-snapshot / restore``: collections you can carry.

Thin layers over :mod:`embedsearch.store.snapshot` and :mod:`embedsearch.store.restore`.
"""

from __future__ import annotations

from pathlib import Path

import click

from embedsearch.cli.index import index, json_option, with_examples
from embedsearch.cli.output import echo_json


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@index.command("snapshot")
@click.argument("name")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The snapshot file: NAME.tar, or NAME.tar.zst to compress it with zstd.")  # fmt: skip
@json_option
@with_examples(
    "  embedsearch index snapshot news -o backups/news-2026-12-03.tar\n"
    "  embedsearch index snapshot news -o news.tar.zst --json"
)
@click.pass_obj
def snapshot(app, name, output, as_json):
    """Write NAME as of its last commit to one file, while writers and merges go on (they wait
    at most for the moment it takes to pin that commit). `index restore FILE` brings it back,
    into this or another database and data directory."""
    from embedsearch.store.snapshot import record_snapshot, take_snapshot

    coll = app.store.open(name)
    result = take_snapshot(coll, output)
    record_snapshot(coll, result)
    if as_json:
        echo_json(result)
        return
    c = result["counts"]
    click.echo(
        f"{name}: snapshot of generation {result['generation']} ({c['documents']} documents, {c['segments']} segments) "
        f"written to {result['file']} ({_size(result['bytes'])}, {result['seconds']:.2f} s)"
    )


@index.command("verify-snapshot")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@with_examples(
    "  embedsearch index verify-snapshot backups/news-2026-12-03.tar\n  embedsearch index verify-snapshot news.tar.zst --json"
)
@click.pass_obj
def verify_snapshot(app, file, as_json):
    """Check a snapshot file without restoring it: its format version and the size and sha256 of
    every member. Exits 1 naming the member that fails."""
    from embedsearch.store.restore import describe
    from embedsearch.store.restore import verify_snapshot as check

    if not file.is_file():
        raise click.ClickException(f"{file}: no such file")
    info = describe(check(file))
    if as_json:
        echo_json({"file": str(file), "ok": True, **info})
        return
    c = info["counts"]
    click.echo(
        f"{file}: ok: collection {info['collection']!r} at generation {info['generation']}, {c['documents']} documents, "
        f"model {info['model']} ({info['dim']}-d, {info['metric']}), {info['members']} members checked"
    )


@index.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as", "as_name", default=None, help="Restore under this name (default: the name it was taken from).")
@click.option("--replace", is_flag=True,
              help="Replace an existing collection of that name: it is dropped once the restored one is in place "
                   "and verified, and the name taken right after (not an atomic swap).")  # fmt: skip
@json_option
@with_examples(
    "  embedsearch index restore backups/news-2026-12-03.tar --as news-copy\n"
    "  embedsearch --db postgresql://user@host/db index restore news.tar      # SQLite -> PostgreSQL\n"
    "  embedsearch index restore news.tar.zst --replace --json"
)
@click.pass_obj
def restore(app, file, as_name, replace, as_json):
    """Restore a snapshot into this data directory and database: checked member by member first,
    built and verified under a temporary name, then given its name. Exits 2 when the name exists
    (without --replace), 1 when the file is damaged (naming the member); nothing is left behind."""
    from embedsearch.config import validate_collection_name
    from embedsearch.store.restore import restore as run

    if not file.is_file():
        raise click.ClickException(f"{file}: no such file")
    if as_name is not None:
        validate_collection_name(as_name)
        if not replace and app.store.exists(as_name):
            raise click.UsageError(f"collection {as_name!r} already exists (restore --as ANOTHER, or --replace)")
    from embedsearch.errors import CollectionExists

    try:
        result = run(app.store, file, as_name, replace=replace)
    except CollectionExists as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        echo_json(result)
        return
    c = result["counts"]
    how = " (replaced the old one)" if result["replaced"] else ""
    click.echo(
        f"{result['collection']}: restored from {file} at generation {result['generation']}: "
        f"{c['documents']} documents, {c['segments']} segments, verified{how}"
    )


@index.command("export")
@click.argument("name")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="FILE.parquet or FILE.jsonl.")  # fmt: skip
@click.option("--where", default=None, help="Export only the documents matching this metadata filter (JSON).")
@json_option
@with_examples(
    "  embedsearch index export news -o news.parquet\n"
    "  embedsearch index export news -o news.jsonl --where '{\"source\": \"lee\"}'"
)
@click.pass_obj
def export(app, name, output, where, as_json):
    """Write NAME's documents with their vectors (id, text, metadata, vector) to Parquet or JSONL,
    as of its last commit, in bounded memory. The file records the model, its fingerprint, the
    dimension and metric, so `index import` can use the vectors without embedding again."""
    from embedsearch.store.portable import export as run

    result = run(app.store.open(name), output, where)
    if as_json:
        echo_json(result)
        return
    click.echo(
        f"{name}: exported {result['documents']} documents with {result['dim']}-d vectors of {result['model']} "
        f"(generation {result['generation']}) to {result['file']}"
    )


@index.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--into", required=True, help="The collection to add the documents to (created when it does not exist).")
@click.option("--model", "-m", default=None, help="Model of a new collection (default: the model the file records).")
@json_option
@with_examples(
    "  embedsearch index import news.parquet --into archive\n"
    "  embedsearch index import news.jsonl --into news-minilm --model minilm     # re-embeds: another model"
)
@click.pass_obj
def import_(app, file, into, model, as_json):
    """Add the documents of an `index export` file (or any Parquet/JSONL file with id, text,
    metadata and vector) to a collection. Vectors from the collection's own model (same
    fingerprint) are used as they are, with no embedding; otherwise the text is embedded again,
    and the command says why. Wrong dimensions and NaN vectors are refused before anything is written."""
    from embedsearch.config import validate_collection_name
    from embedsearch.store.importing import import_file

    validate_collection_name(into)
    if not file.is_file():
        raise click.ClickException(f"{file}: no such file")
    result = import_file(app.store, file, into, model=model)
    if as_json:
        echo_json(result)
        return
    if not result["reused_vectors"]:
        click.echo(f"{into}: embedding the text again: {result['re_embedded_because']}", err=True)
    how = "vectors used as they are, no embedding" if result["reused_vectors"] else "embedded with " + result["model"]
    click.echo(f"{into}: imported {result['documents']} documents from {file} ({how})")
