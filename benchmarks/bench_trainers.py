"""Trainers side by side with the raw libraries, in one process, on the same corpus.

    apt-get install dict-gcide dict-foldoc          # the corpus (see dictd_corpus.py)
    python benchmarks/bench_trainers.py              # ~10 minutes on 2 cores
    python benchmarks/bench_trainers.py --corpus my.txt --threads 4 --skip fasttext-gensim

What it prints:

- word2vec skip-gram and FastText: our trainer (``embedsearch.trainers.train``, the code
  behind ``embedsearch train``) against ``gensim.models.Word2Vec`` / ``fasttext.train_unsupervised``
  called directly with the same parameters on the same tokenised file, as words/s and the
  ratio ours/raw. Our reading and tokenising time is printed separately (it is shared by
  all trainers and the raw calls are handed the file it produced).
- FastText backends: the fasttext library against gensim's FastText, same corpus and threads
  (the measurement behind the default backend).
- GloVe: co-occurrence counting time and seconds per epoch, each as a ratio of one gensim
  skip-gram epoch measured above; peak resident memory during GloVe.
- Quality of every model trained here: WordSim-353 and SimLex-999 Spearman, Google
  analogy accuracy (3CosAdd, 30k most frequent words), from gensim's bundled test data.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dictd_corpus import write_dictd_corpus  # noqa: E402

from embedsearch.corpus import ReadOptions  # noqa: E402
from embedsearch.evaluation.intrinsic import intrinsic_report  # noqa: E402
from embedsearch.models import load_word_vectors  # noqa: E402
from embedsearch.trainers import get_trainer, train  # noqa: E402
from embedsearch.trainers.prepare import prepare_corpus  # noqa: E402


class PeakRSS:
    """Samples VmRSS every 20 ms while the block runs."""

    def __enter__(self):
        self.peak = self.start = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())


def quality(wv) -> dict:
    r = intrinsic_report(wv)
    return {
        "wordsim353": round(r["wordsim353"]["spearman"], 4),
        "ws_coverage": round(r["wordsim353"]["coverage"], 3),
        "simlex999": round(r["simlex999"]["spearman"], 4),
        "google_analogy": round(r["google_analogy"]["accuracy"] or 0.0, 4),
        "analogy_coverage": round(r["google_analogy"]["coverage"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="a text file, one document per line (default: the dictd corpus)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=5, help="word2vec and FastText epochs (GloVe: --glove-epochs)")
    ap.add_argument("--glove-epochs", type=int, default=15)
    ap.add_argument("--skip", default="", help="comma list of: word2vec, fasttext, fasttext-gensim, glove")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    results: dict = {"threads": args.threads, "dim": args.dim}

    with tempfile.TemporaryDirectory(prefix="bench-trainers-") as tmp:
        tmp = Path(tmp)
        corpus_path = Path(args.corpus) if args.corpus else write_dictd_corpus(tmp / "dict.txt")
        t = time.perf_counter()
        prepared = prepare_corpus([str(corpus_path)], tmp, ReadOptions(per_line=True))
        prep_s = time.perf_counter() - t
        tokens = prepared.n_tokens
        results["corpus"] = {"path": str(corpus_path), "documents": prepared.n_docs, "tokens": tokens,
                             "vocab_min5": len(prepared.vocabulary(5)), "prepare_seconds": round(prep_s, 2)}  # fmt: skip
        print(f"corpus: {prepared.n_docs:,} documents, {tokens:,} tokens, {results['corpus']['vocab_min5']:,} words "
              f"at min-count 5; read + tokenise {prep_s:.1f}s (ours, shared by all trainers)")  # fmt: skip
        tokens_file = str(prepared.tokens_path)
        opts = ReadOptions(per_line=True)
        common = {"dim": args.dim, "threads": args.threads, "min_count": 5}

        def ours(name: str, **params):
            trainer = get_trainer(name)
            p = trainer.Params(**{**common, **params})
            out = tmp / f"ours-{name}-{time.monotonic_ns()}"
            report = train(trainer, [str(corpus_path)], out, p, read_options=opts)
            return report, p

        # ---- word2vec skip-gram ----------------------------------------------------------
        sg_epoch = None
        if "word2vec" not in skip:
            from gensim.models import Word2Vec

            from embedsearch.trainers.word2vec import gensim_word2vec_kwargs

            report, p = ours("word2vec", sg=True, epochs=args.epochs)
            ours_s = report.manifest["train_seconds"]
            gc.collect()
            t = time.perf_counter()
            raw = Word2Vec(corpus_file=tokens_file, compute_loss=True, **gensim_word2vec_kwargs(p, args.threads))
            raw_s = time.perf_counter() - t
            sg_epoch = raw_s / args.epochs
            del raw
            wps_ours, wps_raw = tokens * args.epochs / ours_s, tokens * args.epochs / raw_s
            q = quality(load_word_vectors(report.path))
            results["word2vec_sg"] = {"ours_seconds": ours_s, "raw_seconds": round(raw_s, 2), "ours_words_s": round(wps_ours),
                                      "raw_words_s": round(wps_raw), "ratio": round(wps_ours / wps_raw, 3),
                                      "raw_epoch_seconds": round(sg_epoch, 2), "quality": q}  # fmt: skip
            print(f"word2vec sg   ours {wps_ours:>10,.0f} words/s   gensim {wps_raw:>10,.0f} words/s   "
                  f"ratio {wps_ours / wps_raw:.3f}   (gensim epoch {sg_epoch:.2f}s)   {q}")  # fmt: skip

        # ---- FastText ----------------------------------------------------------------------
        if "fasttext" not in skip:
            import fasttext

            from embedsearch.trainers.fasttext import fasttext_library_kwargs, gensim_fasttext_kwargs

            report, p = ours("fasttext", sg=True, epochs=args.epochs, backend="fasttext")
            ours_s = report.manifest["train_seconds"]
            gc.collect()
            t = time.perf_counter()
            raw = fasttext.train_unsupervised(input=tokens_file, verbose=0, **fasttext_library_kwargs(p, args.threads))
            raw_s = time.perf_counter() - t
            del raw
            wps_ours, wps_raw = tokens * args.epochs / ours_s, tokens * args.epochs / raw_s
            q = quality(load_word_vectors(report.path))
            results["fasttext"] = {"ours_seconds": ours_s, "raw_seconds": round(raw_s, 2), "ours_words_s": round(wps_ours),
                                   "raw_words_s": round(wps_raw), "ratio": round(wps_ours / wps_raw, 3), "quality": q}  # fmt: skip
            print(f"fasttext      ours {wps_ours:>10,.0f} words/s   fasttext {wps_raw:>8,.0f} words/s   "
                  f"ratio {wps_ours / wps_raw:.3f}   {q}")  # fmt: skip
            if "fasttext-gensim" not in skip:
                from gensim.models import FastText

                gc.collect()
                t = time.perf_counter()
                graw = FastText(corpus_file=tokens_file, **gensim_fasttext_kwargs(p, args.threads))
                g_s = time.perf_counter() - t
                del graw
                results["fasttext_backends"] = {"fasttext_seconds": round(raw_s, 2), "gensim_seconds": round(g_s, 2),
                                                "gensim_over_fasttext": round(g_s / raw_s, 3)}  # fmt: skip
                print(f"fasttext backends: fasttext library {raw_s:.1f}s, gensim FastText {g_s:.1f}s "
                      f"(gensim takes {g_s / raw_s:.2f}x as long)")  # fmt: skip

        # ---- GloVe -------------------------------------------------------------------------
        if "glove" not in skip:
            gc.collect()
            with PeakRSS() as mem:
                report, p = ours("glove", window=10, x_max=10.0, alpha=0.75, epochs=args.glove_epochs)
            m = report.manifest
            count_s = m["cooccurrence"]["count_seconds"]
            epoch_s = sum(pt["seconds"] for pt in m["loss_curve"]) / len(m["loss_curve"])
            q = quality(load_word_vectors(report.path))
            g = {"count_seconds": count_s, "epoch_seconds": round(epoch_s, 2), "nonzeros": m["cooccurrence"]["nonzeros"],
                 "vocab": m["vocab_size"], "peak_rss_mb": round(mem.peak / 2**20), "rss_growth_mb": round((mem.peak - mem.start) / 2**20),
                 "loss_first": m["loss_curve"][0]["loss"], "loss_last": m["loss_curve"][-1]["loss"], "quality": q}  # fmt: skip
            if sg_epoch:
                g["count_over_sg_epoch"] = round(count_s / sg_epoch, 3)
                g["epoch_over_sg_epoch"] = round(epoch_s / sg_epoch, 3)
            results["glove"] = g
            print(f"glove: {g['vocab']:,} words, {g['nonzeros']:,} non-zeros; count {count_s:.2f}s"
                  + (f" ({g['count_over_sg_epoch']:.3f}x a gensim sg epoch)" if sg_epoch else "")
                  + f"; epoch {epoch_s:.2f}s" + (f" ({g['epoch_over_sg_epoch']:.3f}x)" if sg_epoch else "")
                  + f"; peak RSS {g['peak_rss_mb']} MiB (+{g['rss_growth_mb']} MiB); loss {g['loss_first']:.4f} -> "
                  f"{g['loss_last']:.4f}; {q}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
