"""``embedsearch demo``: the whole path from text to search results on bundled data."""

from __future__ import annotations

import json

import click

from embedsearch.cli.index import device_option
from embedsearch.cli.output import echo_json, shorten
from embedsearch.progress import wanted as progress_wanted


@click.command()
@click.option("--model", "-m", default="minilm", show_default=True, help="Model to index with.")
@click.option("--name", default="lee-demo", show_default=True, help="Collection to create or reuse.")
@click.option("-k", "k", default=3, show_default=True, type=click.IntRange(1, 50), help="Hits per sample query.")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_obj
def demo(app, model, name, k, device, as_json):
    """Index the Lee news corpus (350 stories, bundled with gensim) and run sample queries.

    Re-running is cheap: unchanged documents are recognised and skipped.

    \b
    Examples:
      embedsearch demo
      embedsearch --data-dir /tmp/es demo --json
    """
    from embedsearch.demo import run_demo

    result = run_demo(app.store, model=model, name=name, k=k, progress=progress_wanted(as_json), device=device)
    if as_json:
        echo_json(
            {
                "collection": name,
                "data_dir": str(app.settings.data_dir),
                "db": app.db_display(),
                "next": app.command("search", name, "your own query", "-k", "5"),
                "add": result.added.to_dict(),
                "queries": [{"query": q, "where": w, "hits": [h.to_dict() for h in hits]} for q, w, hits in result.queries],
            }
        )
        return
    a = result.added
    click.echo(
        f"collection {name!r}: {result.collection.doc_count} documents "
        f"(added {a.added}, unchanged {a.unchanged}), model {model}, index {result.collection.active_spec}"
    )
    click.echo(app.where())
    for query, where, hits in result.queries:
        click.echo()
        click.echo(f"» {query}" + (f"   where {json.dumps(where)}" if where else ""))
        for rank, h in enumerate(hits, 1):
            click.echo(f"  {rank}. {h.score:.3f}  {h.id:22} {shorten(h.text, 90)}")
    click.echo()
    click.echo(f"next: {app.command('search', name, 'your own query', '-k', '5')}   (add --json for machine output)")
