"""``embedsearch similar`` and ``embedsearch analogy``: word-level queries on a word model."""

from __future__ import annotations

from pathlib import Path

import click

from embedsearch.cli.index import json_option
from embedsearch.cli.output import echo_json, table
from embedsearch.wordvectors import ANALOGY_METHODS


def _load(model: str):
    from embedsearch.errors import UnknownModel
    from embedsearch.models import load_word_vectors

    path = Path(model)
    if not path.is_dir():
        raise UnknownModel(f"{model}: no such model directory")
    return load_word_vectors(path)


def _print(neighbours, as_json: bool, extra: dict) -> None:
    if as_json:
        echo_json({**extra, "results": [n.to_dict() for n in neighbours]})
    else:
        click.echo(table([(i + 1, n.word, f"{n.score:.4f}") for i, n in enumerate(neighbours)], ["#", "word", "cosine"]))


@click.command()
@click.argument("model", type=click.Path())
@click.argument("word")
@click.option("-k", default=10, show_default=True, type=click.IntRange(1, 10_000), help="How many neighbours.")
@json_option
def similar(model, word, k, as_json):
    """The K words nearest to WORD in MODEL (cosine). FastText models answer for unseen words too.

    \b
    Examples:
      embedsearch similar models/ft neural -k 10
      embedsearch similar models/glove king --json
    """
    from embedsearch.corpus import tokenize

    wv = _load(model)
    tokens = tokenize(word)
    query = tokens[0] if len(tokens) == 1 else word.lower()
    neighbours = wv.similar(query, k)
    note = None
    if wv.has_subwords and query not in wv.index:
        note = f"{query!r} is not in the vocabulary; its vector was built from character n-grams"
        if not as_json:
            click.echo(note, err=True)
    _print(neighbours, as_json, {"model": model, "word": query, "k": k, "note": note})


@click.command()
@click.argument("model", type=click.Path())
@click.argument("a")
@click.argument("b")
@click.argument("c")
@click.option("-k", default=5, show_default=True, type=click.IntRange(1, 1000), help="How many answers.")
@click.option("--method", type=click.Choice(ANALOGY_METHODS), default="3cosadd", show_default=True,
              help="3cosadd: cos(d, a - b + c); 3cosmul: Levy and Goldberg's multiplicative form.")  # fmt: skip
@json_option
def analogy(model, a, b, c, k, method, as_json):
    """Words D with A - B + C ~ D: "king man woman" asks king - man + woman (queen).

    \b
    Examples:
      embedsearch analogy models/w2v king man woman
      embedsearch analogy models/glove paris france italy --method 3cosmul -k 3
    """
    wv = _load(model)
    a, b, c = (w.lower() for w in (a, b, c))
    _print(wv.analogy(a, b, c, k, method=method), as_json, {"model": model, "query": [a, b, c], "method": method})
