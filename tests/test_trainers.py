"""Trainers on real and planted corpora: train, save, reload without pickle, neighbours,
FastText subwords, GloVe's counts against brute force, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedsearch.corpus import ReadOptions
from embedsearch.datasets import gensim_data
from embedsearch.errors import CorpusError, OutputExists
from embedsearch.models import load_word_vectors, read_manifest
from embedsearch.trainers import get_trainer, train

LEE = str(gensim_data("lee_background.cor"))
LEE_OPTS = ReadOptions(per_line=True, encoding="latin-1")

#: small but real settings per trainer (fastText's 2M n-gram buckets would be 800 MB)
FAST = {
    "word2vec": {"dim": 32, "epochs": 3},
    "fasttext": {"dim": 32, "epochs": 3, "bucket": 20_000},
    "fasttext-library": {"dim": 32, "epochs": 3, "bucket": 20_000, "backend": "fasttext"},
    "glove": {"dim": 32, "epochs": 5, "min_count": 2},
}


pytestmark = pytest.mark.slow  # trains word2vec, fastText and GloVe


def _trainer(key: str):
    return get_trainer(key.split("-")[0])


def _train(key: str, out: Path, corpus: str = LEE, opts: ReadOptions = LEE_OPTS, **params):
    trainer = _trainer(key)
    p = trainer.Params(**{**FAST[key], **params})
    return train(trainer, [corpus], out, p, read_options=opts)


def planted_corpus(path: Path, n_sentences: int = 3000, seed: int = 0) -> Path:
    """Sentences on 20 topics of 15 filler words each; every sentence that holds 'planta' is
    repeated with 'plantb' in its place, so the two words share all their contexts and nothing
    else does. (The topics keep the vectors apart: with uniformly random fillers every word has
    the same contexts and FastText maps them all to one direction.)"""
    rng = np.random.default_rng(seed)
    topics = [[f"w{t:02d}x{i:02d}" for i in range(15)] for t in range(20)]
    lines = []
    for _ in range(n_sentences):
        topic = topics[rng.integers(0, len(topics))]
        words = [topic[i] for i in rng.integers(0, len(topic), 12)]
        if rng.random() < 0.3:
            words[rng.integers(0, 12)] = "planta"
            lines.append(" ".join(words))
            lines.append(" ".join(words).replace("planta", "plantb"))
        else:
            lines.append(" ".join(words))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("key", list(FAST))
def test_trains_saves_and_reloads_without_pickle(key, tmp_path, request):
    report = _train(key, tmp_path / "m", deterministic=True)
    m = read_manifest(report.path)
    assert m["algorithm"] == key.split("-")[0]
    assert m["kind"] == ("fasttext" if key.startswith("fasttext") else "word-vectors")
    assert m["corpus"]["documents"] == 300 and m["corpus"]["tokens"] > 50_000
    assert len(m["corpus"]["fingerprint"]) == 64 and m["corpus"]["tokenizer"]
    assert m["threads"] == 1 and m["params"]["deterministic"] is True
    assert m["wall_seconds"] > 0 and m["versions"]["numpy"]
    assert m["loss_curve"], "every trainer records a loss or progress curve"
    assert m["sif"]["component_from"].endswith("training documents")
    request.getfixturevalue("no_pickle")
    wv = load_word_vectors(report.path)
    assert len(wv) == m["vocab_size"] and wv.dim == 32
    assert np.isfinite(wv.vectors).all() and np.abs(wv.vectors).sum() > 0
    # the same seed, one thread: a second run gives the same vectors
    again = load_word_vectors(_train(key, tmp_path / "m2", deterministic=True).path)
    assert again.words == wv.words
    np.testing.assert_array_equal(again.vectors, wv.vectors)
    # no temporary directories left beside the model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m2"]


@pytest.mark.parametrize("key", list(FAST))
def test_words_sharing_all_contexts_come_out_nearest(key, tmp_path):
    corpus = planted_corpus(tmp_path / "planted.txt")
    params = {"epochs": 10 if key != "glove" else 25, "min_count": 2, "window": 3, "deterministic": True}
    if key == "word2vec":
        params["sg"] = True  # CBOW needs about twice the epochs to separate the pair as clearly
    report = _train(key, tmp_path / "m", corpus=str(corpus), opts=ReadOptions(per_line=True), **params)
    wv = load_word_vectors(report.path)
    assert wv.similar("planta", 3)[0].word == "plantb"
    assert wv.similar("plantb", 3)[0].word == "planta"


def test_fasttext_answers_for_unseen_words(tmp_path):
    wv = load_word_vectors(_train("fasttext", tmp_path / "ft").path)
    assert wv.has_subwords
    assert "governmentalism" not in wv.index
    v = wv.vector("governmentalism")
    assert v.shape == (32,) and np.linalg.norm(v) > 0
    words = [n.word for n in wv.similar("governmentalism", 10)]
    assert any(w.startswith("government") for w in words), words
    assert "</s>" not in wv.index  # fastText's end-of-line token is not offered as a word


def test_glove_loss_decreases_and_manifest_records_counts(tmp_path):
    report = _train("glove", tmp_path / "g", epochs=6)
    losses = [p["loss"] for p in report.manifest["loss_curve"]]
    assert len(losses) == 6
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert report.manifest["cooccurrence"]["nonzeros"] > 100_000
    assert report.manifest["backend"] == "numba"


def test_word2vec_records_per_epoch_loss(tmp_path):
    report = _train("word2vec", tmp_path / "w", epochs=3, sg=True)
    curve = report.manifest["loss_curve"]
    assert [p["epoch"] for p in curve] == [1, 2, 3]
    assert all(p["loss"] > 0 for p in curve)
    assert report.manifest["architecture"] == "skip-gram"


def test_fasttext_backend_is_recorded(tmp_path):
    default = _train("fasttext", tmp_path / "f").manifest
    assert default["backend"] == "gensim" and default["backend_choice"].startswith("default")
    assert [p["epoch"] for p in default["loss_curve"]] == [1, 2, 3]  # gensim's FastText reports no loss
    library = _train("fasttext-library", tmp_path / "l").manifest
    assert library["backend"] == "fasttext" and library["backend_choice"] == "requested"
    curve = library["loss_curve"]
    assert curve[-1]["loss"] < curve[0]["loss"] and curve[-1]["progress"] == 100.0


# --- bad input -----------------------------------------------------------------------------


def test_empty_corpus(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(CorpusError, match="empty"):
        _train("glove", tmp_path / "m", corpus=str(empty), opts=ReadOptions(per_line=True))
    assert not (tmp_path / "m").exists()


def test_corpus_with_no_word_above_min_count(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("each word here is different\nanother line entirely new\n")
    for key in ("word2vec", "glove", "fasttext"):
        with pytest.raises(CorpusError, match="no word occurs at least 5 times"):
            _train(key, tmp_path / key, corpus=str(corpus), opts=ReadOptions(per_line=True), min_count=5)
        assert not (tmp_path / key).exists()


def test_non_utf8_corpus_names_the_line(tmp_path):
    corpus = tmp_path / "latin.txt"
    corpus.write_bytes(b"plain line\ncaf\xe9 au lait\n")
    with pytest.raises(CorpusError, match=r"latin\.txt:2.*--encoding"):
        _train("glove", tmp_path / "m", corpus=str(corpus), opts=ReadOptions(per_line=True))


def test_existing_output_is_refused_then_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExists):
        _train("glove", out)
    assert (out / "keep.txt").read_text() == "mine"
    trainer = _trainer("glove")
    report = train(trainer, [LEE], out, trainer.Params(**FAST["glove"]), read_options=LEE_OPTS, overwrite=True)
    assert (report.path / "vectors.npy").exists() and not (out / "keep.txt").exists()


def test_failed_training_with_overwrite_keeps_the_old_model(tmp_path):
    out = _train("glove", tmp_path / "m").path
    before = (out / "vectors.npy").read_bytes()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    trainer = _trainer("glove")
    with pytest.raises(CorpusError):
        train(trainer, [str(empty)], out, trainer.Params(**FAST["glove"]), read_options=ReadOptions(per_line=True),
              overwrite=True)  # fmt: skip
    assert (out / "vectors.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "m"]


def test_parameter_ranges_are_checked(tmp_path):
    from embedsearch.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="--dim must be at least 1"):
        _train("glove", tmp_path / "m", dim=0)
    with pytest.raises(InvalidArgument, match="--minn"):
        _train("fasttext", tmp_path / "m", minn=5, maxn=3)


def test_manifest_is_json_with_the_parameters(tmp_path):
    report = _train("word2vec", tmp_path / "w", window=3, sg=True)
    data = json.loads((report.path / "manifest.json").read_text())
    assert data["params"]["window"] == 3 and data["params"]["sg"] is True
    assert data["versions"]["gensim"]


# --- GloVe internals ---------------------------------------------------------------------------


def brute_force_cooccurrence(ids: np.ndarray, doc_ends: np.ndarray, vocab: int, window: int) -> np.ndarray:
    """The definition, one pair at a time: X[i, j] += 1/d for every pair d <= window apart in a document."""
    x = np.zeros((vocab, vocab), dtype=np.float64)
    start = 0
    for end in doc_ends:
        for p in range(start, end):
            for q in range(max(start, p - window), p):
                x[ids[p], ids[q]] += 1.0 / (p - q)
                x[ids[q], ids[p]] += 1.0 / (p - q)
        start = end
    return x


@pytest.mark.parametrize(
    ("threads", "dense_words", "table_slots"),
    [(1, 0, None), (2, 8, None), (3, 1000, None), (2, 4, 64), (1, 0, 32)],  # the last two drain their tables
)
def test_cooccurrence_counts_match_brute_force_exactly(threads, dense_words, table_slots):
    from embedsearch.trainers.glove_core import cooccurrence

    rng = np.random.default_rng(7)
    vocab = 40
    ids = rng.integers(0, vocab, 2500).astype(np.int32)
    doc_ends = np.array([1, 300, 301, 1800, 2500], dtype=np.int64)  # one-word documents included
    # window 2: weights 1 and 1/2 and their sums are exact in float32, so equality is exact
    c = cooccurrence(ids, doc_ends, vocab, 2, threads=threads, dense_words=dense_words, table_slots=table_slots)
    expected = brute_force_cooccurrence(ids, doc_ends, vocab, 2)
    np.testing.assert_array_equal(c.to_dense(), expected)
    assert c.nnz == int((expected != 0).sum())
    if table_slots:
        assert c.drains > 0
    # a wider window: 1/3, 1/5... are rounded in float32, so equal to float32 precision
    c = cooccurrence(ids, doc_ends, vocab, 5, threads=threads, dense_words=dense_words, table_slots=table_slots)
    np.testing.assert_allclose(c.to_dense(), brute_force_cooccurrence(ids, doc_ends, vocab, 5), rtol=2e-6)


def test_cooccurrence_windows_stop_at_document_ends():
    from embedsearch.trainers.glove_core import cooccurrence

    c = cooccurrence(np.array([0, 1, 2, 3], dtype=np.int32), np.array([2, 4], dtype=np.int64), 4, 10, threads=1)
    x = c.to_dense()
    assert x[0, 1] == x[1, 0] == 1.0 and x[2, 3] == 1.0
    assert x[1, 2] == 0 and x[0, 3] == 0


def reference_glove_epoch(params, gradsq, entries, eta, x_max=10.0, alpha=0.75, clip=100.0):
    """The reference C code's update (Stanford GloVe, glove.c), one entry at a time in float64.

    ``params`` and ``gradsq`` are [W, C, bw, bc]. A vector component's gradient f*diff*c is
    clipped, then scaled by eta; the biases step by f*diff itself, not scaled by eta."""
    W, C, bw, bc = params
    gW, gC, gbw, gbc = gradsq
    cost = 0.0
    for i, j, x in entries:
        diff = float(W[i] @ C[j]) + bw[i] + bc[j] - np.log(x)
        fdiff = diff if x > x_max else (x / x_max) ** alpha * diff
        cost += 0.5 * fdiff * diff
        t1 = np.clip(fdiff * C[j], -clip, clip) * eta
        t2 = np.clip(fdiff * W[i], -clip, clip) * eta
        u1, u2 = t1 / np.sqrt(gW[i]), t2 / np.sqrt(gC[j])
        gW[i] += t1 * t1
        gC[j] += t2 * t2
        W[i] -= u1
        C[j] -= u2
        bw[i] -= fdiff / np.sqrt(gbw[i])
        bc[j] -= fdiff / np.sqrt(gbc[j])
        gbw[i] += fdiff * fdiff
        gbc[j] += fdiff * fdiff
    return cost / len(entries)


@pytest.mark.parametrize("lr", [0.05, 0.1])
def test_glove_update_is_the_reference_update(lr):
    # issue 18: the bias step was scaled by lr, which the reference does not do; at lr 0.1 that
    # cost 0.03 WordSim-353. One thread, so the compiled epoch runs the entries in order.
    from embedsearch.trainers import glove_core as G
    from embedsearch.trainers import glove_kernels as K

    rng = np.random.default_rng(3)
    vocab, dim, n = 30, 8, 400
    rows = rng.integers(0, vocab, n).astype(np.int32)
    cols = rng.integers(0, vocab, n).astype(np.int32)
    x = rng.choice([0.5, 1.0, 3.0, 40.0], n) * rng.uniform(0.5, 2.0, n)  # below and above x_max
    model = G.GloveModel(vocab, dim, seed=5)
    params = [a.astype(np.float64) for a in (model.W, model.C, model.bw, model.bc)]
    gradsq = [a.astype(np.float64) for a in (model.gW, model.gC, model.gbw, model.gbc)]
    logx = np.log(x).astype(np.float32)
    one_thread = np.array([0]), np.array([n])
    for _ in range(3):
        expected = reference_glove_epoch(params, gradsq, list(zip(rows, cols, x, strict=True)), lr)
        got = K.glove_epoch(model.W, model.C, model.bw, model.bc, model.gW, model.gC, model.gbw, model.gbc,
                            rows, cols, logx, *one_thread, np.float32(lr), np.float32(np.log(10.0)), np.float32(0.75),
                            np.float32(100.0)) / n  # fmt: skip
        assert got == pytest.approx(expected, rel=1e-4)
    for ours, ref in zip((model.W, model.C, model.bw, model.bc, model.gW, model.gC, model.gbw, model.gbc),
                         params + gradsq, strict=True):  # fmt: skip
        np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-5)
    # the biases moved by steps of the size the reference takes, not lr times that
    assert np.abs(params[2] - G.GloveModel(vocab, dim, seed=5).bw).max() > 0.5


@pytest.mark.parametrize("threads", [1, 3])
def test_streamed_entries_train_like_entries_in_memory(tmp_path, monkeypatch, threads):
    # entries beyond the memory budget are written to disk and read back block by block; one
    # thread gives the same weights bit for bit, several the same thread slices (Hogwild order
    # between threads differs)
    from embedsearch.trainers import glove_core as G

    rng = np.random.default_rng(1)
    ids = rng.zipf(1.3, 6000).astype(np.int32) % 200
    ends = np.array([2000, 4000, 6000], dtype=np.int64)
    monkeypatch.setattr(G, "STREAM_BLOCK", 97)  # many blocks per thread, a ragged last one
    weights = []
    for spill in (None, tmp_path / "spill"):
        cooc = G.cooccurrence(ids, ends, 200, 5, threads=2)
        n = cooc.nnz
        entries = G.prepare_entries(cooc, 11, memory_mb=64 if spill is None else 0, spill_dir=spill)
        assert entries.streamed == (spill is not None) and entries.n == n
        model = G.GloveModel(200, 8, seed=2)
        losses = [G.epoch_cpu(model, entries, 0.05, threads, x_max=10.0, alpha=0.75) for _ in range(3)]
        assert losses[-1] < losses[0]
        weights.append((model.W.copy(), model.bw.copy(), losses))
        entries.remove_files()
    if threads == 1:
        np.testing.assert_array_equal(weights[0][0], weights[1][0])
        np.testing.assert_array_equal(weights[0][1], weights[1][1])
        assert weights[0][2] == pytest.approx(weights[1][2], rel=1e-12)  # summed per block
    else:
        np.testing.assert_allclose(weights[0][2], weights[1][2], rtol=0.05)
    assert not list((tmp_path / "spill").iterdir())


def test_glove_streams_its_entries_beyond_the_budget(tmp_path):
    # 300k tokens over 30k random words: about 5M entries, 60 MB, over a quarter of 64 MiB
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(30_000)])
    tokens = words[rng.integers(0, 30_000, 300_000)].reshape(-1, 50)
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(" ".join(line) for line in tokens) + "\n")
    opts = ReadOptions(per_line=True)
    common = {"dim": 8, "epochs": 2, "min_count": 1, "memory_mb": 64}
    report = _train("glove", tmp_path / "g", corpus=str(corpus), opts=opts, **common)
    co = report.manifest["cooccurrence"]
    assert co["entries"] == "streamed from disk" and co["drains"] > 0, co  # random text: tables fill and drain
    assert report.manifest["loss_curve"][-1]["loss"] < report.manifest["loss_curve"][0]["loss"]
    in_memory = _train("glove", tmp_path / "g2", corpus=str(corpus), opts=opts, **{**common, "memory_mb": 1024})
    assert in_memory.manifest["cooccurrence"]["entries"] == "in memory"
    assert in_memory.manifest["cooccurrence"]["nonzeros"] == co["nonzeros"]


def test_torch_glove_path_on_cpu_decreases_the_loss(tmp_path):
    # the CUDA path's code, run on the CPU device: same objective, mini-batch AdaGrad
    from embedsearch.trainers import glove_core as G
    from embedsearch.trainers.prepare import prepare_corpus

    corpus = prepare_corpus([LEE], tmp_path, LEE_OPTS)
    vocab = corpus.vocabulary(3)
    ids, ends = corpus.encoded(vocab)
    cooc = G.cooccurrence(ids, ends, len(vocab), 5, threads=2)
    model = G.GloveModel(len(vocab), 16, seed=0)
    runner = G.TorchGlove(model, G.prepare_entries(cooc, 0), "cpu", x_max=10.0, alpha=0.75, batch_size=4096)
    losses = [runner.epoch(0.05) for _ in range(4)]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    runner.sync()
    assert np.isfinite(model.vectors()).all()


def test_glove_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    import torch

    from embedsearch.errors import InvalidArgument

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InvalidArgument, match="no CUDA device"):
        _train("glove", tmp_path / "g", device="cuda")


# --- the train command ---------------------------------------------------------------------------


def test_train_cli_options_come_from_the_dataclasses(cli):
    r = cli("train", "glove", "--help")
    assert r.exit_code == 0
    for option in ("--x-max", "--alpha", "--window", "--min-count", "--deterministic", "--memory-mb", "--device"):
        assert option in r.output
    assert "weighting function f(x)" in r.output and "Examples:" in r.output
    r = cli("train", "word2vec", "--help")
    assert "--sg / --cbow" in r.output and "--hs / --negative-sampling" in r.output
    r = cli("train", "fasttext", "--help")
    assert "[auto|fasttext|gensim]" in r.output


def test_train_cli_end_to_end_with_json_and_stdin(cli, tmp_path):
    text = planted_corpus(tmp_path / "p.txt", n_sentences=400).read_text()
    out = tmp_path / "models" / "w2v"
    r = cli("train", "word2vec", "-", "-o", str(out), "--dim", "16", "--epochs", "2", "--min-count", "2", "--sg", "--json",
            input=text)  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["path"] == str(out) and data["params"]["sg"] is True and data["params"]["dim"] == 16
    assert data["corpus"]["sources"] == ["stdin"] and data["vocab_size"] > 300
    r = cli("train", "word2vec", "-", "-o", str(out), "--dim", "16", input=text)
    assert r.exit_code == 2 and "already exists" in r.output and "--overwrite" in r.output
    r = cli("train", "glove", str(tmp_path / "p.txt"), "-o", str(tmp_path / "g"), "--dim", "8", "--epochs", "2")
    assert r.exit_code == 0, r.output
    assert "trained glove" in r.output and "final loss" in r.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["glove", "{missing}", "-o", "{out}"], 1, "nope.txt: no such file or directory"),
        (["glove", "{empty}", "-o", "{out}"], 1, "empty"),
        (["glove", "{corpus}", "-o", "{out}", "--dim", "0"], 2, "--dim must be at least 1"),
        (["glove", "{corpus}", "-o", "{out}", "--min-count", "1000"], 1, "no word occurs at least 1000 times"),
        (["fasttext", "{corpus}", "-o", "{out}", "--backend", "spacy"], 2, "'spacy' is not one of"),
        (["bert", "{corpus}", "-o", "{out}"], 2, "No such command 'bert'"),
    ],
)
def test_train_cli_errors(args, code, message, cli, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    planted_corpus(tmp_path / "c.txt", n_sentences=50)
    paths = {
        "missing": tmp_path / "nope.txt",
        "empty": tmp_path / "empty.txt",
        "corpus": tmp_path / "c.txt",
        "out": tmp_path / "m",
    }
    r = cli("train", *[a.format(**{k: str(v) for k, v in paths.items()}) for a in args])
    assert r.exit_code == code, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "m").exists()


def test_word2vec_learning_rate_decays_over_the_epochs(tmp_path):
    curve = _train("word2vec", tmp_path / "w", epochs=4, alpha=0.02, min_alpha=0.0).manifest["loss_curve"]
    assert [round(p["lr"], 6) for p in curve] == [0.015, 0.01, 0.005, 0.0]
