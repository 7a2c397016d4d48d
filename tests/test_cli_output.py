"""CLI conventions checked over the whole command tree and the table printer: every leaf
command's -h has examples whose options exist; tables line up wide (CJK) text by display width."""

from __future__ import annotations

import json
import shlex

import click
import pytest

from embedsearch.cli import main
from embedsearch.cli.output import display_width, shorten, table


def leaf_commands(group: click.Group = main, path: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):  # get_command: the top level loads its commands lazily
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from leaf_commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


LEAVES = list(leaf_commands())


def examples_of(help_text: str) -> list[str]:
    block = help_text.split("Examples:", 1)[1].split("\nOptions:", 1)[0].replace("\\\n", " ")
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_the_tree_is_walked():
    names = {" ".join(p) for p, _ in LEAVES}
    assert {"index get", "index docs", "index count", "index drop", "models show", "train glove", "serve"} <= names
    assert len(LEAVES) >= 27


@pytest.mark.parametrize("path", [p for p, _ in LEAVES], ids=[" ".join(p) for p, _ in LEAVES])
def test_every_help_page_has_examples_that_parse(cli, path):
    r = cli(*path, "-h")
    assert r.exit_code == 0 and "Usage:" in r.output
    assert "Examples:" in r.output, f"`embedsearch {' '.join(path)} -h` has no examples"
    for curl in (e for e in examples_of(r.output) if e.startswith("curl ") and " -d " in e):
        assert "Content-Type: application/json" in curl, curl  # without it the service answers 422
    examples = [e for e in examples_of(r.output) if e.startswith("embedsearch ")]
    assert examples, r.output
    cmd = dict(LEAVES)[path]
    known = {"-h", "--help"} | {o for p in [*cmd.params, *main.params] for o in (*p.opts, *p.secondary_opts)}
    for example in examples:
        words = shlex.split(example.split("  #")[0].split(" | ")[0].split(" || ")[0])
        assert " ".join(words[1 : 1 + len(path)]) == " ".join(path) or any(w in words for w in path), example
        for w in words:
            if w.startswith("-") and w != "-" and not w.lstrip("-").replace(".", "").isdigit():
                assert w.split("=")[0] in known, f"{example}: no option {w}"


CJK = [("a1", "東京タワーの夜景", "x"), ("a2", "rates rise", "y"), ("a3", "서울 뉴스 ｆｕｌｌ", "z"), ("a4", "café", "w")]


def column_starts(line: str, cells: list[str]) -> list[int]:
    """The display column where each cell starts in a table line."""
    starts, pos = [], 0
    for cell in cells:
        i = line.index(cell, pos)
        starts.append(display_width(line[:i]))
        pos = i + len(cell)
    return starts


def test_wide_characters_line_up():
    out = table(CJK, ["id", "text", "tag"]).splitlines()
    starts = {tuple(column_starts(line, list(row))) for line, row in zip(out[2:], CJK, strict=True)}
    assert len(starts) == 1, out  # every row's columns start at the same display column
    assert column_starts(out[0], ["id", "text", "tag"]) == list(next(iter(starts)))
    assert display_width("東京タワーの夜景") == 16 and display_width("ｆｕｌｌ") == 8 and display_width("cafe\u0301") == 4
    assert len(out[1].split("  ")[1]) == display_width("서울 뉴스 ｆｕｌｌ") == 18  # as wide as the widest text


def test_shorten_counts_columns():
    assert shorten("東京タワーの夜景", 7) == "東京タ…" and display_width(shorten("東京タワーの夜景", 7)) == 7
    assert shorten("東京タワーの夜景", 16) == "東京タワーの夜景"
    assert shorten("abc  def", 20) == "abc def"


def test_search_and_docs_tables_line_up_cjk_text(cli, tmp_path):
    src = tmp_path / "cjk.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t, "tag": g}, ensure_ascii=False) + "\n" for i, t, g in CJK), "utf-8")
    assert cli("index", "create", "c", "--model", "hashing").exit_code == 0
    assert cli("index", "add", "c", str(src)).exit_code == 0
    out = cli("index", "docs", "c").stdout.splitlines()
    meta_starts = {display_width(line[: line.index("{")]) for line in out[2:]}
    assert len(out) == 6 and len(meta_starts) == 1, out
