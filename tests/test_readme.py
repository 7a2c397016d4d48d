"""Statements in the README that the code decides, checked against the code."""

from __future__ import annotations

import re
from pathlib import Path

from embedsearch.trainers.fasttext import DEFAULT_BACKEND, FastTextParams

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_names_the_fasttext_default_backend_the_code_uses():
    said = re.findall(r"Backends: (?:the )?`?(\w+)`?(?: library)? \(default", README)
    assert said == [DEFAULT_BACKEND]
    assert f"{DEFAULT_BACKEND} is the default" in README  # the Benchmarks table says it too
    assert FastTextParams().resolved_backend() == DEFAULT_BACKEND


REPO = Path(__file__).resolve().parent.parent


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_gives_the_cpu_torch_index_and_keeps_the_plain_command_ci_uses():
    setup = _blocks("bash")[0]
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in setup
    assert "pip install torch==2.13.0`" in README  # the command that works where the index serves CPU builds
    assert "pip install -q torch==2.13.0\n" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_states_the_models_length_limit():
    import json

    from embedsearch.embedders.sentence import bundled_minilm_path

    limit = json.loads((bundled_minilm_path() / "sentence_bert_config.json").read_text())["max_seq_length"]
    assert f"first {limit} word pieces" in README


def test_readme_says_where_design_md_lives():
    assert not (REPO / "DESIGN.md").exists()
    assert "`../shared/DESIGN.md` from the repository root" in README
    assert "outside this repository" in README
    if (REPO.parent / "shared").is_dir():  # a checkout with shared/ beside it, as here and in CI
        assert (REPO.parent / "shared" / "DESIGN.md").is_file()


def test_readme_document_commands_run_as_written(cli, tmp_path):
    """The Quick tour's `index get / docs / count` lines, on a 'news' collection they can succeed on."""
    import json
    import shlex

    src = tmp_path / "news.jsonl"
    rows = [{"id": "doc-17", "text": "bushfires near the town", "source": "lee", "year": 2001},
            {"id": "doc-18", "text": "rates rise", "source": "bbc", "year": 1999}]  # fmt: skip
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli("index", "create", "news", "--model", "hashing").exit_code == 0
    assert cli("index", "add", "news", str(src)).exit_code == 0
    tour = _blocks("bash")[1]
    lines = [line.split("  #")[0].strip() for line in tour.splitlines()]
    lines = [line for line in lines if re.match(r"embedsearch index (get|docs|count) ", line)]
    assert len(lines) == 3
    outputs = []
    for line in lines:
        r = cli(*shlex.split(line)[1:])
        assert r.exit_code == 0, f"{line}\n{r.output}"
        outputs.append(r.stdout)
    assert json.loads(outputs[0])["documents"][0]["id"] == "doc-17"
    assert [d["id"] for d in json.loads(outputs[1])["documents"]] == ["doc-17"]
    assert outputs[2].strip() == "1"


def test_readme_library_example_runs_as_written(tmp_path, monkeypatch):
    block = next(b for b in _blocks("python") if "from embedsearch.store.collection import Store" in b)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102  (the README's own code)
    assert [h.id for h in scope["hits"][0]] == ["a1"]  # one list of hits per query
    assert [d["id"] for d in scope["docs"]] == ["a1"] and scope["not_found"] == []
    assert [d["id"] for d in scope["page"].documents] == ["a1"] and scope["n"] == 1
