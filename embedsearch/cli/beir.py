"""The BEIR options `evaluate` and `compare` share: a BEIR directory in, TREC runs and MTEB
results out."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_SPLIT = "test"


def beir_options(f):
    """--beir, --split, --task-name, --language, --mteb-json and --runs."""
    for option in reversed(
        [
            click.option(
                "--beir",
                "beir_dir",
                type=click.Path(exists=True, file_okay=False),
                default=None,
                help="A BEIR-format directory (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) as the corpus and the "
                "judged queries: scored over each contender's top 1,000 as BEIR and MTEB score it (trec_eval).",
            ),
            click.option(
                "--split", default=None, help=f"With --beir: the judgements to use, qrels/SPLIT.tsv [default: {DEFAULT_SPLIT}]."
            ),
            click.option(
                "--task-name", default=None, help="With --mteb-json: the MTEB task name [default: the --beir directory's name]."
            ),
            click.option(
                "--language",
                default=None,
                help="With --mteb-json: the set's language as MTEB writes it, ISO 639-3 and script [default: eng-Latn].",
            ),
            click.option(
                "--mteb-json",
                "mteb_dir",
                type=click.Path(file_okay=False),
                default=None,
                help="With --beir: write the scores in MTEB's results layout under this directory "
                "(DIR/results/MODEL/REVISION/TASK.json + model_meta.json; mteb.ResultCache(DIR) reads it).",
            ),
            click.option(
                "--runs",
                "runs_dir",
                type=click.Path(file_okay=False),
                default=None,
                help="With --beir: write each contender's ranking as a TREC run file, DIR/LABEL.run (trec_eval reads it).",
            ),
        ]
    ):
        f = option(f)
    return f


def check_beir_options(beir_dir, split, task_name, language, mteb_dir, runs_dir) -> None:
    """The BEIR-only options need --beir; the task name and the language are checked before
    anything runs (click refuses an output directory that is a file)."""
    from embedsearch.evaluation.mteb import check_language, check_task_name

    if beir_dir is None:
        named = (
            ("--split", split),
            ("--task-name", task_name),
            ("--language", language),
            ("--mteb-json", mteb_dir),
            ("--runs", runs_dir),
        )
        given = [name for name, v in named if v]
        if given:
            raise click.UsageError(f"{', '.join(given)} need{'s' if len(given) == 1 else ''} --beir DIR")
        return
    if task_name is not None or mteb_dir is not None:
        check_task_name(task_name or Path(beir_dir).resolve().name)
    if language is not None:
        check_language(language)


def load(beir_dir: str, split: str | None, runs_dir: str | None):
    """The BEIR set; with --runs, its ids must fit a TREC run file (checked before anything runs)."""
    from embedsearch.evaluation.beir import load_beir
    from embedsearch.evaluation.trec import check_run_ids

    beir = load_beir(Path(beir_dir), split or DEFAULT_SPLIT)
    if runs_dir is not None:
        check_run_ids([q.id for q in beir.queries], [d.id for d in beir.documents])
    return beir


def write(beir, runs, task_name, language, mteb_dir, runs_dir) -> None:
    """Write the MTEB results and run files asked for, saying where on stderr."""
    from embedsearch.evaluation.beir_run import write_outputs
    from embedsearch.evaluation.mteb import DEFAULT_LANGUAGE

    written = write_outputs(
        beir,
        runs,
        task_name=task_name,
        language=language or DEFAULT_LANGUAGE,
        mteb_dir=Path(mteb_dir) if mteb_dir else None,
        runs_dir=Path(runs_dir) if runs_dir else None,
    )
    for p in written:
        click.echo(f"wrote {p}", err=True)
