"""Broken sentence-transformers directories (issue 13, finding 3): each gives one clear line
(CLI exit 2, HTTP 422 broken_model) naming the file and the problem, never a traceback, and
nothing is ever unpickled. The directories are built from the bundled MiniLM's small files; the
weights are a symlink to its model.safetensors, or a damaged copy of a piece of it."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from embedsearch.config import Settings
from embedsearch.embedders.sentence import bundled_minilm_path
from embedsearch.service.app import create_app
from embedsearch.store import Store

SMALL_FILES = ["config.json", "config_sentence_transformers.json", "modules.json", "sentence_bert_config.json",
               "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]  # fmt: skip


def minilm_copy(dest: Path, *, weights: bool = True) -> Path:
    """The bundled MiniLM's configuration and tokenizer copied, its weights linked."""
    src = bundled_minilm_path()
    dest.mkdir(parents=True)
    for name in SMALL_FILES:
        shutil.copy(src / name, dest / name)
    shutil.copytree(src / "1_Pooling", dest / "1_Pooling")
    if weights:
        (dest / "model.safetensors").symlink_to(src / "model.safetensors")
    return dest


def _truncated(d: Path) -> None:
    (d / "model.safetensors").unlink()
    with open(bundled_minilm_path() / "model.safetensors", "rb") as f:
        (d / "model.safetensors").write_bytes(f.read(64 << 10))


def _garbage_weights(d: Path) -> None:
    (d / "model.safetensors").unlink()
    (d / "model.safetensors").write_bytes(b"<html>404 not found</html>\n" * 20)


def _pickle_only(d: Path) -> None:
    (d / "model.safetensors").unlink()
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(4, 4)}, d / "pytorch_model.bin")


def _no_weights(d: Path) -> None:
    (d / "model.safetensors").unlink()


def _garbage_modules(d: Path) -> None:
    (d / "modules.json").write_text("{not json")


def _modules_object(d: Path) -> None:
    (d / "modules.json").write_text('{"0": "Transformer"}')


def _modules_escape(d: Path) -> None:
    (d / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "../../..", "type": "Transformer"}]))


def _modules_foreign_class(d: Path) -> None:
    (d / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "os.system"}]))


def _no_tokenizer(d: Path) -> None:
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (d / name).unlink()


def _empty_vocab(d: Path) -> None:
    (d / "tokenizer.json").unlink()
    (d / "vocab.txt").write_text("")


def _garbage_config(d: Path) -> None:
    (d / "config.json").write_text('{"model_type": "bert", ')


def _pooling_list(d: Path) -> None:
    (d / "1_Pooling" / "config.json").write_text("[]")


BREAKAGES = [
    (_truncated, "model.safetensors: truncated or damaged"),
    (_garbage_weights, "model.safetensors: not a safetensors file"),
    (_pickle_only, "only in pickle format (pytorch_model.bin); embedsearch never unpickles"),
    (_no_weights, "no model.safetensors"),
    (_garbage_modules, "modules.json: not valid JSON"),
    (_modules_object, "modules.json: expected a JSON list"),
    (_modules_escape, "leads out of the model directory"),
    (_modules_foreign_class, "cannot load this sentence-transformers model"),  # the library's own refusal, one line
    (_no_tokenizer, "no tokenizer files"),
    (_empty_vocab, "its tokenizer knows"),  # loads, but would map every word to [UNK]
    (_garbage_config, "config.json: not valid JSON"),
    (_pooling_list, "1_Pooling/config.json: expected a JSON object"),
]


@pytest.fixture
def never_unpickle(monkeypatch):
    """Any pickle load (torch.load is how the libraries read pytorch_model.bin) fails the test.
    (conftest's no_pickle also replaces pickle.Unpickler, which torch subclasses when a model loads.)"""

    def boom(*args, **kwargs):
        raise AssertionError("a model file was unpickled")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(module, name, boom)


@pytest.mark.parametrize(("breakage", "message"), BREAKAGES, ids=[b.__name__.strip("_") for b, _ in BREAKAGES])
def test_a_broken_model_directory_is_one_clear_line(cli, tmp_path, never_unpickle, breakage, message):
    model = minilm_copy(tmp_path / "model")
    breakage(model)
    r = cli("index", "create", "docs", "--model", str(model), "--device", "cpu")
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], r.output
    assert "Traceback" not in r.output
    assert json.loads(cli("index", "list", "--json").output) == []


def test_the_copied_model_loads_when_intact(cli, tmp_path, never_unpickle):
    model = minilm_copy(tmp_path / "model")
    r = cli("index", "create", "docs", "--model", str(model), "--device", "cpu")
    assert r.exit_code == 0, r.output


def test_the_service_answers_422_for_a_broken_model(tmp_path, data_dir, hashing, never_unpickle):
    models = tmp_path / "models"
    model = minilm_copy(models / "st")
    (model / "manifest.json").write_text(json.dumps({"kind": "sentence-transformers"}))
    _truncated(model)
    Store(Settings.from_env(data_dir)).create("news", hashing, "Flat")
    with TestClient(create_app(Settings.from_env(data_dir), models_dir=models, device="cpu")) as client:
        r = client.put("/collections/docs", json={"model": "st"})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "broken_model" and "truncated or damaged" in error["message"]
        assert [c["name"] for c in client.get("/collections").json()["collections"]] == ["news"]
