"""Validate before loading (issue 13, finding 8): commands look at their arguments, files and
collections before they load a model (seconds for MiniLM), and ``demo`` and ``index create``
say where the data lives so that the commands they suggest work from any directory."""

from __future__ import annotations

import json
import shlex

import pytest
from click.testing import CliRunner

from embedsearch.cli import AppContext, main
from embedsearch.config import Settings


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fails the test if any model is loaded (every embedder and every sentence-transformers
    model goes through one of these), or if a service starts."""
    import uvicorn

    import embedsearch.embedders as embedders
    import embedsearch.embedders.sentence as sentence

    def boom(*args, **kwargs):
        raise AssertionError("a model was loaded (or a server started) before the arguments were checked")

    monkeypatch.setattr(embedders, "_load", boom)
    monkeypatch.setattr(sentence, "load_sentence_transformer", boom)
    monkeypatch.setattr(uvicorn, "run", boom)


@pytest.fixture
def news(cli):
    assert cli("index", "create", "news", "--model", "hashing").exit_code == 0


def _broken_model(tmp_path):
    from tests.test_broken_models import _truncated, minilm_copy

    model = minilm_copy(tmp_path / "broken")
    _truncated(model)
    return model


def test_refusals_come_before_any_model_loads(cli, news, tmp_path, no_model_loads):
    (tmp_path / "empty-key.txt").write_text("\n")
    (tmp_path / "few.txt").write_text("one short document\nanother\n")
    same = {"anchor": "a", "positive": "b", "negative": "c"}
    (tmp_path / "same.jsonl").write_text(json.dumps(same) + "\n" + json.dumps(same) + "\n")
    broken = str(_broken_model(tmp_path))
    missing = str(tmp_path / "missing.jsonl")
    cases = [
        (["search", "nope", "bushfires"], 1, "no collection named 'nope'"),
        (["search", "news", "--queries", missing], 1, "missing.jsonl: no such file"),
        (["search", "news", "   "], 2, "the query is empty"),
        (["index", "add", "news", missing], 1, "missing.jsonl"),
        (["index", "create", "news", "--model", "minilm"], 1, "already exists"),
        (["index", "create", "x", "--model", "minilm", "--index", "IVF,Foo"], 2, "unknown index spec"),
        (["index", "create", "x", "--model", broken], 2, "truncated or damaged"),
        (["evaluate", str(tmp_path / "no-such-model")], 2, "unknown model"),
        (["evaluate", broken], 2, "truncated or damaged"),
        (["compare", "minilm", str(tmp_path / "no-such-model"), "--corpus", "lee"], 2, "unknown model"),
        (["compare", "minilm", broken, "--corpus", "lee"], 2, "truncated or damaged"),
        (["compare", "minilm", "--corpus", missing], 2, "neither a file or directory nor a bundled corpus"),
        (["compare", "minilm", "--corpus", "lee", "--queries", missing], 2, "does not exist"),
        (["compare", "--index-specs", "Flat,Nope", "--model", "minilm", "--corpus", "lee"], 2, "unknown index spec"),
        (["serve", "--api-key-file", str(tmp_path / "empty-key.txt")], 2, "is empty"),
        (["serve", "--port", "99999"], 2, "99999 is not in the range"),
        (["train", "distill", str(tmp_path / "few.txt"), "-o", str(tmp_path / "s"), "--teacher", "minilm"], 1, "at least 20"),
        (["train", "triplet", "--triplets", str(tmp_path / "same.jsonl"), "--held-out", "0.5", "-o", str(tmp_path / "t")],
         2, "no training triplets left"),  # fmt: skip
    ]
    wrong = []
    for args, code, message in cases:
        r = cli(*args)
        if r.exit_code != code or message not in r.output or "Traceback" in r.output:
            wrong.append((args, r.exit_code, r.output))
    assert not wrong, wrong


def test_create_and_demo_say_where_the_data_lives_and_their_hints_work_from_anywhere(tmp_path, monkeypatch):
    runner = CliRunner()
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    data = tmp_path / "here" / "indexes"
    r = runner.invoke(main, ["demo", "--model", "hashing", "-k", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert f"data: {data} (metadata: sqlite:///{data}/embedsearch.db)" in r.output
    hint = next(line for line in r.output.splitlines() if line.startswith("next: "))
    assert f"--data-dir {data} search lee-demo" in hint

    monkeypatch.chdir(tmp_path / "elsewhere")
    args = shlex.split(hint[len("next: ") :].split("   (")[0])
    assert args[0] == "embedsearch"
    r = runner.invoke(main, [*args[1:], "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)  # the demo's collection, found from another directory
    assert not (tmp_path / "elsewhere" / "indexes").exists()

    r = runner.invoke(main, ["--data-dir", "rel", "index", "create", "notes", "--model", "hashing"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert f"data: {tmp_path / 'elsewhere' / 'rel'} (metadata: sqlite:///" in r.output
    hint = next(line for line in r.output.splitlines() if line.startswith("next: "))
    assert hint == f"next: embedsearch --data-dir {tmp_path / 'elsewhere' / 'rel'} index add notes FILES..."
    out = json.loads(runner.invoke(main, ["--data-dir", "rel", "index", "create", "more", "--model", "hashing", "--json"]).output)
    assert out["data_dir"] == str(tmp_path / "elsewhere" / "rel") and out["db"].startswith("sqlite:///")


def test_the_database_url_is_shown_without_its_password(tmp_path):
    url = "postgresql+psycopg2://search:s3cret-pw@db.example:5432/embedsearch"
    app = AppContext(Settings(data_dir=tmp_path, db_url=url))
    assert "s3cret" not in app.where() and "search:***@db.example:5432/embedsearch" in app.where()
    command = app.command("search", "news", "rates")
    assert "s3cret" not in command
    assert shlex.split(command)[1:5] == ["--data-dir", str(tmp_path), "--db", "postgresql+psycopg2://search:***@db.example:5432/embedsearch"]


def test_the_default_database_needs_no_db_option(tmp_path):
    app = AppContext(Settings.from_env(tmp_path))
    assert "--db" not in app.command("index", "list")
