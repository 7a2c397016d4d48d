"""``embedsearch evaluate``: every metric that applies to one model."""

from __future__ import annotations

import click

from embedsearch.cli.index import json_option
from embedsearch.cli.output import echo_json, table


@click.command()
@click.argument("model")
@click.option("--device", default=None, help="Where a sentence model runs (cpu, cuda…).")
@json_option
def evaluate(model, device, as_json):
    """Word benchmarks and Lee document similarity for MODEL (a built-in name or a model directory).

    \b
    Word models: WordSim-353 and SimLex-999 Spearman with OOV rate, Google analogy accuracy
    (3CosAdd over the 30k most frequent words), Lee document similarity with mean and SIF
    pooling. Sentence models: the word-pair sets with each word embedded alone, and Lee.

    \b
    Examples:
      embedsearch evaluate minilm
      embedsearch evaluate models/glove --json
    """
    from embedsearch.evaluation.report import evaluate_model, summary_rows

    result = evaluate_model(model, device=device)
    if as_json:
        echo_json(result)
        return
    click.echo(f"{model} ({result['kind']}), {result['seconds']:.1f}s")
    click.echo(table(summary_rows(result), ["metric", "value", "note"], flex=2))
