"""``embedsearch models``: list, show, import and export model directories."""

from __future__ import annotations

from pathlib import Path

import click

from embedsearch.cli.index import json_option, with_examples
from embedsearch.cli.output import echo_json, table
from embedsearch.embedders import BUILTIN_MODELS
from embedsearch.formats import FORMATS


@click.group()
def models() -> None:
    """List, inspect, import and export models.

    \b
    Formats: glove (text, no header), word2vec (text with a 'count dim' header),
    word2vec-bin (the original binary), fasttext-vec (text, like word2vec),
    fasttext-bin (a fastText model with subwords).
    """


@models.command("list")
@click.argument("directory", default="models", type=click.Path(file_okay=False))
@json_option
@with_examples("  embedsearch models list\n  embedsearch models list ./models --json")
def list_cmd(directory, as_json):
    """Built-in models and the model directories under DIRECTORY (default ./models)."""
    from embedsearch.models import list_models

    found = list_models(Path(directory))
    builtins = [{"path": name, "kind": "built-in", "description": desc} for name, desc in BUILTIN_MODELS.items()]
    if as_json:
        echo_json({"builtin": builtins, "models": found})
        return
    rows = [(b["path"], "built-in", "", "", b["description"]) for b in builtins]
    rows += [(m["path"], m["kind"], m["algorithm"] or "", m["dim"] or "", f"{m['vocab_size'] or 0:,} words") for m in found]
    click.echo(table(rows, ["model", "kind", "algorithm", "dim", "about"], flex=4))


@models.command("show")
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@json_option
@with_examples("  embedsearch models show models/glove\n  embedsearch models show models/w2v --json")
def show(model, as_json):
    """Print a model directory's manifest (parameters, corpus, versions, loss curve)."""
    from embedsearch.models import read_manifest

    m = read_manifest(Path(model))
    if as_json:
        echo_json(m)
        return
    for key in ("kind", "algorithm", "backend", "dim", "vocab_size", "seed", "threads", "created_at", "wall_seconds"):
        if key in m:
            click.echo(f"{key:>14}: {m[key]}")
    if "params" in m:
        click.echo(f"{'params':>14}: " + ", ".join(f"{k}={v}" for k, v in m["params"].items()))
    if "corpus" in m:
        c = m["corpus"]
        click.echo(f"{'corpus':>14}: {c['documents']:,} documents, {c['tokens']:,} tokens, sha256 {c['fingerprint'][:16]}")
    if "imported_from" in m:
        click.echo(f"{'imported from':>14}: {m['imported_from']['path']} ({m['imported_from']['format']})")
    losses = [p for p in m.get("loss_curve", []) if isinstance(p.get("loss"), int | float)]
    if losses:
        shown = losses if len(losses) <= 8 else losses[:4] + losses[-4:]
        click.echo(f"{'loss':>14}: " + "  ".join(f"{p.get('epoch', '?')}:{p['loss']:.4g}" for p in shown))


@models.command("import")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Format of SOURCE.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Model directory to create.")
@click.option("--overwrite", is_flag=True, help="Replace an existing model directory.")
@json_option
def import_cmd(source, fmt, output, overwrite, as_json):
    """Make a model directory from a vectors file in a standard format.

    \b
    Examples:
      embedsearch models import glove.6B.100d.txt --format glove -o models/glove6b
      embedsearch models import cc.en.300.bin --format fasttext-bin -o models/cc-en
    """
    from embedsearch.models import import_vectors

    m = import_vectors(Path(source), fmt, Path(output), overwrite=overwrite)
    if as_json:
        echo_json({"path": str(Path(output).absolute()), **m})
    else:
        click.echo(f"imported {m['vocab_size']:,} words ({m['dim']}-d, {m['kind']}) -> {output}")


@models.command("export")
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Format to write.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="File to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
@json_option
def export_cmd(model, fmt, output, overwrite, as_json):
    """Write a word model's vectors in a standard format.

    \b
    Examples:
      embedsearch models export models/glove --format word2vec -o glove.w2v.txt
      embedsearch models export models/ft --format fasttext-vec -o ft.vec
    """
    from embedsearch.models import export_model

    result = export_model(Path(model), fmt, Path(output), overwrite=overwrite)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"wrote {result['words']:,} words as {fmt} -> {output}")
