"""The triplet trainer on a planted task (word-vector base: seconds on a CPU), MiniLM on a
small slice of mini_newsgroup, the CLI, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedsearch.corpus import Document
from embedsearch.errors import CorpusError, InvalidArgument, OutputExists, UnknownModel
from embedsearch.models import import_vectors, read_manifest
from embedsearch.trainers.triplet import TripletParams, train_triplet

pytestmark = pytest.mark.slow  # fine-tunes a sentence model


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Word vectors where 40 large noise words hide 4 small label words in their own
    dimensions, and 300 documents whose label is decided by the label words alone."""
    root = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(0)
    noise = [f"n{i}" for i in range(40)]
    signal = {"red": ["ruby", "crimson"], "blue": ["azure", "cobalt"]}
    words = noise + [w for ws in signal.values() for w in ws]
    vec = np.zeros((len(words), 16), dtype=np.float32)
    vec[:40, :12] = rng.standard_normal((40, 12))
    vec[40:, 12:] = 0.6 * rng.standard_normal((4, 4))
    (root / "v.txt").write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in zip(words, vec, strict=True)))
    import_vectors(root / "v.txt", "glove", root / "wm")
    docs = []
    for i in range(300):
        label = "red" if i % 2 else "blue"
        docs.append(Document(f"d{i}", " ".join([*rng.choice(noise, 8), *rng.choice(signal[label], 2)]), {"label": label}))
    return root / "wm", docs


def test_word_vector_base_learns_the_planted_labels(planted, tmp_path):
    base, docs = planted
    params = TripletParams(base=str(base), epochs=6, batch_size=16, per_anchor=2, lr=5e-2, patience=10, device="cpu")
    m = train_triplet(params, tmp_path / "out", documents=docs, label_field="label")
    before, after = m["metrics_before"], m["metrics_after"]
    assert after["triplet_accuracy"] > before["triplet_accuracy"] + 0.1, (before, after)
    assert after["recall@10"] > before["recall@10"]
    losses = [p["loss"] for p in m["loss_curve"]]
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert last < first * 0.8
    manifest = read_manifest(tmp_path / "out")
    assert manifest["kind"] == "sentence-transformers" and manifest["base_kind"] == "word-vectors"
    assert manifest["data"]["train_triplets"] == 480 and manifest["data"]["held_out_documents"] == 60
    assert (tmp_path / "out" / "2_Dense" / "model.safetensors").exists()
    # the published model is a model like any other: it embeds documents for a collection
    from embedsearch.embedders import load_embedder

    emb = load_embedder(str(tmp_path / "out"), device="cpu", cache=False)
    assert emb.embed(["ruby n1 n2"]).shape == (1, 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_minilm_on_a_slice_of_mini_newsgroup(tmp_path):
    from embedsearch.datasets import mini_newsgroup

    docs = mini_newsgroup().documents[::5]  # 40 posts, both labels
    params = TripletParams(epochs=2, batch_size=8, max_seq_length=48, held_out=0.25, patience=5, device="cpu", lr=5e-5)
    m = train_triplet(params, tmp_path / "ng", documents=docs, label_field="label")
    assert m["base_kind"] == "transformer" and m["dim"] == 384
    assert {"triplet_accuracy", "recall@10", "mrr@10", "ndcg@10"} <= set(m["metrics_after"])
    by_epoch = [np.mean([p["loss"] for p in m["loss_curve"] if p["epoch"] == e]) for e in (1, 2)]
    assert by_epoch[1] < by_epoch[0], by_epoch
    assert (tmp_path / "ng" / "model.safetensors").exists()


def test_given_triplets_and_the_cli(planted, tmp_path, cli):
    base, docs = planted
    by_label = {
        "red": [d.text for d in docs if d.metadata["label"] == "red"],
        "blue": [d.text for d in docs if d.metadata["label"] == "blue"],
    }
    lines = [
        json.dumps({"anchor": by_label["red"][i], "positive": by_label["red"][i + 1], "negative": by_label["blue"][i]})
        for i in range(60)
    ]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    r = cli("train", "triplet", "--triplets", str(tmp_path / "t.jsonl"), "-o", str(tmp_path / "m"), "--base", str(base),
            "--epochs", "2", "--batch-size", "8", "--device", "cpu", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["data"]["mining"] == "given" and data["data"]["held_out_triplets"] == 12
    r = cli("train", "triplet", "--triplets", str(tmp_path / "t.jsonl"), "-o", str(tmp_path / "m"), "--base", str(base))
    assert r.exit_code == 2 and "already exists" in r.output
    (tmp_path / "docs.jsonl").write_text(
        "\n".join(json.dumps({"id": d.id, "text": d.text, "label": d.metadata["label"]}) for d in docs[:40])
    )
    r = cli("train", "triplet", "--labelled", str(tmp_path / "docs.jsonl"), "--label-field", "label", "-o", str(tmp_path / "m2"),
            "--base", str(base), "--mine", "hard", "--device", "cpu")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "triplet_accuracy" in r.output and "->" in r.output


def test_bad_input(planted, tmp_path):
    base, docs = planted
    params = TripletParams(base=str(base), device="cpu")
    one_label = [Document(f"x{i}", f"n{i} ruby", {"label": "red"}) for i in range(10)]
    with pytest.raises(CorpusError, match="at least two labels"):
        train_triplet(params, tmp_path / "a", documents=one_label, label_field="label")
    lonely = [*docs[:20], Document("solo", "n1 azure", {"label": "green"})]
    skipped = []
    train_triplet(params, tmp_path / "b", documents=lonely, label_field="label", on_skip=skipped.append)
    assert any("'green' has only one document" in s for s in skipped)
    assert read_manifest(tmp_path / "b")["data"]["skipped_labels"] == ["green"]
    with pytest.raises(UnknownModel, match="no such directory"):
        train_triplet(TripletParams(base=str(tmp_path / "nope")), tmp_path / "c", documents=docs, label_field="label")
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputExists):
        train_triplet(params, tmp_path / "d", documents=docs, label_field="label")
    with pytest.raises(InvalidArgument, match="--distance"):
        train_triplet(TripletParams(base=str(base), distance="manhattan"), tmp_path / "e", documents=docs, label_field="label")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "d"]
    assert not Path(tmp_path / "c").exists()


def test_collapse_alarm():
    from embedsearch.trainers.triplet import TrainingCollapsed, _collapse_check

    healthy = {"mean_pairwise_cosine": 0.4}
    _collapse_check(healthy, [{"loss": 0.3}] * 10, 0.5, base_cosine=0.3, lr=2e-5)
    # a mean-pooled word-vector base sits near 1: judged against its own spread, not a fixed cosine
    _collapse_check({"mean_pairwise_cosine": 0.99997}, [{"loss": 0.3}] * 10, 0.5, base_cosine=0.99998, lr=1e-2)
    with pytest.raises(TrainingCollapsed, match=r"at learning rate 2e-05: .* fell from 0.7 .* to 0.005.*try --lr 2e-06$"):
        _collapse_check({"mean_pairwise_cosine": 0.995}, [{"loss": 0.3}] * 10, 0.5, base_cosine=0.3, lr=2e-5)
    tight = r"fell from 2e-05 in the base model to 1e-06, 20 times smaller; try --lr 0.001, or --mine semi-hard"
    with pytest.raises(TrainingCollapsed, match=tight):
        _collapse_check({"mean_pairwise_cosine": 0.999999}, [], 0.5, base_cosine=0.99998, lr=1e-2, mine="hard")
    with pytest.raises(TrainingCollapsed, match=r"stuck at the margin \(0.5\) at learning rate 0.01: .*try --lr 0.001"):
        _collapse_check({"mean_pairwise_cosine": 0.5}, [{"loss": 0.5}] * 10, 0.5, base_cosine=0.3, lr=1e-2)


# ------------------------------------------------------------------ a real word2vec base (issue 12)


@pytest.fixture(scope="module")
def lee_w2v(tmp_path_factory) -> Path:
    """word2vec trained on gensim's Lee background corpus (about a second)."""
    from click.testing import CliRunner

    from embedsearch.cli import main
    from embedsearch.datasets import gensim_data

    out = tmp_path_factory.mktemp("w2v") / "lee"
    args = ["train", "word2vec", str(gensim_data("lee_background.cor")), "-o", str(out), "--encoding", "latin-1",
            "--dim", "32", "--epochs", "5", "--min-count", "2", "--deterministic"]  # fmt: skip
    r = CliRunner().invoke(main, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


# stop words, punctuation inside and around words, hyphens, curly quotes, upper case
TRICKY = [
    "The Prime Minister said that it was not the time for an election, and that he would not call one.",
    "Well-known officials -- police, fire-fighters & the army -- were “on the scene” (again); it's over.",
    "Australia's cricket team won: 3 wickets to spare! Why? Because they were there, of all places...",
]


def test_word_model_base_starts_as_the_word_vector_embedder(lee_w2v):
    """Before training, the trainer's model embeds a text exactly as the base's word-vector
    embedder does (mean pooling): same tokens, stop words included."""
    from sentence_transformers.sentence_transformer.modules.tokenizer import ENGLISH_STOP_WORDS

    from embedsearch.corpus import tokenize
    from embedsearch.embedders import load_embedder
    from embedsearch.trainers.triplet import encode, load_base

    assert all(set(tokenize(t)) & set(ENGLISH_STOP_WORDS) for t in TRICKY)
    base = load_base(str(lee_w2v), "cpu")
    got = encode(base.model, base.inputs(TRICKY))
    want = load_embedder(str(lee_w2v), cache=False).embed_batch(TRICKY)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() > 0.9999, cos
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_before_metrics_are_the_base_models(lee_w2v, tmp_path):
    """The metrics recorded before training are those of the word-vector embedder itself, and
    the published model reads text the way it was trained to."""
    from sentence_transformers import SentenceTransformer

    from embedsearch.datasets import mini_newsgroup
    from embedsearch.embedders import load_embedder
    from embedsearch.embedders.sentence import pretokenize_words
    from embedsearch.evaluation.retrieval import mean_pairwise_cosine
    from embedsearch.trainers.triplets import split_labelled

    docs = mini_newsgroup().documents
    params = TripletParams(base=str(lee_w2v), epochs=1, device="cpu")
    m = train_triplet(params, tmp_path / "out", documents=docs, label_field="label")
    held_out = split_labelled(docs, "label", held_out=params.held_out, seed=params.seed).held_out
    base_vecs = load_embedder(str(lee_w2v), cache=False).embed([d.text for d in held_out])
    assert m["metrics_before"]["mean_pairwise_cosine"] == pytest.approx(mean_pairwise_cosine(base_vecs), abs=1e-7)
    assert m["pretokenize"] == "embedsearch.corpus.tokenize"

    tuned = load_embedder(str(tmp_path / "out"), device="cpu", cache=False)
    raw = SentenceTransformer(str(tmp_path / "out"), device="cpu")
    want = raw.encode(pretokenize_words(TRICKY), convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(tuned.embed(TRICKY), want, atol=1e-5)
    # fed raw text, the same weights lose the hyphenated and quoted words
    assert not np.allclose(raw.encode(TRICKY[1:2], normalize_embeddings=True), want[1:2], atol=1e-3)


def test_no_false_collapse_on_a_word2vec_base_and_a_real_collapse_is_caught(lee_w2v, tmp_path):
    from embedsearch.datasets import mini_newsgroup
    from embedsearch.trainers.triplet import TrainingCollapsed, data_from_labels, evaluate, fit, load_base

    docs = mini_newsgroup().documents
    # the default learning rate on a base whose mean pairwise cosine is 0.9999+ from the start
    params = TripletParams(base=str(lee_w2v), epochs=2, device="cpu")
    m = train_triplet(params, tmp_path / "ok", documents=docs, label_field="label")
    assert m["lr"] == 1e-2 and m["metrics_before"]["mean_pairwise_cosine"] > 0.9999
    assert len(m["evaluations"]) == 2

    # every text mapped to the same vector: a zero dense layer with a constant bias gives no
    # gradient under the cosine triplet loss, so it stays collapsed through training
    base = load_base(str(lee_w2v), "cpu")
    data = data_from_labels(docs, "label", params, base).as_inputs(base.inputs)
    before = evaluate(base.model, data.held_out, data.held_out_docs, data.label_field, params.distance)
    dense = base.model[2].linear
    with torch_no_grad():
        dense.weight.zero_()
        dense.bias.fill_(1.0)
    collapsed = r"collapsed at learning rate 0.01: .*base model to 0: every text points the same way; try --lr 0.001$"
    with pytest.raises(TrainingCollapsed, match=collapsed):
        fit(base.model, base.kind, data, params, "cpu", False, tmp_path / "ckpt", before["mean_pairwise_cosine"])


def torch_no_grad():
    import torch

    return torch.no_grad()
