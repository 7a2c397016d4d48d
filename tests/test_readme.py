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
    stripped = (x.split("  #")[0].strip() for x in tour.splitlines())
    deletes = [line for line in stripped if line.startswith("embedsearch index delete ")]
    assert len(deletes) == 2  # by id, and by filter
    for line in deletes:
        r = cli(*shlex.split(line)[1:])
        assert r.exit_code == 0, f"{line}\n{r.output}"


def test_readme_library_example_runs_as_written(tmp_path, monkeypatch):
    block = next(b for b in _blocks("python") if "from embedsearch.store import Store" in b)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102  (the README's own code)
    assert [h.id for h in scope["hits"][0]] == ["a1"]  # one list of hits per query
    assert [d["id"] for d in scope["docs"]] == ["a1"] and scope["not_found"] == []
    assert [d["id"] for d in scope["page"].documents] == ["a1"] and scope["n"] == 1
    assert scope["found"][0][0].extras["passage"] and len(scope["manuals"].verify().to_dict()["problems"]) == 0


def test_readme_lists_every_limit_with_its_value():
    """The limits table says what the code enforces (issue 13: every limit, with its value)."""
    from embedsearch import search
    from embedsearch.config import _NAME_RE
    from embedsearch.service import requests as app  # the limits live with the request bodies
    from embedsearch.service.schemas import MODEL_NAME
    from embedsearch.store import documents_api, filters, payload
    from embedsearch.trainers import distill

    section = README[README.index("### Limits\n") : README.index("### Errors\n")]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] != "Limit":
            rows[cells[0]] = cells[1]

    def n(x: int) -> str:
        return f"{x:,}"

    expected = {
        "hits per query, `k`": f"HTTP 1–{n(app.MAX_K)}; CLI `search -k` 1–{n(search.MAX_K)}",
        "query text (HTTP)": f"1–{n(app.MAX_QUERY_CHARS)} characters",
        "queries per `search/batch` request": f"1–{app.MAX_BATCH}",
        "hits per request, queries × k": n(app.MAX_HITS),
        "hit text and metadata per response": f"{app.MAX_RESPONSE_TEXT >> 20} MiB (413 `response_too_large`)",
        "request body": f"{app.MAX_BODY_BYTES >> 20} MiB (413 `body_too_large`)",
        "documents per `POST /collections/{name}/documents`": f"1–{n(app.MAX_DOCUMENTS)}",
        "document id (HTTP)": f"1–{n(app.MAX_ID_CHARS)} characters",
        "document text (HTTP)": f"1–{n(app.MAX_TEXT_CHARS)} characters",
        "ids per `documents/get` or `index get`": f"1–{n(documents_api.MAX_IDS)}",
        "documents per page, `limit` of `documents/list` or `index docs`":
            f"1–{n(documents_api.MAX_LIMIT)} (default {documents_api.DEFAULT_LIMIT})",  # fmt: skip
        "cursor": f"{documents_api.MAX_CURSOR_CHARS} characters",
        "`nprobe`, `ef_search` (HTTP)": f"1–{n(app.MAX_PROBE)}",
        "`/similar`: word; k": f"1–{app.MAX_WORD_CHARS} characters; 1–{n(app.MAX_K)}",
        "filter depth (CLI and HTTP)": f"{filters.MAX_DEPTH} levels",
        "filter conditions (field operators and logical branches)": str(filters.MAX_CONDITIONS),
        "ways a filter's paths may pass through arrays, summed (unindexed fields)":
            f"{filters.MAX_ARRAY_WALKS} (a one-segment condition costs 1, a 7-segment path 448, or 640 matching null: refused)",
        "values per `$in` / `$nin` / `$all`": n(filters.MAX_IN),
        "segments per dotted path (`a.b.c`)": str(filters.MAX_SEGMENTS),
        "payload indexes per collection (`--index-field`)": f"{payload.MAX_FIELDS} fields of at most 256 characters, "
        "no numeric segments",
        "distillation corpus (`train distill`)":
            f"at least {distill.MIN_DOCUMENTS} documents and {n(distill.MIN_TOKENS)} tokens (exit 1)",  # fmt: skip
    }
    from embedsearch.store import lexical

    expected["query words a lexical search uses"] = f"the first {lexical.MAX_TERMS} distinct (the rest are ignored, not refused)"
    for name, value in expected.items():
        assert rows.get(name) == value, (name, rows.get(name), value)
    assert filters.INT64 == 2**63 and rows["numbers in a filter"].startswith("-2^63 to 2^63-1 (64-bit integers")
    assert "{0,63}" in _NAME_RE.pattern and rows["collection name"].startswith("1–64 characters")
    assert "{0,127}" in MODEL_NAME and rows["model name under `--models-dir`"].startswith("1–128 characters")
    assert rows["idle HTTP connection"].startswith("`--keep-alive` seconds: 5 (1–3,600)")
    from embedsearch.cli.serve import serve
    from embedsearch.service import server

    defaults = {o.name: o.default for o in serve.params}
    assert rows["request line and headers (`serve`)"].startswith(f"`--header-timeout` seconds: {defaults['header_timeout']:g},")
    assert rows["request body (`serve`)"].startswith(f"`--body-timeout` seconds: {defaults['body_timeout']:g} after")
    assert rows["open HTTP connections (`serve`)"].startswith(
        f"`--max-connections`: the open-file limit less {server.RESERVED_FDS} and one accept burst, "
        f"at most {n(server.MAX_DEFAULT_CONNECTIONS)};"
    )
    from embedsearch.service.documents import CreateRequest

    bounds = [max(getattr(m, "max_length", 0) or 0 for m in CreateRequest.model_fields[f].metadata) for f in ("model", "index")]
    assert rows["`PUT /collections/{name}`: model; index spec"] == f"1–{bounds[0]} characters; 1–{bounds[1]} characters"
    from embedsearch.service import openai_api

    texts = f"1–{n(app.MAX_EMBED_INPUTS)}; 1–{n(app.MAX_TEXT_CHARS)}"
    assert rows["`/v1/embeddings`: texts per request; characters per text"] == texts
    assert rows["`/v1/embeddings`: `model`; `dimensions`"] == f"1–{openai_api.MAX_MODEL_CHARS} characters; the model's own only"


def test_readme_search_mode_commands_run_as_written(cli, tmp_path):
    """The 'Search modes' block, line by line (with the hashing model for speed)."""
    import json
    import shlex

    block = next(b for b in _blocks("bash") if "--mode lexical --json" in b and "index alter old-news --lexical" in b)
    src = tmp_path / "m.jsonl"
    rows = [{"id": "m1", "text": "Error E1234 on startup: reset the controller"},
            {"id": "m2", "text": "The pump overheats when the filter is blocked"}]  # fmt: skip
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli("index", "create", "old-news", "--model", "hashing", "--no-lexical").exit_code == 0
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(lines) == 10
    for n, line in enumerate(lines):
        args = shlex.split(line.replace("--model minilm", "--model hashing"))[1:]
        r = cli(*args)
        assert r.exit_code == 0, f"{line}\n{r.output}"
        if n == 0:
            assert cli("index", "add", "manuals", str(src)).exit_code == 0
        if "--mode lexical --json" in line:
            hit = json.loads(r.stdout)[0]
            assert hit["id"] == "m1" and hit["highlights"][0] == {"term": "error", "start": 0, "end": 5}
        if "--default-mode hybrid --fusion rrf" in line:
            assert "hybrid, rrf fusion" in cli("index", "info", "manuals").output
        if "--stop-words german" in line:
            assert "german stop words" in cli("index", "info", "manuals").output
        if "--reset-search" in line:
            assert "hybrid, relative fusion, alpha 0.85 (the library's default)" in cli("index", "info", "manuals").output


def test_readme_passage_commands_run_as_written(cli, tmp_path, monkeypatch):
    """The 'Passages' block, line by line, with MiniLM: the hit carries its passage."""
    import json
    import shlex

    block = next(b for b in _blocks("bash") if "--chunk-tokens 200 --chunk-overlap 40" in b)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    filler = "The maintenance log lists routine checks of the building's lifts and lights. " * 40
    (tmp_path / "docs" / "pump.txt").write_text(filler + "\n\nThe pump overheats when its coolant valve stays closed.")
    (tmp_path / "docs" / "other.txt").write_text("Lava flows from volcanoes.")
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(lines) == 4
    for line in lines:
        r = cli(*shlex.split(line)[1:])
        assert r.exit_code == 0, f"{line}\n{r.output}"
        if "--json" in line:
            hit = json.loads(r.stdout)[0]
            assert hit["id"].endswith("pump.txt") and "coolant valve" in hit["passage"] and hit["start"] > 0


def test_readme_compare_commands_parse_and_the_search_mode_one_runs(cli, tmp_path, monkeypatch):
    """The 'Comparing models' block: every command's contenders parse; the search-mode line runs
    as written (with the hashing model for speed) and its report holds each contender."""
    import json
    import shlex

    from embedsearch.evaluation.contenders import parse_contenders

    block = next(b for b in _blocks("bash") if "embedsearch compare minilm minilm+lexical minilm+hybrid bm25" in b)
    commands = [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip().startswith("embedsearch compare")]
    assert len(commands) == 4
    for command in commands:
        args = shlex.split(command)[2:]
        models = []
        for a in args:
            if a.startswith("-"):
                break
            models.append(a)
        if models:
            parse_contenders(models)
    line = next(c for c in commands if "+hybrid" in c)
    monkeypatch.chdir(tmp_path)
    args = shlex.split(line.replace("minilm", "hashing").replace("corpora/", f"{REPO}/corpora/"))[1:]
    r = cli(*args, "--no-word-level", "--json", "reports/modes.json")
    assert r.exit_code == 0, f"{line}\n{r.output}"
    assert (tmp_path / "reports" / "modes.html").is_file()
    report = json.loads((tmp_path / "reports" / "modes.json").read_text())
    assert [m["label"] for m in report["models"]] == ["hashing", "hashing+lexical", "hashing+hybrid", "bm25"]
    assert all(report["metrics"]["ndcg@10"]["values"][m["label"]] for m in report["models"])


def test_installs_are_pinned_by_one_constraints_file_in_readme_and_ci():
    """A fresh install resolves the versions CI passed with (pytest 9.2 + schemathesis 4.32
    broke tests/test_openapi.py on a clean machine without a code change)."""
    import importlib.metadata as md

    setup = _blocks("bash")[0]
    assert "pip install -e '.[dev]' -c constraints.txt" in setup
    assert "pip install -q -e '.[dev]' -c constraints.txt" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    pins = dict(
        line.split("==")
        for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    for tool in ("pytest", "schemathesis", "hypothesis", "SQLAlchemy", "faiss-cpu", "sentence-transformers"):
        assert tool in pins, tool
    major, minor = (int(x) for x in pins["pytest"].split(".")[:2])
    assert (major, minor) < (9, 1)
    # this environment is the pinned one (CI installs with the file)
    assert md.version("pytest") == pins["pytest"] and md.version("schemathesis") == pins["schemathesis"]


def test_readme_snapshot_commands_run_as_written(cli, tmp_path, monkeypatch):
    """The snapshot, restore, export and import lines of "Snapshots, export and import"."""
    import json
    import shlex

    src = tmp_path / "news.jsonl"
    rows = [{"id": f"doc-{i}", "text": f"story {i} about rates", "source": "lee" if i % 2 else "bbc"} for i in range(30)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli("index", "create", "news", "--model", "hashing").exit_code == 0
    assert cli("index", "add", "news", str(src)).exit_code == 0
    monkeypatch.chdir(tmp_path)
    block = next(b for b in _blocks("bash") if "embedsearch index snapshot news" in b)
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(lines) == 7
    for line in lines:
        r = cli(*shlex.split(line)[1:])
        assert r.exit_code == 0, f"{line}\n{r.output}"
    assert "last snapshot" in cli("index", "info", "news").output
    counts = [cli("index", "count", name).output.strip() for name in ("news", "news-copy", "archive")]
    assert counts == ["30", "30", "30"]
