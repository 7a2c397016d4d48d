"""``embedsearch index alter``: add and drop a collection's payload indexes and its lexical index,
and store how it is searched when a query does not say.

A thin layer over :meth:`Collection.alter_index_fields` (see :mod:`embedsearch.store.payload`),
:meth:`Collection.set_lexical` (see :mod:`embedsearch.store.lexical`) and
:func:`embedsearch.search.set_defaults`.
"""

from __future__ import annotations

import click

from embedsearch.cli.index import index, json_option, with_examples
from embedsearch.cli.output import echo_json
from embedsearch.search import FUSIONS, MODES, describe_plan
from embedsearch.store.stop_words import languages as stop_word_languages


@index.command("alter")
@click.argument("name")
@click.option("--index-field", "add", multiple=True, metavar="FIELD", help="Build a payload index on FIELD (repeatable).")
@click.option("--drop-index-field", "drop", multiple=True, metavar="FIELD", help="Drop the payload index on FIELD (repeatable).")
@click.option(
    "--lexical/--no-lexical",
    default=None,
    help="Build the lexical (full-text) index from every stored document, or drop it (one transaction each).",
)
@click.option(
    "--default-mode",
    type=click.Choice(MODES),
    default=None,
    help="The mode searches run in when they do not say (the CLI, the service and the web page).",
)
@click.option("--fusion", type=click.Choice(FUSIONS), default=None, help="The fusion hybrid searches use when they do not say.")
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1),
    default=None,
    help="The dense weight of relative fusion (its base, moved per query by each side's confidence) or weighted fusion.",
)
@click.option(
    "--stop-words",
    type=click.Choice(stop_word_languages()),
    default=None,
    help="Whose stop words lexical matching and highlights leave out (default english; none: every word counts).",
)
@click.option("--reset-search", is_flag=True, help="Forget the stored search settings (back to the library's defaults).")
@json_option
@with_examples(
    "  embedsearch index alter news --lexical\n"
    "  embedsearch index alter news --index-field year\n"
    "  embedsearch index alter news --default-mode hybrid --fusion relative --alpha 0.8\n"
    "  embedsearch index alter news --index-field authors.name --drop-index-field source --json"
)
@click.pass_obj
def alter(app, name, add, drop, lexical, default_mode, fusion, alpha, stop_words, reset_search, as_json):
    """Add or drop payload indexes on metadata fields, and the lexical index; store how the
    collection is searched by default (`compare` recommends a mode and fusion). Adding an index
    indexes every document already in the collection (in one transaction); filters give the same
    results either way, faster on indexed fields."""
    searching = any(v is not None for v in (default_mode, fusion, alpha, stop_words)) or reset_search
    if not add and not drop and lexical is None and not searching:
        raise click.UsageError(
            "say what to change: --index-field FIELD, --drop-index-field FIELD, --lexical, --no-lexical, "
            "--default-mode, --fusion, --alpha, --stop-words or --reset-search"
        )
    from embedsearch.search import plan, set_defaults

    coll = app.store.open(name)
    how = {"mode": default_mode, "fusion": fusion, "alpha": alpha, "stop_words": stop_words, "reset": reset_search}
    if searching:  # every setting is checked before anything changes, against the index the command leaves
        set_defaults(coll, **how, lexical=lexical, dry_run=True)
    mode_before = plan(coll).mode if lexical is False else None
    lex = coll.set_lexical(lexical) if lexical is not None else None
    if searching:
        settings = set_defaults(coll, **how)
    if mode_before is not None and mode_before != "dense" and lex["had_lexical"] and not as_json:
        click.echo(f"{name}: searches that do not name a mode now run dense (they ran {mode_before})", err=True)
    if add or drop:
        result = coll.alter_index_fields(add, drop)
    else:
        result = {"added": [], "dropped": [], "index_fields": coll.index_fields()}
    if lex is not None:
        result["lexical"] = lex
    if searching:
        result["search"] = settings
    if as_json:
        echo_json({"collection": name, **result})
        return
    if lex is not None:
        if lexical and not lex["had_lexical"]:
            click.echo(f"{name}: lexical index built ({lex['documents_indexed']} documents)")
        elif lexical:
            click.echo(f"{name}: already has a lexical index (index repair {name} --lexical rebuilds it)")
        else:
            click.echo(f"{name}: lexical index dropped" if lex["had_lexical"] else f"{name}: had no lexical index")
    if searching:
        p = plan(coll)
        stored = ", ".join(f"{k} {v}" for k, v in settings.items() if v is not None) or "none (the library's defaults)"
        click.echo(f"{name}: stored search settings: {stored}; searches now run {describe_plan(p)}")
    for f in result["added"]:
        click.echo(f"{name}: indexed {f}")
    for f in result["dropped"]:
        click.echo(f"{name}: dropped the index on {f}")
    fields = ", ".join(f"{f} ({n} entries)" for f, n in result["index_fields"].items()) or "none"
    click.echo(f"{name}: payload indexes: {fields}")
