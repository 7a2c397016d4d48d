"""``embedsearch index get / docs / count``: documents without a query.

Thin layers over :mod:`embedsearch.store.documents_api`, which the HTTP service uses too.
"""

from __future__ import annotations

import json
from typing import Any

import click

from embedsearch.cli.index import index, json_option, with_examples
from embedsearch.cli.output import echo_json, shorten, table
from embedsearch.store.documents_api import DEFAULT_LIMIT, MAX_LIMIT

META_WIDTH = 60


def _documents_table(docs: list[dict[str, Any]]) -> str:
    rows = [(d["id"], d["text"], shorten(json.dumps(d["metadata"], ensure_ascii=False), META_WIDTH)) for d in docs]
    return table(rows, ["id", "text", "metadata"], flex=1)


@index.command("get")
@click.argument("name")
@click.option("--id", "ids", multiple=True, required=True, help="Document id (repeatable).")
@json_option
@with_examples("  embedsearch index get news --id doc-17\n  embedsearch index get news --id a1 --id a2 --json")
@click.pass_obj
def get(app, name, ids, as_json):
    """Show documents of NAME by id: text and metadata.

    Exits 1 when an id is not found (after printing the documents that were).
    """
    from embedsearch.store.documents_api import get_documents

    docs, missing = get_documents(app.store.open(name), ids)
    if as_json:
        echo_json({"collection": name, "documents": docs, "not_found": missing})
    elif docs:
        click.echo(_documents_table(docs))
    if missing:
        raise click.ClickException(f"not found in {name!r}: {', '.join(missing[:20])}" + (" …" if len(missing) > 20 else ""))


@index.command("docs")
@click.argument("name")
@click.option("--where", default=None, help="Only documents matching this metadata filter (JSON).")
@click.option("--limit", default=DEFAULT_LIMIT, show_default=True, type=click.IntRange(1, MAX_LIMIT), help="Documents per page.")
@click.option("--cursor", default=None, help="Continue a listing: the next_cursor a previous page printed.")
@json_option
@with_examples(
    "  embedsearch index docs news --limit 20\n"
    '  embedsearch index docs news --where \'{"source": "lee"}\' --limit 100 --json\n'
    "  embedsearch index docs news --limit 100 --cursor eyJ2IjoxLCJjIjoxLCJmIjoi... --json"
)
@click.pass_obj
def docs(app, name, where, limit, cursor, as_json):
    """List the documents of NAME (those matching --where), a page at a time, in the order
    they were written.

    Each page ends with a cursor for the next one (--json: "next_cursor", null on the last
    page). Paging is stable while others write: no document is returned twice or missed,
    except that a document updated after its page was listed appears again, updated.
    """
    from embedsearch.store.documents_api import list_documents

    page = list_documents(app.store.open(name), where, limit, cursor)
    if as_json:
        echo_json({"collection": name, **page.to_dict()})
        return
    if page.documents:
        click.echo(_documents_table(page.documents))
    else:
        click.echo(f"{name}: no documents" + (" match the filter" if where else "") + (" past this cursor" if cursor else ""))
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


@index.command("count")
@click.argument("name")
@click.option("--where", default=None, help="Count only documents matching this metadata filter (JSON).")
@json_option
@with_examples('  embedsearch index count news\n  embedsearch index count news --where \'{"year": {"$gte": 2001}}\' --json')
@click.pass_obj
def count(app, name, where, as_json):
    """Count the documents of NAME (those matching --where)."""
    from embedsearch.store.documents_api import count_documents
    from embedsearch.store.filters import parse_filter

    n = count_documents(app.store.open(name), where)
    if as_json:
        echo_json({"collection": name, "where": parse_filter(where), "count": n})
    else:
        click.echo(str(n))
