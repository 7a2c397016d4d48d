"""``embedsearch train distill``: a static student from the bundled MiniLM, trained through the
CLI once per session, loaded from disk and checked against sentence-transformers' own loading
of the same directory (the reference implementation)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedsearch.datasets import lee_documents
from embedsearch.embedders import load_embedder

pytestmark = pytest.mark.slow


def test_student_directory_is_safe_and_described(student, no_pickle):
    manifest = json.loads((student / "manifest.json").read_text())
    assert manifest["kind"] == "static" and manifest["algorithm"] == "distill"
    assert manifest["teacher"]["spec"] == "minilm" and len(manifest["teacher"]["fingerprint"]) == 64
    assert manifest["corpus"]["documents"] == 300 and len(manifest["corpus"]["fingerprint"]) == 64
    assert manifest["dim"] == 64 and manifest["vocab_size"] == 30522
    assert [c["epoch"] for c in manifest["loss_curve"]] == [0, 1, 2, 3]
    # fine-tuning moved the student towards the teacher on documents it did not train on
    assert manifest["held_out_cosine_to_teacher"] > manifest["loss_curve"][0]["held_out_cosine"]
    files = {p.name for p in student.rglob("*") if p.is_file()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pkl", ".pt", ".pickle")) for f in files)


def test_student_loads_from_disk_and_matches_sentence_transformers(student, no_pickle):
    from sentence_transformers import SentenceTransformer

    embedder = load_embedder(str(student), cache=False)
    texts = [d.text for d in lee_documents()][:50] + ["", "  ", "café NAÏVE 東京", "a\tb\nc", "don't stop-me!!"]
    got = embedder.embed(texts)
    assert got.shape == (len(texts), 64) and got.dtype == np.float32
    reference = SentenceTransformer(str(student), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(got, reference, atol=1e-5)
    again = embedder.embed(texts)  # second pass: token ids from the chunk cache
    np.testing.assert_array_equal(again, got)


def test_student_ranks_like_a_model_of_meaning(student):
    embedder = load_embedder(str(student), cache=False)
    docs = list(lee_documents())
    vecs = embedder.embed([d.text for d in docs])
    q = embedder.embed(["bushfires burning homes near Sydney", "cricket test match wickets"])
    top = [docs[i].text.lower() for i in np.argsort(-(vecs @ q[0]))[:3]]
    assert sum("fire" in t for t in top) >= 2
    top = [docs[i].text.lower() for i in np.argsort(-(vecs @ q[1]))[:3]]
    assert sum("cricket" in t or "wicket" in t for t in top) >= 2


def test_student_is_a_model_for_collections(cli, student, tmp_path):
    r = cli("index", "create", "fast", "--model", str(student), "--json")
    assert r.exit_code == 0, r.output
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in list(lee_documents())[:60]))
    assert cli("index", "add", "fast", str(docs)).exit_code == 0
    r = cli("search", "fast", "bushfires", "-k", "2", "--json")
    assert r.exit_code == 0, r.output
    assert cli("index", "verify", "fast").exit_code == 0
    r = cli("index", "create", "x", "--model", str(student), "--backend", "int8")
    assert r.exit_code == 2 and "static model" in r.output


def test_student_is_a_base_for_the_triplet_trainer(cli, student, tmp_path):
    """The issue's promise: a distilled student can be fine-tuned with the triplet loss. It used
    to fail with a traceback (the trainer set max_seq_length, which a StaticEmbedding cannot
    take), and then trained at a transformer's learning rate, which leaves a token table as it was;
    the result's config held max_seq_length = inf, which a collection could not store."""
    from embedsearch.datasets import mini_newsgroup

    posts = tmp_path / "posts.jsonl"
    corpus = mini_newsgroup()
    docs = corpus.documents if hasattr(corpus, "documents") else corpus[0]
    posts.write_text("".join(json.dumps({"id": d.id, "text": d.text[:2000], "label": d.metadata["label"]}) + "\n" for d in docs))
    out = tmp_path / "tuned"
    r = cli("train", "triplet", "--labelled", str(posts), "--label-field", "label", "--base", str(student),
            "-o", str(out), "--epochs", "3", "--json")  # fmt: skip
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    report = json.loads(r.output)
    before, after = report["metrics_before"], report["metrics_after"]
    assert after["triplet_accuracy"] > before["triplet_accuracy"]  # it trained: a static base gets lr 1e-2
    assert cli("index", "create", "tuned", "--model", str(out)).exit_code == 0
    r = cli("index", "add", "tuned", str(posts))
    assert r.exit_code == 0, r.output
    assert cli("index", "verify", "tuned").exit_code == 0


@pytest.mark.parametrize(
    ("lines", "args", "code", "message"),
    [
        ([], [], 1, "file is empty"),
        (["one short line", "another"] * 5, [], 1, "at least 20"),
        (["word " * 3] * 40, [], 1, "tokens; distillation needs at least"),
        (["some text here"] * 40, ["--dim", "1000"], 2, "larger than the teacher's 384"),
        (["some text here"] * 40, ["--held-out", "1.5"], 2, "--held-out"),
        (["some text here"] * 40, ["--teacher", "hashing"], 2, "teacher 'hashing'"),
    ],
)
def test_distill_refuses_bad_input(cli, tmp_path, lines, args, code, message):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(line + "\n" for line in lines))
    r = cli("train", "distill", str(corpus), "-o", str(tmp_path / "out"), "--device", "cpu", *args)
    assert r.exit_code == code, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_distill_library_refuses_blank_documents(tmp_path):
    from embedsearch.corpus import Document
    from embedsearch.errors import CorpusError
    from embedsearch.trainers.distill import DistillParams, train_distill

    with pytest.raises(CorpusError, match="0 non-empty documents"):
        train_distill(DistillParams(device="cpu"), [Document(str(i), "   ") for i in range(50)], tmp_path / "out")
    assert not (tmp_path / "out").exists()
