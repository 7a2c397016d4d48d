"""Trainers side by side with the raw libraries, in one process, on the same corpus.

    apt-get install dict-gcide dict-foldoc          # the corpus (see dictd_corpus.py)
    python benchmarks/bench_trainers.py              # ~20 minutes on 2 cores
    python benchmarks/bench_trainers.py --corpus my.txt --threads 4 --skip fasttext

What it prints:

- word2vec skip-gram and FastText: our trainer (``embedsearch.trainers.train``, the code
  behind ``embedsearch train``) against ``gensim.models.Word2Vec`` / ``fasttext.train_unsupervised``
  / gensim's ``FastText`` called directly with the same parameters on the same tokenised file,
  each side timed from the start of training to the trained model saved on disk, as words/s and
  the ratio ours/raw (wall clock and CPU seconds), in ABBA-ordered pairs. Our reading and
  tokenising time is printed separately (it is shared by all trainers and the raw calls are
  handed the file it produced).
- FastText backends: the fasttext library against gensim's FastText, same corpus, threads and
  parameters (the measurement behind the default backend), each also against our trainer.
- GloVe: co-occurrence counting time and seconds per epoch, each as a ratio of the median
  gensim skip-gram epoch measured above; peak resident memory during GloVe; three seeds at our
  default learning rate and one at the reference's 0.05 (Hogwild threads: runs differ).
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
    ap.add_argument("--epochs", type=int, default=5, help="word2vec and FastText epochs of the quality runs")
    ap.add_argument("--speed-epochs", type=int, default=1, help="epochs of each side-by-side speed run")
    ap.add_argument("--reps", type=int, default=4, help="pairs of speed runs (ABBA order)")
    ap.add_argument("--glove-epochs", type=int, default=15)
    ap.add_argument("--glove-seeds", type=int, default=3, help="GloVe runs at the default lr (one more at lr 0.05)")
    ap.add_argument("--skip", default="", help="comma list of: word2vec, fasttext, glove")
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

        def timings(report) -> tuple[float, float]:
            return report.manifest["train_seconds"], report.manifest["train_cpu_seconds"]

        def alternate(run_raw, run_ours):
            """``--reps`` pairs of runs in ABBA order (raw first, then ours first...), so a drift in
            machine speed (this VM's first minutes run faster) hits both sides alike."""
            raw_t, ours_t = [], []
            for i in range(args.reps):
                pair = [(raw_t, run_raw), (ours_t, run_ours)]
                for bucket, fn in pair if i % 2 == 0 else pair[::-1]:
                    gc.collect()
                    bucket.append(fn())
            return raw_t, ours_t

        def speed_line(label: str, raw_name: str, raw_runs: list, ours_runs: list) -> dict:
            words = tokens * args.speed_epochs
            raw_t, ours_t = [w for w, _ in raw_runs], [w for w, _ in ours_runs]
            raw_cpu, ours_cpu = sum(c for _, c in raw_runs), sum(c for _, c in ours_runs)
            paired = sorted(r / o for r, o in zip(raw_t, ours_t, strict=True))  # ours words/s over raw words/s
            median = (
                paired[len(paired) // 2] if len(paired) % 2 else (paired[len(paired) // 2 - 1] + paired[len(paired) // 2]) / 2
            )
            r = {"raw_seconds": [round(x, 2) for x in raw_t], "ours_seconds": [round(x, 2) for x in ours_t],
                 "raw_words_s_mean": round(words * len(raw_t) / sum(raw_t)),
                 "ours_words_s_mean": round(words * len(ours_t) / sum(ours_t)),
                 "ratio_of_means": round(sum(raw_t) / sum(ours_t), 3), "paired_ratio_median": round(median, 3),
                 "cpu_ratio": round(raw_cpu / ours_cpu, 3), "raw_cpu_seconds": round(raw_cpu, 1),
                 "ours_cpu_seconds": round(ours_cpu, 1)}  # fmt: skip
            print(f"{label:<17} ours {r['ours_words_s_mean']:>9,} words/s   {raw_name:<8} {r['raw_words_s_mean']:>9,} words/s   "
                  f"ratio {r['ratio_of_means']:.3f} (median of paired runs {median:.3f}; {args.reps} pairs, {args.speed_epochs} "
                  f"epoch(s); raw {r['raw_seconds']} s, ours {r['ours_seconds']} s); CPU seconds raw/ours "
                  f"{r['cpu_ratio']:.3f}", flush=True)  # fmt: skip
            return r

        # ---- word2vec skip-gram ----------------------------------------------------------
        sg_epoch = None
        if "word2vec" not in skip:
            from gensim.models import Word2Vec

            from embedsearch.trainers.word2vec import LossCurve, gensim_word2vec_kwargs

            p = get_trainer("word2vec").Params(**common, sg=True, epochs=args.speed_epochs)
            raw_epochs: list[float] = []

            def raw_w2v():
                curve = LossCurve()
                t, c = time.perf_counter(), time.process_time()
                model = Word2Vec(
                    corpus_file=tokens_file, compute_loss=True, callbacks=[curve], **gensim_word2vec_kwargs(p, args.threads)
                )
                model.wv.save_word2vec_format(str(tmp / "raw.w2v.bin"), binary=True)  # a trained model is kept, as ours is
                raw_epochs.extend(pt["seconds"] for pt in curve.points)
                return time.perf_counter() - t, time.process_time() - c

            raw_t, ours_t = alternate(raw_w2v, lambda: timings(ours("word2vec", sg=True, epochs=args.speed_epochs)[0]))
            r = speed_line("word2vec sg", "gensim", raw_t, ours_t)
            sg_epoch = sorted(raw_epochs)[len(raw_epochs) // 2]  # the median gensim epoch
            r["raw_epoch_seconds"] = round(sg_epoch, 2)
            report, _ = ours("word2vec", sg=True, epochs=args.epochs)
            r["quality"] = quality(load_word_vectors(report.path))
            r["quality_epochs"] = args.epochs
            results["word2vec_sg"] = r
            print(
                f"word2vec sg quality after {args.epochs} epochs: {r['quality']}; median gensim sg epoch {sg_epoch:.2f}s",
                flush=True,
            )

        # ---- FastText: both backends against their raw libraries ------------------------------
        if "fasttext" not in skip:
            import fasttext
            from gensim.models import FastText
            from gensim.models.fasttext import save_facebook_model

            from embedsearch.trainers.fasttext import fasttext_library_kwargs, gensim_fasttext_kwargs

            p = get_trainer("fasttext").Params(**common, sg=True, epochs=args.speed_epochs)

            def raw_library():
                t, c = time.perf_counter(), time.process_time()
                model = fasttext.train_unsupervised(input=tokens_file, verbose=0, **fasttext_library_kwargs(p, args.threads))
                model.save_model(str(tmp / "raw.bin"))
                return time.perf_counter() - t, time.process_time() - c

            def raw_gensim():
                t, c = time.perf_counter(), time.process_time()
                model = FastText(corpus_file=tokens_file, **gensim_fasttext_kwargs(p, args.threads))
                save_facebook_model(model, str(tmp / "raw-gensim.bin"))
                return time.perf_counter() - t, time.process_time() - c

            best = {}
            for backend, raw_fn, raw_name in (("gensim", raw_gensim, "gensim"), ("fasttext", raw_library, "fasttext")):
                raw_t, ours_t = alternate(
                    raw_fn,
                    lambda b=backend: timings(ours("fasttext", sg=True, epochs=args.speed_epochs, backend=b)[0]),
                )
                r = speed_line(f"fasttext/{backend}", raw_name, raw_t, ours_t)
                report, _ = ours("fasttext", sg=True, epochs=args.epochs, backend=backend)
                r["quality"] = quality(load_word_vectors(report.path))
                r["quality_epochs"] = args.epochs
                r["quality_train_seconds"] = report.manifest["train_seconds"]
                results[f"fasttext_{backend}"] = r
                best[backend] = round(min(w for w, _ in raw_t), 2)
                print(
                    f"fasttext/{backend} after {args.epochs} epochs ({r['quality_train_seconds']:.0f}s): {r['quality']}",
                    flush=True,
                )
            full = {b: results[f"fasttext_{b}"]["quality_train_seconds"] for b in best}
            faster = min(full, key=full.get)
            results["fasttext_backends"] = {
                "raw_seconds_speed_epochs": best,
                f"seconds_{args.epochs}_epochs": full,
                "faster": faster,
            }
            print(f"fasttext backends: {args.speed_epochs} epoch(s), raw libraries {best}; {args.epochs} epochs through our "
                  f"trainer {full} -> faster at {args.epochs} epochs: {faster}", flush=True)  # fmt: skip

        # ---- GloVe -------------------------------------------------------------------------
        if "glove" not in skip:
            runs = []
            configs = [(seed, None) for seed in range(1, args.glove_seeds + 1)] + [(1, 0.05)]
            for seed, lr in configs:
                gc.collect()
                extra = {"lr": lr} if lr else {}
                with PeakRSS() as mem:
                    report, p = ours("glove", window=10, x_max=10.0, alpha=0.75, epochs=args.glove_epochs, seed=seed, **extra)
                m = report.manifest
                epoch_s = sum(pt["seconds"] for pt in m["loss_curve"]) / len(m["loss_curve"])
                run = {"seed": seed, "lr": p.lr, "count_seconds": m["cooccurrence"]["count_seconds"],
                       "epoch_seconds": round(epoch_s, 2), "nonzeros": m["cooccurrence"]["nonzeros"], "vocab": m["vocab_size"],
                       "peak_rss_mb": round(mem.peak / 2**20), "rss_growth_mb": round((mem.peak - mem.start) / 2**20),
                       "loss_first": round(m["loss_curve"][0]["loss"], 5), "loss_last": round(m["loss_curve"][-1]["loss"], 5),
                       "quality": quality(load_word_vectors(report.path))}  # fmt: skip
                if sg_epoch:
                    run["count_over_sg_epoch"] = round(run["count_seconds"] / sg_epoch, 3)
                    run["epoch_over_sg_epoch"] = round(epoch_s / sg_epoch, 3)
                runs.append(run)
                print(f"glove seed {seed} lr {p.lr}: {run['vocab']:,} words, {run['nonzeros']:,} non-zeros; "
                      f"count {run['count_seconds']:.2f}s"
                      + (f" ({run['count_over_sg_epoch']:.3f}x a gensim sg epoch)" if sg_epoch else "")
                      + f"; epoch {epoch_s:.2f}s" + (f" ({run['epoch_over_sg_epoch']:.3f}x)" if sg_epoch else "")
                      + f"; peak RSS {run['peak_rss_mb']} MiB (+{run['rss_growth_mb']} MiB during GloVe); "
                      f"loss {run['loss_first']:.4f} -> {run['loss_last']:.4f}; {run['quality']}", flush=True)  # fmt: skip
            default_runs = [r for r in runs if r["lr"] == runs[0]["lr"]]
            ws = [r["quality"]["wordsim353"] for r in default_runs]
            results["glove"] = {
                "runs": runs,
                "wordsim353_default_lr": {"min": min(ws), "mean": round(sum(ws) / len(ws), 4), "max": max(ws)},
            }
            print(f"glove WordSim-353 over {len(ws)} seeds at lr {runs[0]['lr']}: {results['glove']['wordsim353_default_lr']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
