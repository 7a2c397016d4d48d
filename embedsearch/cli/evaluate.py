"""``embedsearch evaluate``: every metric that applies to one model, or its retrieval on a BEIR set."""

from __future__ import annotations

import click

from embedsearch.cli import beir as beir_cli
from embedsearch.cli.index import json_option
from embedsearch.cli.output import echo_json, table
from embedsearch.progress import wanted as progress_wanted


@click.command()
@click.argument("model")
@click.option("--device", default=None, help="Where a sentence model runs (cpu, cuda…).")
@beir_cli.beir_options
@json_option
def evaluate(model, device, beir_dir, split, task_name, language, mteb_dir, runs_dir, as_json):
    """Word benchmarks and Lee document similarity for MODEL (a built-in name or a model directory).

    \b
    Word models: WordSim-353 and SimLex-999 Spearman with OOV rate, Google analogy accuracy
    (3CosAdd over the 30k most frequent words), Lee document similarity with mean and SIF
    pooling. Sentence models: the word-pair sets with each word embedded alone, and Lee.

    \b
    With --beir DIR, instead: retrieval on that BEIR set, as MTEB measures it (MODEL may also be
    MODEL+lexical, MODEL+hybrid[:FUSION[:ALPHA]] or bm25, as in `compare`): nDCG, MAP, recall,
    precision, MRR and hit rate at 1, 3, 5, 10, 20, 100 and 1000 over the top 1,000 documents
    per query; --mteb-json DIR writes them in MTEB's results layout, --runs DIR the ranking as
    a TREC run file.

    \b
    Examples:
      embedsearch evaluate minilm
      embedsearch evaluate models/glove --json
      embedsearch evaluate minilm --beir scifact --mteb-json mteb-results --runs runs
      embedsearch evaluate bm25 --beir scifact --split dev --json
    """
    beir_cli.check_beir_options(beir_dir, split, task_name, language, mteb_dir, runs_dir)
    if beir_dir is not None:
        _evaluate_beir(model, device, beir_dir, split, task_name, language, mteb_dir, runs_dir, as_json)
        return
    from embedsearch.evaluation.report import evaluate_model, summary_rows

    result = evaluate_model(model, device=device)
    if as_json:
        echo_json(result)
        return
    click.echo(f"{model} ({result['kind']}), {result['seconds']:.1f}s")
    click.echo(table(summary_rows(result), ["metric", "value", "note"], flex=2))


def _evaluate_beir(model, device, beir_dir, split, task_name, language, mteb_dir, runs_dir, as_json) -> None:
    from embedsearch.evaluation.beir_run import evaluate_beir
    from embedsearch.evaluation.trec import CUTOFFS, MEASURES

    beir = beir_cli.load(beir_dir, split, runs_dir)
    summary, run = evaluate_beir(model, beir, device=device, progress=progress_wanted(as_json))
    beir_cli.write(beir, [run], task_name, language, mteb_dir, runs_dir)
    if as_json:
        echo_json(summary)
        return
    b = summary["beir"]
    click.echo(
        f"{summary['label']} [{summary['kind']}] on {b['name']}, {b['split']} split: {b['queries']} queries, "
        f"{b['documents']} documents, top {summary['depth']} per query, {summary['seconds']:.1f}s"
    )
    scores = summary["scores"]
    rows = [[m, *[f"{scores[f'{m}_at_{k}']:.4f}" for k in CUTOFFS]] for m in MEASURES]
    click.echo(table(rows, ["metric", *[f"@{k}" for k in CUTOFFS]]))
    for note in summary["notes"][1:]:  # the first says how it was measured (in --json and the README)
        click.echo(f"note: {note}")
