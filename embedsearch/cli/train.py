"""``embedsearch train {word2vec,fasttext,glove,triplet,distill}``: options generated from each trainer's
parameter dataclass, so the help text lives in one place."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click

from embedsearch.cli.index import Warnings, json_option
from embedsearch.cli.output import echo_json
from embedsearch.corpus import FORMATS, ReadOptions, spool_stdin
from embedsearch.progress import wanted as progress_wanted
from embedsearch.trainers import TRAINER_NAMES, get_trainer


@click.group()
def train() -> None:
    """Train word embeddings on your own text.

    \b
    Corpora are read like `index add` reads documents (txt, jsonl, csv, directories, - for
    stdin); a txt file is one document per line unless --per-file. Every model directory
    gets a manifest.json with the parameters, corpus fingerprint, versions, timings and
    the loss curve. Nothing is written until training succeeded.
    """


def _param_option(f: dataclasses.Field) -> click.Option:
    meta = f.metadata
    name = f.name.replace("_", "-")
    kwargs: dict[str, Any] = {"default": f.default, "show_default": True, "help": meta.get("help")}
    if f.type in (bool, "bool"):
        decl = meta.get("flag") or f"--{name}"
        if "/" not in decl and not f.default:
            kwargs["is_flag"] = True
        return click.Option([decl, f.name], **kwargs)
    if meta.get("choices"):
        kwargs["type"] = click.Choice(meta["choices"])
    else:
        kwargs["type"] = {"int": int, "float": float, "str": str}.get(str(f.type), f.type if isinstance(f.type, type) else str)
    return click.Option([f"--{name}", f.name], **kwargs)


def _make_command(name: str) -> click.Command:
    trainer = get_trainer(name)
    fields = dataclasses.fields(trainer.Params)

    def callback(inputs, output, overwrite, fmt, per_file, text_field, encoding, skip_bad, glob_pattern, as_json, **values):
        from embedsearch.trainers import train as run_training

        params = trainer.Params(**{f.name: values[f.name] for f in fields})
        opts = ReadOptions(format=fmt, per_line=not per_file, text_field=text_field, encoding=encoding,
                           skip_bad=skip_bad, glob=glob_pattern)  # fmt: skip
        warnings = Warnings()
        stdin_path = spool_stdin(sys.stdin) if "-" in inputs else None
        try:
            report = run_training(
                trainer, list(inputs), output, params, read_options=opts, stdin_path=stdin_path, overwrite=overwrite,
                progress=progress_wanted(as_json), on_skip=warnings,
            )  # fmt: skip
        finally:
            if stdin_path is not None:
                stdin_path.unlink(missing_ok=True)
        warnings.summary()
        m = report.manifest
        if as_json:
            echo_json({"path": str(report.path), **m})
            return
        last = m["loss_curve"][-1].get("loss") if m["loss_curve"] else None
        click.echo(
            f"trained {name} -> {report.path}\n"
            f"  corpus: {m['corpus']['documents']:,} documents, {m['corpus']['tokens']:,} tokens\n"
            f"  vocabulary: {m['vocab_size']:,} words (min count {params.min_count}), {params.dim} dimensions\n"
            f"  time: {m['prepare_seconds']:.1f}s reading + {m['train_seconds']:.1f}s training, "
            f"{m['threads']} thread(s), backend {m.get('backend', '-')}"
            + (f"\n  final loss: {last:.6g}" if isinstance(last, float) else "")
        )

    params = [
        click.Argument(["inputs"], nargs=-1, required=True),
        click.Option(
            ["-o", "--output", "output"],
            required=True,
            type=click.Path(file_okay=False),
            help="Model directory to write (must not exist unless --overwrite).",
        ),  # fmt: skip
        click.Option(["--overwrite"], is_flag=True, help="Replace an existing model directory (only once training succeeded)."),
        click.Option(
            ["--format", "fmt"],
            type=click.Choice(FORMATS),
            default=None,
            help="Input format (default: from the extension; stdin: txt).",
        ),  # fmt: skip
        click.Option(["--per-file"], is_flag=True, help="txt: one document per file instead of one per line."),
        click.Option(["--text-field"], default="text", show_default=True, help="jsonl/csv: field holding the text."),
        click.Option(["--encoding"], default="utf-8", show_default=True, help="Input encoding, e.g. latin-1."),
        click.Option(["--skip-bad"], is_flag=True, help="Skip malformed records (reported on stderr) instead of stopping."),
        click.Option(["--glob", "glob_pattern"], default="**/*", show_default=True, help="Files to take from directories."),
        *[_param_option(f) for f in fields],
    ]
    params.append(click.Option(["--json", "as_json"], is_flag=True, help="Print the manifest as JSON."))
    help_text = (
        f"{trainer.summary[0].upper()}{trainer.summary[1:]}.\n\nINPUTS: corpus files, directories, or - for stdin."
        "\n\n\b\nExamples:\n" + "\n".join(f"  {e}" for e in trainer.examples)
    )
    return click.Command(name, callback=callback, params=params, help=help_text, short_help=trainer.summary)


for _name in TRAINER_NAMES:
    train.add_command(_make_command(_name))

__all__ = ["json_option", "train"]


def _make_triplet_command() -> click.Command:
    from embedsearch.trainers.triplet import TripletParams

    fields = dataclasses.fields(TripletParams)

    def callback(output, overwrite, triplets_file, labelled, label_field, text_field, id_field, encoding, as_json, **values):
        from embedsearch.corpus import read_documents
        from embedsearch.errors import InvalidArgument
        from embedsearch.trainers.triplet import train_triplet
        from embedsearch.trainers.triplets import read_triplets

        params = TripletParams(**{f.name: values[f.name] for f in fields})
        if bool(triplets_file) == bool(labelled):
            raise InvalidArgument("give either --triplets FILE or --labelled FILE --label-field NAME")
        warnings = Warnings()
        if triplets_file:
            given = read_triplets(triplets_file, encoding=encoding)
            progress = progress_wanted(as_json)
            manifest = train_triplet(params, output, triplets=given, overwrite=overwrite, progress=progress)
        else:
            if not label_field:
                raise InvalidArgument("--labelled needs --label-field (the metadata field that holds each document's label)")
            opts = ReadOptions(text_field=text_field, id_field=id_field, encoding=encoding)
            docs = list(read_documents([labelled], opts))
            manifest = train_triplet(params, output, documents=docs, label_field=label_field, overwrite=overwrite,
                                     progress=progress_wanted(as_json), on_skip=warnings)  # fmt: skip
        warnings.summary()
        if as_json:
            echo_json({"path": str(output), **manifest})
            return
        before, after = manifest["metrics_before"], manifest["metrics_after"]
        click.echo(f"trained triplet ({manifest['base']}) -> {output}")
        speed = f"{manifest['train_seconds']:.1f}s ({manifest['examples_per_second']:.1f} triplets/s)"
        n = manifest["data"]["train_triplets"]
        click.echo(f"  {n:,} training triplets, {manifest['steps']} steps, {speed}; {manifest['stopped']}")
        for key in ("triplet_accuracy", "recall@10", "mrr@10", "ndcg@10"):
            if key in after:
                click.echo(f"  {key:>16}: {before.get(key, float('nan')):.4f} -> {after[key]:.4f}")

    params = [
        click.Option(["-o", "--output"], required=True, type=click.Path(file_okay=False), help="Model directory to write."),
        click.Option(["--overwrite"], is_flag=True, help="Replace an existing model directory (only once training succeeded)."),
        click.Option(
            ["--triplets", "triplets_file"],
            type=click.Path(dir_okay=False),
            default=None,
            help="jsonl/csv/tsv of anchor, positive, negative.",
        ),  # fmt: skip
        click.Option(
            ["--labelled"], type=click.Path(), default=None, help="Labelled documents (jsonl/csv/...) to mine triplets from."
        ),
        click.Option(["--label-field"], default=None, help="Metadata field holding each document's label."),
        click.Option(["--text-field"], default="text", show_default=True, help="jsonl/csv: field holding the text."),
        click.Option(["--id-field"], default="id", show_default=True, help="jsonl/csv: field holding the document id."),
        click.Option(["--encoding"], default="utf-8", show_default=True, help="Input encoding."),
        *[_param_option(f) for f in fields],
        click.Option(["--json", "as_json"], is_flag=True, help="Print the manifest as JSON."),
    ]
    help_text = (
        "Fine-tune a sentence encoder with a triplet loss (anchor closer to positive than to negative by a margin)."
        "\n\nHeld-out triplet accuracy and label retrieval (recall/MRR/nDCG@10) are measured before and after."
        "\n\n\b\nExamples:\n"
        "  embedsearch train triplet --triplets triplets.jsonl -o models/support-v1 --base minilm --margin 0.5 --epochs 1\n"
        "  embedsearch train triplet --labelled tickets.jsonl --label-field team -o models/support-v2 --mine hard\n"
        "  embedsearch train triplet --labelled tickets.jsonl --label-field team -o models/static-v1 --base models/glove"
    )
    short = "triplet-loss fine-tuning of a sentence encoder (MiniLM, a local model, or our word vectors)"
    return click.Command("triplet", callback=callback, params=params, help=help_text, short_help=short)


train.add_command(_make_triplet_command())


def _make_distill_command() -> click.Command:
    from embedsearch.trainers.distill import DistillParams

    fields = dataclasses.fields(DistillParams)

    def callback(inputs, output, overwrite, fmt, per_file, text_field, encoding, skip_bad, glob_pattern, as_json, **values):
        from embedsearch.corpus import iter_documents, resolve_sources
        from embedsearch.trainers.distill import train_distill

        params = DistillParams(**{f.name: values[f.name] for f in fields})
        params.validate()  # a bad option fails before the corpus is read or the teacher loads
        opts = ReadOptions(format=fmt, per_line=not per_file, text_field=text_field, encoding=encoding,
                           skip_bad=skip_bad, glob=glob_pattern)  # fmt: skip
        warnings = Warnings()
        stdin_path = spool_stdin(sys.stdin) if "-" in inputs else None
        try:
            docs = list(iter_documents(resolve_sources(list(inputs), opts, stdin_path), opts, on_skip=warnings))
            manifest = train_distill(params, docs, output, overwrite=overwrite, progress=progress_wanted(as_json),
                                     sources=list(inputs))  # fmt: skip
        finally:
            if stdin_path is not None:
                stdin_path.unlink(missing_ok=True)
        warnings.summary()
        if as_json:
            echo_json({"path": str(output), **manifest})
            return
        c = manifest["corpus"]
        click.echo(
            f"distilled {manifest['teacher']['spec']} -> {output} "
            f"(static, {manifest['dim']}-d, {manifest['vocab_size']:,} tokens)\n"
            f"  corpus: {c['documents']:,} documents, {c['tokens']:,} tokens; teacher embedded {c['teacher_documents']:,}\n"
            f"  PCA keeps {manifest['pca_explained_variance']:.1%} of the token vectors' variance\n"
            f"  held-out cosine to the teacher: {manifest['held_out_cosine_to_teacher']}\n"
            f"  time: {manifest['distill_seconds']:.1f}s distilling + {manifest['train_seconds']:.1f}s teacher and fine-tuning"
        )

    params = [
        click.Argument(["inputs"], nargs=-1, required=True),
        click.Option(["-o", "--output", "output"], required=True, type=click.Path(file_okay=False),
                     help="Model directory to write (must not exist unless --overwrite)."),  # fmt: skip
        click.Option(["--overwrite"], is_flag=True, help="Replace an existing model directory (only once training succeeded)."),
        click.Option(["--format", "fmt"], type=click.Choice(FORMATS), default=None,
                     help="Input format (default: from the extension; stdin: txt)."),  # fmt: skip
        click.Option(["--per-file"], is_flag=True, help="txt: one document per file instead of one per line."),
        click.Option(["--text-field"], default="text", show_default=True, help="jsonl/csv: field holding the text."),
        click.Option(["--encoding"], default="utf-8", show_default=True, help="Input encoding, e.g. latin-1."),
        click.Option(["--skip-bad"], is_flag=True, help="Skip malformed records (reported on stderr) instead of stopping."),
        click.Option(["--glob", "glob_pattern"], default="**/*", show_default=True, help="Files to take from directories."),
        *[_param_option(f) for f in fields],
        click.Option(["--json", "as_json"], is_flag=True, help="Print the manifest as JSON."),
    ]
    help_text = (
        "Distil a sentence model into a static student: a vector per token, mean-pooled (Model2Vec's method, "
        "then optional MSE fine-tuning towards the teacher's embeddings of your corpus)."
        "\n\nINPUTS: corpus files, directories, or - for stdin. The student is a sentence-transformers directory "
        "(safetensors) with a manifest; use it as --model DIR anywhere, or as the base of 'train triplet'."
        "\n\n\b\nExamples:\n"
        "  embedsearch train distill corpus.txt --teacher minilm -o models/static --dim 256\n"
        "  embedsearch train distill docs/ --format txt --per-file -o models/static --epochs 10\n"
        "  embedsearch train distill tickets.jsonl --text-field body -o models/tickets-static --weighting corpus"
    )
    short = "a static student distilled from a sentence model (Model2Vec + MSE fine-tuning)"
    return click.Command("distill", callback=callback, params=params, help=help_text, short_help=short)


train.add_command(_make_distill_command())
