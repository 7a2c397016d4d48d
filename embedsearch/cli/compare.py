"""``embedsearch compare``: several models side by side, or one model in several FAISS indexes."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from embedsearch.cli import beir as beir_cli
from embedsearch.cli.index import build_read_options, device_option, read_options, with_examples, word_model_options
from embedsearch.cli.output import table
from embedsearch.progress import wanted as progress_wanted


def load_corpus(corpus: str, opts) -> tuple[list, str]:
    """A corpus path (read like ``index add``) or a bundled corpus name."""
    from embedsearch.corpus import read_documents
    from embedsearch.datasets import BUNDLED_CORPORA, bundled_corpus

    if corpus in BUNDLED_CORPORA and not Path(corpus).exists():
        return bundled_corpus(corpus), corpus
    if corpus != "-" and not Path(corpus).exists():
        names = ", ".join(BUNDLED_CORPORA)
        raise click.BadParameter(
            f"{corpus!r} is neither a file or directory nor a bundled corpus ({names})", param_hint="--corpus"
        )
    return list(read_documents([corpus], opts)), corpus


OUTPUT_OPTIONS = {"html": "--output", "json": "--json", "markdown": "--markdown"}


def _check_outputs(outputs: dict[str, str | None]) -> None:
    """Fail before the long computation, not after, when an output cannot be written."""
    for fmt, dest in outputs.items():
        if dest is None or dest == "-":
            continue
        p = Path(dest)
        if p.is_dir():
            raise click.BadParameter(f"{dest} is a directory; give a file name", param_hint=OUTPUT_OPTIONS[fmt])
        p.parent.mkdir(parents=True, exist_ok=True)


@click.command()
@click.argument("models", nargs=-1)
@click.option(
    "--corpus",
    "-c",
    default=None,
    help="Corpus file/directory (read like 'index add'), '-' for stdin, "
    "or a bundled corpus: lee, lee-background, mini_newsgroup (or --beir instead).",
)
@read_options
@click.option(
    "--queries",
    "-q",
    "queries_path",
    type=click.Path(dir_okay=False, exists=True),
    help='Labelled queries, JSON lines: {"query": "...", "relevant": ["doc-id", ...]}.',
)
@click.option(
    "--label-field",
    default=None,
    help="Instead of --queries: documents sharing this metadata field's value are each other's relevant set.",
)
@click.option("--output", "-o", "html_path", default=None, help="Write the self-contained HTML report here ('-' for stdout).")
@click.option("--json", "json_path", default=None, help="Write the report as JSON here ('-' for stdout).")
@click.option("--markdown", "md_path", default=None, help="Write the report as Markdown here ('-' for stdout).")
@click.option(
    "--index-specs",
    multiple=True,
    help="ANN mode: FAISS specs for one --model, comma-separated (Flat,HNSW32,IVF256,SQ8); "
    "separate with ';' when a spec has a comma of its own (Flat;IVF256,SQ8), or repeat the option.",
)
@click.option("--model", "-m", "ann_model", default=None, help="ANN mode: the model whose vectors go into each index.")
@click.option(
    "-k", default=10, show_default=True, type=click.IntRange(1, 1000), help="Cut-off for recall, MRR, nDCG and neighbour overlap."
)
@click.option(
    "--bootstrap",
    default=1000,
    show_default=True,
    type=click.IntRange(100, 100_000),
    help="Bootstrap resamples for the confidence intervals.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for bootstrap, sampling and maps.")
@click.option(
    "--max-queries",
    default=500,
    show_default=True,
    type=click.IntRange(1),
    help="Label mode / ANN mode: at most this many queries (a seeded sample).",
)
@beir_cli.beir_options
@word_model_options
@click.option("--no-word-level", is_flag=True, help="Skip WordSim-353, SimLex-999 and the analogies.")
@click.option("--no-docsim", is_flag=True, help="Skip Lee document similarity.")
@click.option(
    "--map",
    "map_method",
    type=click.Choice(["pca", "umap"]),
    default="pca",
    show_default=True,
    help="2-D map of documents (umap needs umap-learn).",
)
@click.option(
    "--color-field",
    default=None,
    help="Metadata field that colours the 2-D map (default: the label field, or the query a document answers).",
)
@device_option
@with_examples(
    "  embedsearch compare minilm models/w2v models/ft models/glove \\\n"
    "      --corpus lee --queries corpora/lee-queries.jsonl -o reports/cmp.html\n"
    "  embedsearch compare minilm minilm+lexical minilm+hybrid bm25 \\\n"
    "      --corpus lee --queries corpora/lee-queries.jsonl -o reports/modes.html\n"
    "  embedsearch compare minilm tuned=models/triplet --corpus mini_newsgroup --label-field label \\\n"
    "      --json reports/cmp.json --markdown reports/cmp.md\n"
    "  embedsearch compare minilm bm25 minilm+hybrid --beir scifact \\\n"
    "      --mteb-json mteb-results --runs runs -o reports/scifact.html\n"
    "  embedsearch compare --index-specs Flat,HNSW32,IVF64,SQ8 --model minilm --corpus docs.jsonl -o reports/ann.html"
)
def compare(
    models,
    corpus,
    fmt,
    per_line,
    text_field,
    id_field,
    encoding,
    skip_bad,
    glob_pattern,
    meta,
    queries_path,
    label_field,
    html_path,
    json_path,
    md_path,
    index_specs,
    ann_model,
    k,
    bootstrap,
    seed,
    max_queries,
    beir_dir,
    split,
    task_name,
    language,
    mteb_dir,
    runs_dir,
    pooling,
    oov,
    no_word_level,
    no_docsim,
    map_method,
    color_field,
    device,
):
    """Compare MODELS (built-in names or model directories; LABEL=PATH names one) on a corpus.

    Search modes are contenders too: MODEL+lexical and MODEL+hybrid search a MODEL collection
    with a lexical index in that mode (MODEL+hybrid:rrf, MODEL+hybrid:weighted:0.7 for other fusions), and
    bm25 is the lexical index alone, without a model.

    Measures, where each applies: retrieval on labelled queries (recall@k, MRR, nDCG with 95%
    bootstrap intervals and paired tests against the best model), WordSim-353 / SimLex-999 /
    Google analogies, Lee document similarity, agreement between models (neighbour overlap and
    rank correlation), and cost (documents/s, size, dimension, index memory, query latency).
    With --beir DIR the corpus and the judged queries come from a BEIR-format directory and
    retrieval is scored as BEIR and MTEB score it (graded nDCG, recall over all relevant
    documents, MAP; over each contender's top 1,000); --mteb-json and --runs write every
    contender's scores in MTEB's results layout and its ranking as a TREC run file.
    With --index-specs it instead measures one model's vectors in each FAISS index: recall@k
    against exact search, queries/s, build time and bytes per vector.
    With labelled queries the report ends with a recommendation: the contender to use and the
    `index alter` line that makes its mode a collection's default.
    Without -o/--json/--markdown the summary table (and the recommendation) is printed.
    """
    outputs = {"json": json_path, "markdown": md_path, "html": html_path}
    _check_outputs(outputs)
    if queries_path and label_field:
        raise click.UsageError("give --queries or --label-field, not both")
    beir_cli.check_beir_options(beir_dir, split, task_name, language, mteb_dir, runs_dir)
    if beir_dir is not None:
        clash = [name for name, v in (("--corpus", corpus), ("--queries", queries_path), ("--label-field", label_field)) if v]
        if clash or index_specs:
            raise click.UsageError(f"--beir brings its own corpus and queries: drop {', '.join(clash) or '--index-specs'}")
    elif corpus is None:
        raise click.UsageError("give --corpus (a file, directory or bundled corpus) or --beir DIR")
    options = {key: v for key, v in (("pooling", pooling), ("oov", oov)) if v}
    opts = build_read_options(fmt, per_line, text_field, id_field, encoding, skip_bad, glob_pattern, meta)
    progress = progress_wanted(any(dest == "-" for dest in outputs.values()))
    command = command_line(click.get_current_context())

    if index_specs:
        if models and ann_model:
            raise click.UsageError("ANN mode compares indexes for one model: give --model or one MODEL, not both")
        model = ann_model or (models[0] if len(models) == 1 else None)
        if model is None:
            raise click.UsageError("ANN mode (--index-specs) needs exactly one model: --model NAME")
        from embedsearch.store.specs import parse_spec

        specs = split_specs(index_specs)
        for s in specs:
            parse_spec(s)  # a bad spec is a usage error before anything loads
        docs, corpus_name = load_corpus(corpus, opts)
        query_texts = None
        if queries_path:
            from embedsearch.evaluation.compare import read_queries

            query_texts = [q.text for q in read_queries(Path(queries_path), {d.id for d in docs})]
        from embedsearch.evaluation.ann import ann_benchmark

        report = ann_benchmark(
            model,
            docs,
            specs,
            query_texts=query_texts,
            corpus_name=corpus_name,
            k=k,
            max_queries=max_queries,
            seed=seed,
            device=device,
            options=options,
            progress=progress,
        )
        _finish(report, command, outputs)
        return

    if ann_model:
        raise click.UsageError("--model is for ANN mode (with --index-specs); list the models to compare as arguments")
    if not models:
        raise click.UsageError("name at least one model to compare, e.g. 'embedsearch compare minilm models/w2v --corpus lee'")
    from embedsearch.evaluation.contenders import check_contenders, parse_contenders

    check_contenders(parse_contenders(models), options)  # a bad spec or model stops here, before anything loads
    from embedsearch.evaluation.compare import compare_models, label_queries, read_queries

    beir, beir_runs, queries = None, {}, None
    if beir_dir is not None:
        beir = beir_cli.load(beir_dir, split, runs_dir)
        docs, corpus_name, queries = beir.documents, f"{beir_dir} (BEIR)", beir.queries
        queries_path = f"{beir_dir}/qrels/{beir.split}.tsv"
    else:
        docs, corpus_name = load_corpus(corpus, opts)
    if queries_path and beir is None:
        queries = read_queries(Path(queries_path), {d.id for d in docs})
    elif label_field:
        queries = label_queries(docs, label_field, max_queries=max_queries, seed=seed)
    report = compare_models(
        models,
        docs,
        queries=queries,
        corpus_name=corpus_name,
        queries_name=queries_path,
        label_field=label_field,
        k=k,
        resamples=bootstrap,
        seed=seed,
        device=device,
        options=options,
        word_level=not no_word_level,
        docsim=not no_docsim,
        map_method=map_method,
        color_field=color_field,
        progress=progress,
        beir=beir,
        beir_runs=beir_runs,
    )
    if beir is not None:
        beir_cli.write(beir, list(beir_runs.values()), task_name, language, mteb_dir, runs_dir)
    _finish(report, command, outputs)


def split_specs(values: tuple[str, ...]) -> list[str]:
    """Index specs from each --index-specs value: split on ';' when it has one, else on ','."""
    specs: list[str] = []
    for value in values:
        for spec in (part.strip() for part in value.split(";" if ";" in value else ",")):
            if spec and spec in specs:
                raise click.BadParameter(f"{spec} is named twice", param_hint="--index-specs")
            if spec:
                specs.append(spec)
    return specs


def command_line(ctx: click.Context) -> str:
    """The command as a user would type it again: arguments, then every option not at its default."""
    parts = ctx.command_path.split()
    parts[0] = "embedsearch"
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            parts += [shlex.quote(str(v)) for v in (value or ())]
        elif value != param.default and value not in (None, False, ()):
            name = max(param.opts, key=len)
            if param.is_flag:
                parts.append(name)
            else:
                for v in value if param.multiple else (value,):
                    parts += [name, shlex.quote(str(v))]
    return " ".join(parts)


def _finish(report: dict, command: str, outputs: dict[str, str | None]) -> None:
    """Write the requested files, print what goes to stdout ('-'), and the summary table when
    no output was asked for."""
    from embedsearch.evaluation.render import render, summary_rows, write_outputs

    report["settings"]["command"] = command
    written = write_outputs(report, {fmt: Path(dest) for fmt, dest in outputs.items() if dest not in (None, "-")})
    for fmt, dest in outputs.items():
        if dest == "-":
            click.echo(render(report, fmt), nl=False)
    if all(dest is None for dest in outputs.values()):
        if report["kind"] == "ann":
            rk = f"recall@{report['settings']['k']}"
            rows = [
                [x["spec"], f"{x[rk]:.3f}", f"{x['qps']:,.0f}", f"{x['build_seconds']:.3f}", f"{x['bytes_per_vector']:.0f}"]
                for x in report["specs"]
            ]
            click.echo(table(rows, ["index", rk, "queries/s", "build s", "bytes/vector"]))
        else:
            labels = [m["label"] for m in report["models"]]
            rows = [[r["label"], *[c["text"] for c in r["cells"]], r["best"]] for r in summary_rows(report)]
            click.echo(table(rows, ["metric", *labels, "best"]))
            if report.get("recommendation"):
                from embedsearch.evaluation.recommend import sentence

                click.echo("\n" + sentence(report["recommendation"]).replace("`", ""))
    for p in written:
        click.echo(f"wrote {p}", err=True)
