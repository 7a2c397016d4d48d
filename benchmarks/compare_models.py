"""The comparison in the reports issue's closing note: MiniLM and every trainer's model, on the
Lee corpus (with the project's labelled queries) and on held-out mini_newsgroup posts.

    python benchmarks/compare_models.py [--out reports/compare-run] [--reuse]

1. Trains word2vec (skip-gram), FastText and GloVe on the dict-gcide + dict-foldoc text
   (benchmarks/dictd_corpus.py; Lee's 300 background stories when the packages are missing),
   with each trainer's defaults for 5 epochs (GloVe 15).
2. Splits mini_newsgroup by label (80/20, seed 1), writes both parts as JSON lines, and
   fine-tunes MiniLM with the triplet trainer on the training part only.
3. Runs ``embedsearch compare`` twice, printing each command first:
   Lee (350 documents, corpora/lee-queries.jsonl), and the held-out posts (--label-field label),
   which no model was trained on.
Everything runs through the CLI in subprocesses, so the commands are the ones a user types.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dictd_corpus import DICT_FILES, write_dictd_corpus  # noqa: E402
from embedsearch.datasets import gensim_data, mini_newsgroup  # noqa: E402
from embedsearch.trainers.triplets import split_labelled  # noqa: E402


def run(args: list[str]) -> None:
    print("$ " + " ".join(shlex.quote(a) for a in args), flush=True)
    started = time.perf_counter()
    subprocess.run(args, check=True)
    print(f"  ({time.perf_counter() - started:.1f}s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "compare-run")
    ap.add_argument("--reuse", action="store_true", help="keep models already trained under --out/models")
    args = ap.parse_args()
    out, models = args.out, args.out / "models"
    models.mkdir(parents=True, exist_ok=True)
    es = [sys.executable, "-m", "embedsearch"]

    if all(Path(f).exists() for f in DICT_FILES):
        corpus = out / "dictd.txt"
        if not corpus.exists():
            write_dictd_corpus(corpus)
        corpus_args = [str(corpus)]
    else:
        corpus_args = [str(gensim_data("lee_background.cor")), "--encoding", "latin-1"]
    for algo, extra in (("word2vec", ["--sg", "--epochs", "5"]), ("fasttext", ["--epochs", "5"]), ("glove", ["--epochs", "15"])):
        target = models / algo
        if not (args.reuse and target.exists()):
            run([*es, "train", algo, *corpus_args, "-o", str(target), "--overwrite", *extra])

    split = split_labelled(mini_newsgroup().documents, "label", held_out=0.2, seed=1)
    for name, docs in (("train", split.train), ("held-out", split.held_out)):
        with open(out / f"newsgroup-{name}.jsonl", "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps({"id": d.id, "text": d.text, "label": d.metadata["label"]}) + "\n")
    triplet = models / "triplet-minilm"
    if not (args.reuse and triplet.exists()):
        run([*es, "train", "triplet", "--labelled", str(out / "newsgroup-train.jsonl"), "--label-field", "label",
             "--base", "minilm", "--epochs", "1", "-o", str(triplet), "--overwrite"])  # fmt: skip

    compared = ["minilm", *(f"{n}={models / n}" for n in ("word2vec", "fasttext", "glove", "triplet-minilm"))]
    run([*es, "compare", *compared, "--corpus", "lee", "--queries", str(ROOT / "corpora" / "lee-queries.jsonl"),
         "-o", str(out / "lee.html"), "--json", str(out / "lee.json"), "--markdown", str(out / "lee.md")])  # fmt: skip
    run([*es, "compare", *compared, "--corpus", str(out / "newsgroup-held-out.jsonl"), "--label-field", "label",
         "--no-word-level", "--no-docsim",
         "-o", str(out / "newsgroup.html"), "--json", str(out / "newsgroup.json"),
         "--markdown", str(out / "newsgroup.md")])  # fmt: skip
    for name in ("lee", "newsgroup"):
        print(f"\n===== {name} =====\n" + (out / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
