"""Model directories: import/export round trips through every format, bad vector files,
word queries (similar, analogy) and documents embedded from word vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedsearch.corpus import ReadOptions
from embedsearch.datasets import gensim_data
from embedsearch.errors import InvalidArgument, ModelFormatError, OutOfVocabulary
from embedsearch.formats import read_vectors, write_vectors
from embedsearch.models import export_model, import_vectors, load_word_vectors, read_manifest
from embedsearch.trainers import get_trainer, train
from embedsearch.wordvectors import WordVectors

LEE = str(gensim_data("lee_background.cor"))
TEXT_AND_W2V = ["glove", "word2vec", "word2vec-bin", "fasttext-vec"]


pytestmark = pytest.mark.slow  # trains word models


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A GloVe and a FastText model trained once on the Lee corpus for this module."""
    root = tmp_path_factory.mktemp("models")
    opts = ReadOptions(per_line=True, encoding="latin-1")
    out = {}
    for name, params in (
        ("glove", {"dim": 24, "epochs": 5, "min_count": 2}),
        ("fasttext", {"dim": 24, "epochs": 3, "bucket": 20_000}),
    ):
        trainer = get_trainer(name)
        out[name] = train(trainer, [LEE], root / name, trainer.Params(**params), read_options=opts).path
    return out


def toy_vectors() -> WordVectors:
    rng = np.random.default_rng(3)
    words = ["king", "queen", "man", "woman", "apple", "pear", "café", "naïve"]
    return WordVectors(words, rng.standard_normal((len(words), 6)).astype(np.float32))


@pytest.mark.parametrize("fmt", TEXT_AND_W2V)
def test_vectors_round_trip_exactly(fmt, tmp_path):
    wv = toy_vectors()
    path = tmp_path / f"v.{fmt}"
    write_vectors(path, wv.words, wv.vectors, fmt)
    words, vectors = read_vectors(path, fmt)
    assert words == wv.words
    np.testing.assert_array_equal(vectors, wv.vectors)  # bit-exact, text formats included


@pytest.mark.parametrize("fmt", TEXT_AND_W2V)
def test_model_export_import_round_trip(fmt, trained, tmp_path, cli):
    src = trained["glove"]
    out_file = tmp_path / "exported"
    r = cli("models", "export", str(src), "--format", fmt, "-o", str(out_file))
    assert r.exit_code == 0, r.output
    r = cli("models", "import", str(out_file), "--format", fmt, "-o", str(tmp_path / "back"), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["kind"] == "word-vectors"
    a, b = load_word_vectors(src), load_word_vectors(tmp_path / "back")
    assert a.words == b.words
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert read_manifest(tmp_path / "back")["imported_from"]["format"] == fmt


def test_fasttext_bin_round_trip_keeps_subwords(trained, tmp_path):
    export_model(trained["fasttext"], "fasttext-bin", tmp_path / "ft.bin")
    import_vectors(tmp_path / "ft.bin", "fasttext-bin", tmp_path / "ft")
    a, b = load_word_vectors(trained["fasttext"]), load_word_vectors(tmp_path / "ft")
    assert b.has_subwords and a.words == b.words
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.vector("unseenwordish"), b.vector("unseenwordish"))
    # .vec export of a FastText model is plain vectors of its vocabulary
    export_model(trained["fasttext"], "fasttext-vec", tmp_path / "ft.vec")
    words, vectors = read_vectors(tmp_path / "ft.vec", "fasttext-vec")
    assert words == a.words
    np.testing.assert_array_equal(vectors, a.vectors)


def test_plain_vectors_cannot_be_exported_as_fasttext_bin(trained, tmp_path):
    with pytest.raises(ModelFormatError, match="needs a FastText model"):
        export_model(trained["glove"], "fasttext-bin", tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        ("a 1 2 3\nb 1 2\n", "glove", r":2: 'b' has 2 values, expected 3 \(as on the first line\)"),
        ("2 3\na 1 2 3\nb 1 2 3 4\n", "word2vec", r":3: 'b' has 4 values, expected 3 \(from the header\)"),
        ("3 2\na 1 2\nb 1 2\n", "word2vec", "declares 3 words but the file holds 2"),
        ("a 1 2\nb 1 x\n", "glove", ":2: 'b' has a value that is not a number"),
        ("a 1 2 3\n", "word2vec", "expected a 'count dim' header.*use --format glove"),
        ("", "glove", "empty"),
        ("a 1 2\na 3 4\n", "glove", "appears twice"),
    ],
)
def test_bad_vector_files_name_the_problem(content, fmt, message, tmp_path, cli):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(ModelFormatError, match=message):
        read_vectors(path, fmt)
    r = cli("models", "import", str(path), "--format", fmt, "-o", str(tmp_path / "m"))
    assert r.exit_code == 1 and "Error:" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "m").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]  # no temp dir left behind


def test_bad_binary_and_encoding(tmp_path):
    wv = toy_vectors()
    good = tmp_path / "v.bin"
    write_vectors(good, wv.words, wv.vectors, "word2vec-bin")
    cut = tmp_path / "cut.bin"
    cut.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(ModelFormatError, match="cut off"):
        read_vectors(cut, "word2vec-bin")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"caf\xe9 1 2\n")
    with pytest.raises(ModelFormatError, match=r":1: not valid utf-8"):
        read_vectors(latin, "glove")
    with pytest.raises(ModelFormatError, match="looks binary"):
        read_vectors(good, "glove")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01not a fasttext model" * 10)
    with pytest.raises(ModelFormatError, match="not a fastText"):
        import_vectors(garbage, "fasttext-bin", tmp_path / "ft")
    assert not (tmp_path / "ft").exists()


def test_unknown_format_is_a_usage_error(tmp_path, cli):
    path = tmp_path / "v.txt"
    path.write_text("a 1 2\n")
    r = cli("models", "import", str(path), "--format", "npz", "-o", str(tmp_path / "m"))
    assert r.exit_code == 2 and "npz" in r.output
    with pytest.raises(ModelFormatError, match="unknown vectors format 'npz'"):
        read_vectors(path, "npz")


def test_import_refuses_existing_output(tmp_path, cli):
    path = tmp_path / "v.txt"
    path.write_text("a 1 2\nb 3 4\n")
    (tmp_path / "m").mkdir()
    r = cli("models", "import", str(path), "--format", "glove", "-o", str(tmp_path / "m"))
    assert r.exit_code == 2 and "already exists" in r.output
    r = cli("models", "import", str(path), "--format", "glove", "-o", str(tmp_path / "m"), "--overwrite")
    assert r.exit_code == 0, r.output
    assert load_word_vectors(tmp_path / "m").words == ["a", "b"]


# --- word queries ---------------------------------------------------------------------------


def test_analogy_methods_on_constructed_vectors():
    # queen = king - man + woman exactly; the query words are never answers
    base = np.eye(5, dtype=np.float32)
    king, man, woman, other = base[0] + base[1], base[1], base[2], base[3] + base[4]
    queen = king - man + woman
    wv = WordVectors(["king", "man", "woman", "queen", "other"], np.stack([king, man, woman, queen, other]))
    assert wv.analogy("king", "man", "woman")[0].word == "queen"
    assert wv.analogy("king", "man", "woman", method="3cosmul")[0].word == "queen"
    assert {n.word for n in wv.analogy("king", "man", "woman", k=5)} == {"queen", "other"}
    with pytest.raises(InvalidArgument, match="unknown analogy method"):
        wv.analogy("king", "man", "woman", method="bogus")
    with pytest.raises(OutOfVocabulary, match="'prince' is not in the model's vocabulary"):
        wv.analogy("prince", "man", "woman")


def test_similar_and_analogy_cli(trained, cli):
    r = cli("similar", str(trained["glove"]), "government", "-k", "5", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["word"] == "government" and len(data["results"]) == 5
    assert "government" not in [x["word"] for x in data["results"]]
    scores = [x["score"] for x in data["results"]]
    assert scores == sorted(scores, reverse=True)
    r = cli("similar", str(trained["glove"]), "zzqxunknown")
    assert r.exit_code == 1 and "not in the model's vocabulary" in r.output and "no subword" in r.output
    r = cli("similar", str(trained["fasttext"]), "zzqxunknown", "-k", "3", "--json")
    assert r.exit_code == 0 and "character n-grams" in json.loads(r.output)["note"]
    r = cli("analogy", str(trained["glove"]), "australia", "australian", "israeli", "-k", "3")
    assert r.exit_code == 0 and r.output.count("\n") == 5  # header, rule, three rows
    r = cli("similar", "no/such/model", "word")
    assert r.exit_code == 2 and "no such model directory" in r.output


def test_models_list_and_show(trained, cli):
    r = cli("models", "list", str(trained["glove"].parent), "--json")
    data = json.loads(r.output)
    assert {Path(m["path"]).name for m in data["models"]} == {"glove", "fasttext"}
    assert {b["path"] for b in data["builtin"]} >= {"minilm", "hashing"}
    r = cli("models", "show", str(trained["glove"]))
    assert r.exit_code == 0 and "algorithm: glove" in r.output and "loss:" in r.output


# --- documents from word vectors -----------------------------------------------------------


def test_collection_from_word_vectors_with_sif(trained, cli, store):
    model = str(trained["glove"])
    r = cli("index", "create", "docs", "--model", model, "--pooling", "sif", "--index", "Flat")
    assert r.exit_code == 0, r.output
    assert "pooling sif" in r.output
    r = cli("index", "add", "docs", str(gensim_data("lee.cor")), "--per-line", "--encoding", "latin-1")
    assert r.exit_code == 0, r.output
    coll = store.open("docs")
    assert coll.count() == 50
    assert coll.row["embedder_config"]["options"] == {"pooling": "sif", "oov": "skip"}
    embedder = coll.load_embedder()
    assert embedder.options["pooling"] == "sif"
    # SIF's common component is fixed by the model: a text alone embeds as it does in a batch
    texts = ["the government announced new security measures", "bushfires near sydney", "cricket match"]
    np.testing.assert_allclose(embedder.embed(texts[:1])[0], embedder.embed(texts)[0], atol=1e-6)
    r = cli("search", "docs", "government security", "-k", "3", "--json")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)
    assert len(hits) == 3 and hits[0]["score"] >= hits[-1]["score"]
    assert coll.verify().ok


def test_pooling_is_part_of_the_fingerprint(trained, store):
    from embedsearch.embedders import load_embedder, model_fingerprint
    from embedsearch.errors import FingerprintMismatch

    mean = load_embedder(str(trained["glove"]), options={"pooling": "mean"})
    sif = load_embedder(str(trained["glove"]), options={"pooling": "sif"})
    assert mean.fingerprint != sif.fingerprint
    assert model_fingerprint(str(trained["glove"]), sif.options) == sif.fingerprint
    coll = store.create("c", sif, "Flat")
    with pytest.raises(FingerprintMismatch):
        coll.check_embedder(mean)


def test_fasttext_embedder_uses_subwords_for_unknown_words(trained):
    from embedsearch.embedders import load_embedder

    sub = load_embedder(str(trained["fasttext"]))
    skip = load_embedder(str(trained["fasttext"]), options={"oov": "skip"})
    assert sub.options == {"pooling": "mean", "oov": "subword"}
    v_sub, v_skip = sub.embed(["zzqxunknownish"])[0], skip.embed(["zzqxunknownish"])[0]
    assert np.linalg.norm(v_sub) > 0.99 and np.linalg.norm(v_skip) == 0


def test_word_options_are_checked(trained):
    from embedsearch.embedders import load_embedder
    from embedsearch.errors import UnknownModel

    with pytest.raises(InvalidArgument, match="needs a FastText model"):
        load_embedder(str(trained["glove"]), options={"oov": "subword"})
    with pytest.raises(InvalidArgument, match="unknown pooling"):
        load_embedder(str(trained["glove"]), options={"pooling": "max"})
    with pytest.raises(UnknownModel, match="word-vector models only"):
        load_embedder("hashing", options={"pooling": "sif"})
