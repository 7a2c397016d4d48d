"""--models-dir confines every file a served model loads (issue 24, part 3).

A model directory under the service's models directory used to be served when its weight files
linked out of it (only the directory and manifest.json were checked). Now each file a model's
loader opens, and each module directory modules.json lists, is resolved and must lie inside the
models directory: one that leads out is refused (422 model_outside_models_dir) before anything
loads, and a link that stays inside is served. For every kind the service serves: word vectors,
fastText, sentence-transformers and static students; through /similar, /models/{name},
PUT /collections/{name} and the searches of a collection whose model lies in the models directory.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embedsearch.config import Settings
from embedsearch.embedders import load_embedder
from embedsearch.embedders.sentence import bundled_minilm_path
from embedsearch.errors import ModelOutsideModelsDir
from embedsearch.model_files import confine_model_dir
from embedsearch.models import import_vectors
from embedsearch.service.app import create_app
from embedsearch.store import Store
from tests.test_broken_models import SMALL_FILES

pytestmark = pytest.mark.slow  # trains a small fastText model, loads MiniLM once

WORDS = ["king", "queen", "man", "woman", "royal", "palace"]


def word_model(dest: Path) -> Path:
    rng = np.random.default_rng(0)
    src = dest.parent / f"{dest.name}.txt"
    src.write_text("".join(f"{w} " + " ".join(f"{x:.4f}" for x in rng.standard_normal(6)) + "\n" for w in WORDS))
    import_vectors(src, "glove", dest)
    return dest


def fasttext_model(dest: Path) -> Path:
    from embedsearch.corpus import ReadOptions
    from embedsearch.trainers import get_trainer
    from embedsearch.trainers.base import train

    corpus = dest.parent / "ft-corpus.txt"
    corpus.write_text("".join(f"the {a} and the {b} met in the palace\n" for a in WORDS for b in WORDS) * 4)
    trainer = get_trainer("fasttext")
    params = trainer.Params(dim=8, epochs=1, bucket=2000, min_count=1)
    return train(trainer, [str(corpus)], dest, params, read_options=ReadOptions(per_line=True)).path


def sentence_model(dest: Path, weights: Path) -> Path:
    """The bundled MiniLM's small files copied; model.safetensors a link to ``weights``."""
    src = bundled_minilm_path()
    dest.mkdir(parents=True)
    for name in SMALL_FILES:
        shutil.copy(src / name, dest / name)
    shutil.copytree(src / "1_Pooling", dest / "1_Pooling")
    (dest / "model.safetensors").symlink_to(weights)
    (dest / "manifest.json").write_text(json.dumps({"format": 1, "kind": "sentence-transformers", "algorithm": "imported"}))
    return dest


def static_model(dest: Path) -> Path:
    """A static student made by hand: a StaticEmbedding module of 8-d token vectors over MiniLM's tokenizer."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer

    module = dest / "0_StaticEmbedding"
    module.mkdir(parents=True)
    shutil.copy(bundled_minilm_path() / "tokenizer.json", module / "tokenizer.json")
    vocab = Tokenizer.from_file(str(module / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    vectors = np.random.default_rng(1).standard_normal((vocab, 8)).astype(np.float32)
    save_file({"embedding.weight": vectors}, str(module / "model.safetensors"))
    modules = [{"idx": 0, "name": "0", "path": "0_StaticEmbedding", "type": "sentence_transformers.models.StaticEmbedding"}]
    (dest / "modules.json").write_text(json.dumps(modules))
    (dest / "manifest.json").write_text(json.dumps({"format": 1, "kind": "static", "algorithm": "distill", "dim": 8}))
    return dest


def relink(file: Path, target: Path) -> None:
    """Move ``file`` to ``target`` and leave a symbolic link to it in its place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(file, target)
    file.symlink_to(target)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """MiniLM's weights as a file outside the models directories (a hard link where the file system allows)."""
    return weights_inside(tmp_path_factory.mktemp("weights"), bundled_minilm_path() / "model.safetensors")


def weights_inside(models: Path, weights: Path) -> Path:
    out = models / "minilm.safetensors"
    try:
        os.link(weights, out)
    except OSError:
        shutil.copy(weights, out)
    return out


@pytest.fixture
def dirs(tmp_path) -> tuple[Path, Path]:
    models, outside = tmp_path / "models", tmp_path / "outside"
    models.mkdir()
    outside.mkdir()
    return models, outside


def client_for(tmp_path: Path, models: Path) -> TestClient:
    return TestClient(create_app(Settings.from_env(tmp_path / "data"), models_dir=models))


def refused(r, name: str) -> None:
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "model_outside_models_dir", error
    assert name in error["message"] and "outside the models directory" in error["message"], error


@pytest.mark.parametrize("file", ["vectors.npy", "vocab.txt", "counts.npy", "sif_pc.npy"])
def test_word_vectors_with_a_file_linked_out_are_refused_and_inside_links_served(tmp_path, dirs, file):
    models, outside = dirs
    for name in ("wv", "ok"):
        word_model(models / name)
        if file == "counts.npy":  # imported vectors have no counts; a trained model carries them
            np.save(models / name / "counts.npy", np.arange(1, len(WORDS) + 1, dtype=np.int64))
    relink(models / "wv" / file, outside / file)
    relink(models / "ok" / file, models / "shared" / file)  # a link that stays inside the models directory
    with client_for(tmp_path, models) as client:
        refused(client.post("/similar", json={"model": "wv", "word": "king", "k": 2}), file)
        refused(client.get("/models/wv"), file)
        refused(client.put("/collections/c", json={"model": "wv"}), file)
        assert client.get("/collections/c").status_code == 404  # nothing was created
        assert [m["name"] for m in client.get("/models").json()["available"]] == ["ok"]  # the refused one is not offered
        r = client.post("/similar", json={"model": "ok", "word": "king", "k": 2})
        assert r.status_code == 200 and len(r.json()["results"]) == 2, r.text
        assert client.put("/collections/c", json={"model": "ok", "pooling": "sif"}).status_code == 201


def test_fasttext_model_bin_linked_out_is_refused(tmp_path, dirs):
    models, outside = dirs
    fasttext_model(models / "ft")
    shutil.copytree(models / "ft", models / "ft-ok")
    relink(models / "ft" / "model.bin", outside / "model.bin")
    relink(models / "ft-ok" / "model.bin", models / "blobs" / "model.bin")
    with client_for(tmp_path, models) as client:
        refused(client.post("/similar", json={"model": "ft", "word": "king", "k": 2}), "model.bin")
        refused(client.put("/collections/c", json={"model": "ft"}), "model.bin")
        assert client.post("/similar", json={"model": "ft-ok", "word": "kingly", "k": 2}).status_code == 200
        assert client.put("/collections/c", json={"model": "ft-ok"}).status_code == 201


def test_sentence_transformers_weights_or_module_linked_out_are_refused(tmp_path, dirs, weights):
    models, outside = dirs
    sentence_model(models / "st-weights", weights)  # model.safetensors links out of the models directory
    inside = weights_inside(models, weights)
    sentence_model(models / "st-module", inside)
    relink(models / "st-module" / "1_Pooling", outside / "1_Pooling")  # a module directory links out
    sentence_model(models / "st-dotdot", inside)
    modules = json.loads((models / "st-dotdot" / "modules.json").read_text())
    modules[1]["path"] = "../st-module/1_Pooling"  # '..' in modules.json, even towards a sibling
    (models / "st-dotdot" / "modules.json").write_text(json.dumps(modules))
    sentence_model(models / "st-tokenizer", inside)
    (models / "st-tokenizer" / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 256, "tokenizer_name_or_path": str(bundled_minilm_path())})
    )
    with client_for(tmp_path, models) as client:
        for name, what in [("st-weights", "model.safetensors"), ("st-module", "1_Pooling"),
                           ("st-dotdot", "'../st-module/1_Pooling'"), ("st-tokenizer", "tokenizer_name_or_path")]:  # fmt: skip
            r = client.put("/collections/c", json={"model": name})
            assert r.status_code == 422 and r.json()["error"]["code"] == "model_outside_models_dir", (name, r.text)
            assert what in r.json()["error"]["message"], (name, r.text)
        assert client.get("/collections/c").status_code == 404


def test_sentence_transformers_links_inside_the_models_dir_are_served(tmp_path, dirs, weights):
    models, _ = dirs
    st = sentence_model(models / "st", weights_inside(models, weights))  # weights: a link inside
    relink(st / "1_Pooling", models / "shared" / "1_Pooling")  # a module directory: a link inside
    assert {p.name for p in confine_model_dir(st, models)} >= {"minilm.safetensors", "tokenizer.json", "config.json"}
    with client_for(tmp_path, models) as client:
        r = client.put("/collections/c", json={"model": "st", "index": "Flat"})
        assert r.status_code == 201, r.text
        docs = {"documents": [{"id": "a", "text": "bushfires near Sydney"}, {"id": "b", "text": "cricket scores"}]}
        assert client.post("/collections/c/documents", json=docs).status_code == 200
        r = client.post("/collections/c/search", json={"query": "fire", "k": 1, "mode": "dense"})
        assert r.status_code == 200 and r.json()["hits"][0]["id"] == "a", r.text


def test_static_student_weights_or_module_linked_out_are_refused(tmp_path, dirs):
    models, outside = dirs
    for name in ("weights-out", "module-out", "weights-in", "module-in"):
        static_model(models / name)
    relink(models / "weights-out" / "0_StaticEmbedding" / "model.safetensors", outside / "model.safetensors")
    relink(models / "module-out" / "0_StaticEmbedding", outside / "0_StaticEmbedding")
    relink(models / "weights-in" / "0_StaticEmbedding" / "model.safetensors", models / "blobs" / "model.safetensors")
    relink(models / "module-in" / "0_StaticEmbedding", models / "blobs" / "0_StaticEmbedding")
    with client_for(tmp_path, models) as client:
        refused(client.put("/collections/a", json={"model": "weights-out"}), "model.safetensors")
        refused(client.put("/collections/a", json={"model": "module-out"}), "0_StaticEmbedding")
        for i, name in enumerate(("weights-in", "module-in")):
            assert client.put(f"/collections/s{i}", json={"model": name}).status_code == 201, name
            docs = {"documents": [{"id": "x", "text": "royal palace"}]}
            assert client.post(f"/collections/s{i}/documents", json=docs).status_code == 200
            r = client.post(f"/collections/s{i}/search", json={"query": "palace", "mode": "dense"})
            assert r.json()["hits"][0]["id"] == "x", r.text


def test_a_collections_model_that_links_out_later_is_not_loaded_by_the_service(tmp_path, dirs):
    """The collection was made (by the CLI, say) with a model in the models directory, whose
    vocabulary was then replaced by a link out: the service's preload and searches refuse it."""
    models, outside = dirs
    path = word_model(models / "wv")
    Store(Settings.from_env(tmp_path / "data")).create("news", load_embedder(str(path), cache=False), "Flat", lexical=True)
    relink(path / "vocab.txt", outside / "vocab.txt")
    app = create_app(Settings.from_env(tmp_path / "data"), models_dir=models, preload=True)
    with TestClient(app) as client:
        app.state.service.preloader.done.wait(30)
        health = client.get("/health").json()
        assert health["status"] == "degraded" and "outside the models directory" in health["models"][0]["error"]
        refused(client.post("/collections/news/search", json={"query": "king", "mode": "dense"}), "vocab.txt")
        assert client.post("/collections/news/search", json={"query": "king", "mode": "lexical"}).status_code == 200


def test_links_to_nothing_and_loops_are_broken_models(dirs):
    models, _ = dirs
    path = word_model(models / "wv")
    (path / "vocab.txt").unlink()
    (path / "vocab.txt").symlink_to(models / "missing.txt")
    with pytest.raises(Exception, match="a link to nothing") as info:
        confine_model_dir(path, models)
    assert info.value.code == "broken_model"
    st = static_model(models / "st")
    (st / "0_StaticEmbedding" / "loop").symlink_to(st)  # a directory link back up the tree: walked once
    files = {p.name for p in confine_model_dir(st, models)}
    assert files == {"manifest.json", "modules.json", "model.safetensors", "tokenizer.json"}
    with pytest.raises(ModelOutsideModelsDir):
        confine_model_dir(st, st / "0_StaticEmbedding")  # the same tree, against a narrower root
