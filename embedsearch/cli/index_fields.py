"""``embedsearch index alter``: add and drop a collection's payload indexes.

A thin layer over :meth:`Collection.alter_index_fields` (see :mod:`embedsearch.store.payload`).
"""

from __future__ import annotations

import click

from embedsearch.cli.index import _with_examples, index, json_option
from embedsearch.cli.output import echo_json


@index.command("alter")
@click.argument("name")
@click.option("--index-field", "add", multiple=True, metavar="FIELD", help="Build a payload index on FIELD (repeatable).")
@click.option("--drop-index-field", "drop", multiple=True, metavar="FIELD", help="Drop the payload index on FIELD (repeatable).")
@json_option
@_with_examples(
    "  embedsearch index alter news --index-field year\n"
    "  embedsearch index alter news --index-field authors.name --drop-index-field source --json"
)
@click.pass_obj
def alter(app, name, add, drop, as_json):
    """Add or drop payload indexes on metadata fields. Adding one indexes every document already
    in the collection (in one transaction); filters give the same results either way, faster
    on indexed fields."""
    if not add and not drop:
        raise click.UsageError("say what to change: --index-field FIELD and/or --drop-index-field FIELD")
    result = app.store.open(name).alter_index_fields(add, drop)
    if as_json:
        echo_json({"collection": name, **result})
        return
    for f in result["added"]:
        click.echo(f"{name}: indexed {f}")
    for f in result["dropped"]:
        click.echo(f"{name}: dropped the index on {f}")
    fields = ", ".join(f"{f} ({n} entries)" for f, n in result["index_fields"].items()) or "none"
    click.echo(f"{name}: payload indexes: {fields}")
