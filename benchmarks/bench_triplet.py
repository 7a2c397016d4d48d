"""Triplet fine-tuning on gensim's mini_newsgroup (200 posts, 2 labels, headers removed).

    python benchmarks/bench_triplet.py                 # MiniLM and a word-vector base
    python benchmarks/bench_triplet.py --epochs 2 --mine hard

For each base, the same stratified by-document split (20% held out): held-out triplet
accuracy and recall@10 / MRR@10 / nDCG@10 (same-label posts relevant) of the base model and
of the fine-tuned model, training time and triplets/s on this machine. The word-vector base
is word2vec trained here on the training posts only plus gensim's Lee background corpus.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from embedsearch.corpus import ReadOptions
from embedsearch.datasets import gensim_data, mini_newsgroup
from embedsearch.trainers import get_trainer, train
from embedsearch.trainers.triplet import TripletParams, train_triplet
from embedsearch.trainers.triplets import split_labelled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--mine", default="random", choices=("random", "hard", "semi-hard"))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    docs = mini_newsgroup().documents
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-triplet-") as tmp:
        tmp = Path(tmp)
        # a word-vector base that has seen no held-out text
        split = split_labelled(docs, "label", held_out=0.2, seed=args.seed)
        corpus = tmp / "train-text.txt"
        lee = Path(gensim_data("lee_background.cor")).read_text(encoding="latin-1")
        corpus.write_text("\n".join(" ".join(d.text.split()) for d in split.train) + "\n" + lee, encoding="utf-8")
        w2v = get_trainer("word2vec")
        t = time.perf_counter()
        train(w2v, [str(corpus)], tmp / "w2v", w2v.Params(dim=100, min_count=2, epochs=20, sg=True, seed=args.seed),
              read_options=ReadOptions(per_line=True))  # fmt: skip
        print(f"word2vec base trained on {len(split.train)} training posts + Lee background in {time.perf_counter() - t:.1f}s")
        for name, base, extra in (("minilm", "minilm", {}), ("word2vec", str(tmp / "w2v"), {"epochs": max(args.epochs, 10)})):
            params = TripletParams(base=base, epochs=extra.get("epochs", args.epochs), batch_size=args.batch_size, mine=args.mine,
                                   max_seq_length=args.max_seq_length, seed=args.seed, device="cpu", patience=100)  # fmt: skip
            m = train_triplet(params, tmp / f"out-{name}", documents=docs, label_field="label")
            before, after = m["metrics_before"], m["metrics_after"]
            row = {k: (round(before[k], 4), round(after[k], 4)) for k in ("triplet_accuracy", "recall@10", "mrr@10", "ndcg@10")}
            row.update(train_seconds=m["train_seconds"], triplets_per_second=m["examples_per_second"], steps=m["steps"],
                       epochs=params.epochs, train_triplets=m["data"]["train_triplets"],
                       held_out_docs=m["data"]["held_out_documents"])  # fmt: skip
            results[name] = row
            beat = after["triplet_accuracy"] > before["triplet_accuracy"] and after["recall@10"] > before["recall@10"]
            print(f"{name:>8}: triplet accuracy {before['triplet_accuracy']:.4f} -> {after['triplet_accuracy']:.4f}, "
                  f"recall@10 {before['recall@10']:.4f} -> {after['recall@10']:.4f}, MRR@10 {before['mrr@10']:.4f} -> "
                  f"{after['mrr@10']:.4f}, nDCG@10 {before['ndcg@10']:.4f} -> {after['ndcg@10']:.4f}; {params.epochs} epoch(s), "
                  f"{m['train_seconds']:.1f}s, {m['examples_per_second']:.1f} triplets/s; fine-tuned beats base: {beat}",
                  flush=True)  # fmt: skip
    print(json.dumps(results))


if __name__ == "__main__":
    main()
