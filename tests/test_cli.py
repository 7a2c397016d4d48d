"""The CLI in-process with CliRunner, on a temporary data directory and a real SQLite file."""

from __future__ import annotations

import json
import sqlite3

import pytest

from embedsearch.cli import main


@pytest.fixture
def news(cli, tmp_path):
    """A 'news' collection with the hashing model and six documents."""
    src = tmp_path / "news.jsonl"
    rows = [
        {
            "id": "doc-1",
            "text": "Bushfires burn homes near Sydney as firefighters battle the blaze",
            "source": "lee",
            "year": 2001,
        },
        {"id": "doc-2", "text": "The central bank raises interest rates to curb inflation", "source": "lee", "year": 2002},
        {"id": "doc-3", "text": "Cricket: Australia beats South Africa in the first test", "source": "bbc", "year": 2001},
        {"id": "doc-4", "text": "Bushfire smoke blankets the city for a third day", "source": "bbc", "year": 1999},
        {"id": "doc-5", "text": "Parliament votes on the new budget", "source": "lee", "year": 2003},
        {"id": "doc-17", "text": "Bushfires: residents evacuated as winds change", "source": "lee", "year": 2004},
    ]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert cli("index", "create", "news", "--model", "hashing").exit_code == 0
    r = cli("index", "add", "news", str(src))
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "news: added 6, updated 0, unchanged 0; 6 documents (generation 2)"
    return src


def db_rows(data_dir, sql):
    with sqlite3.connect(data_dir / "embedsearch.db") as conn:
        return conn.execute(sql).fetchall()


def test_help_everywhere_has_examples(cli):
    for args in (
        ["-h"],
        ["index", "-h"],
        ["index", "add", "--help"],
        ["search", "-h"],
        ["demo", "-h"],
        ["index", "create", "-h"],
    ):
        r = cli(*args)
        assert r.exit_code == 0 and "Usage:" in r.output
    assert "Examples:" in cli("index", "add", "-h").output
    assert "Examples:" in cli("search", "-h").output


def test_create_add_search_and_rows_in_sqlite(cli, news, data_dir):
    assert db_rows(data_dir, "select name, model, dim, doc_count, generation from collections") == [
        ("news", "hashing", 256, 6, 2)
    ]
    assert db_rows(data_dir, "select external_id from documents order by row_id")[0] == ("doc-1",)
    r = cli("search", "news", "bushfires homes firefighters", "-k", "2", "--json")
    assert r.exit_code == 0
    hits = json.loads(r.output)
    assert [h["id"] for h in hits][0] == "doc-1" and len(hits) == 2
    # a collection created by the CLI has a lexical index, so the default mode is hybrid
    assert set(hits[0]) == {"id", "score", "text", "metadata", "mode", "ranks", "highlights"}
    assert hits[0]["mode"] == "hybrid"
    r = cli("search", "news", "bushfires", "-k", "5", "--where", '{"source": "lee", "year": {"$gte": 2001}}', "--json")
    ids = [h["id"] for h in json.loads(r.output)]
    assert set(ids) == {"doc-1", "doc-2", "doc-5", "doc-17"} and ids[0] in ("doc-1", "doc-17")


def test_table_output_and_fields(cli, news):
    r = cli("search", "news", "interest rates", "-k", "1")
    lines = r.output.splitlines()
    assert lines[0].split() == ["#", "score", "id", "text", "metadata"] and "doc-2" in lines[2]
    r = cli("search", "news", "interest rates", "-k", "1", "--jsonl", "--fields", "id,year")
    assert json.loads(r.output) == {"id": "doc-2", "year": 2002}


def test_queries_file_prints_one_json_line_per_query(cli, news, tmp_path):
    qf = tmp_path / "q.jsonl"
    qf.write_text('{"query": "interest rates"}\n\n{"query": "parliament budget"}\n')
    r = cli("search", "news", "--queries", str(qf), "-k", "1", "--fields", "id")
    assert [json.loads(line) for line in r.output.splitlines()] == [
        {"query": "interest rates", "hits": [{"id": "doc-2"}]},
        {"query": "parliament budget", "hits": [{"id": "doc-5"}]},
    ]
    r = cli("search", "news", "--queries", "-", "-k", "1", "--fields", "id", input="cricket test\n")
    assert json.loads(r.output)["hits"] == [{"id": "doc-3"}]


def test_queries_format_is_decided_once_per_file(cli, news, tmp_path):
    """A plain-text query starting with '{' used to be parsed as JSON and stop the run."""
    qf = tmp_path / "q.txt"
    qf.write_text("{braces} interest rates\nparliament budget\n")
    r = cli("search", "news", "--queries", str(qf), "-k", "1", "--fields", "id")
    assert r.exit_code == 0, r.output
    assert [json.loads(line)["query"] for line in r.output.splitlines()] == ["{braces} interest rates", "parliament budget"]
    r = cli("search", "news", "--queries", "-", "--queries-format", "jsonl", "-k", "1", input='{"query": "cricket test"}\n')
    assert json.loads(r.output)["query"] == "cricket test"
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"query": "interest rates"}\nparliament budget\n')
    r = cli("search", "news", "--queries", str(bad))
    assert r.exit_code == 1 and f"{bad}:2: malformed JSON" in r.output and "Traceback" not in r.output


def test_readd_is_unchanged_and_delete(cli, news, data_dir):
    r = cli("index", "add", "news", str(news), "--json")
    assert json.loads(r.output)["unchanged"] == 6
    r = cli("index", "delete", "news", "--id", "doc-17")
    assert r.exit_code == 0 and r.output.startswith("news: deleted 1; 5 documents left")
    assert db_rows(data_dir, "select count(*) from documents where external_id='doc-17'") == [(0,)]
    r = cli("index", "delete", "news", "--where", '{"source": "bbc"}', "--json")
    assert json.loads(r.output)["deleted"] == 2
    assert json.loads(cli("index", "info", "news", "--json").output)["doc_count"] == 3
    assert cli("index", "verify", "news").output.startswith("news: ok (3 documents")


def test_delete_where_empty_filter_asks_for_yes_then_deletes_everything(cli, news, data_dir):
    """`--where '{}'` matches every document (as `index count` says); it used to delete nothing
    and exit 0."""
    assert cli("index", "count", "news", "--where", "{}").output.strip().endswith("6")
    r = cli("index", "delete", "news", "--where", "{}")
    assert r.exit_code == 2 and "add --yes" in r.output
    assert db_rows(data_dir, "select count(*) from documents") == [(6,)]
    r = cli("index", "delete", "news", "--where", "{}", "--yes", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["deleted"] == 6
    assert db_rows(data_dir, "select count(*) from documents") == [(0,)]
    assert cli("index", "verify", "news").output.startswith("news: ok (0 documents")


def test_inputs_from_txt_dir_csv_and_stdin(cli, tmp_path):
    cli("index", "create", "mix", "--model", "hashing", "--index", "Flat")
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.txt").write_text("first file")
    (d / "b.txt").write_text("second file")
    (tmp_path / "t.csv").write_text("id,text,topic\nc1,from csv,x\n")
    assert cli("index", "add", "mix", str(d), str(tmp_path / "t.csv")).exit_code == 0
    r = cli(
        "index",
        "add",
        "mix",
        "-",
        "--per-line",
        "--meta",
        "source=stdin",
        "--meta",
        "year=2020",
        "--json",
        input="line one\nline two\n",
    )
    assert json.loads(r.output)["added"] == 2
    r = cli("search", "mix", "line", "--where", '{"source": "stdin", "year": 2020}', "--json")
    assert sorted(h["id"] for h in json.loads(r.output)) == ["stdin:1", "stdin:2"]
    listing = cli("index", "list").output.splitlines()
    assert listing[0].split() == ["name", "documents", "model", "dim", "index", "generation"]
    assert listing[2].split()[:2] == ["mix", "5"]


BAD_ADD = [
    # (file name, content, extra args, exit code, message)
    ("missing.txt", None, [], 1, "missing.txt: no such file or directory"),
    ("empty.txt", b"", [], 1, "empty.txt: file is empty"),
    ("bin.txt", b"\x7fELF\x00\x00\x01", [], 1, "looks like a binary file"),
    ("latin.txt", "caf\xe9\n".encode("latin-1"), ["--per-line"], 1, "latin.txt:1: cannot decode byte 0xe9"),
    ("bad.jsonl", b'{"text": "fine"}\n{oops}\n', [], 1, "bad.jsonl:2: malformed JSON"),
    ("ok.jsonl", b'{"text": "fine"}\n', ["--format", "xml"], 2, "Invalid value for '--format'"),
    ("ok2.jsonl", b'{"text": "fine"}\n', ["--meta", "novalue"], 2, "expected KEY=VALUE"),
]


@pytest.mark.parametrize("fname, content, extra, code, message", BAD_ADD, ids=[b[0] for b in BAD_ADD])
def test_bad_input_to_add_is_one_clear_line_and_changes_nothing(
    cli, news, tmp_path, data_dir, fname, content, extra, code, message
):
    path = tmp_path / fname
    if content is not None:
        path.write_bytes(content)
    before = db_rows(data_dir, "select generation, doc_count from collections")
    r = cli("index", "add", "news", str(path), *extra)
    assert r.exit_code == code
    assert message in r.output
    assert "Traceback" not in r.output
    assert db_rows(data_dir, "select generation, doc_count from collections") == before


def test_skip_bad_adds_the_good_records(cli, news, tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_text('{"id": "g1", "text": "good one"}\n{broken\n{"id": "g2", "text": "good two"}\n')
    r = cli("index", "add", "news", str(p), "--skip-bad")
    assert r.exit_code == 0
    assert "skipped: " in r.output and "mixed.jsonl:2" in r.output
    assert "added 2" in r.output and "skipped 1 bad records" in r.output


BAD_COMMANDS = [
    (["index", "create", "x", "--model", "no-such-model"], 2, "unknown model 'no-such-model'"),
    (["index", "create", "../etc", "--model", "hashing"], 2, "invalid collection name '../etc'"),
    (["index", "create", "a/b", "--model", "hashing"], 2, "invalid collection name"),
    (["index", "create", "news", "--model", "hashing"], 1, "already exists"),
    (["index", "create", "y", "--model", "hashing", "--index", "IVF,Foo"], 2, "unknown index spec"),
    (["search", "nope", "q"], 1, "no collection named 'nope'"),
    (["search", "news", "q", "--where", "{bad json"], 2, "filter is not valid JSON"),
    (["search", "news", "q", "--where", '{"year": {"$near": 1}}'], 2, "unknown operator '$near'"),
    (["search", "news", "q", "-k", "0"], 2, "0 is not in the range"),
    (["search", "news"], 2, "give either a QUERY or --queries FILE"),
    (["search", "news", "q", "--model", "minilm"], 1, "makes 384-d vectors but collection 'news' is 256-d"),
    (["index", "delete", "news"], 2, "say what to delete"),
    (["index", "info", "..", "--json"], 2, "invalid collection name"),
]


@pytest.mark.parametrize("args, code, message", BAD_COMMANDS, ids=[" ".join(a[:3]) for a, _, _ in BAD_COMMANDS])
def test_bad_commands(cli, news, args, code, message):
    r = cli(*args)
    assert r.exit_code == code, r.output
    assert message in r.output
    assert "Traceback" not in r.output


def test_corrupted_index_gives_a_clear_error_then_repair(cli, news, data_dir):
    path = next((data_dir / "news").glob("growing-*.log"))
    path.write_bytes(path.read_bytes()[:100])
    r = cli("search", "news", "bushfires")
    assert r.exit_code == 1 and "truncated" in r.output and "index repair news" in r.output
    r = cli("index", "verify", "news")
    assert r.exit_code == 1 and "problem" in r.output
    r = cli("index", "repair", "news")
    assert r.exit_code == 0 and "re-embedded 6 documents" in r.output
    assert cli("index", "verify", "news").exit_code == 0
    assert json.loads(cli("search", "news", "bushfires", "--json").output)


def test_bad_database_url_is_a_clean_error(tmp_path):
    from click.testing import CliRunner

    r = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "--db", "nosuchdb://x", "index", "list"])
    assert r.exit_code == 1 and "database error" in r.output


def test_drop_asks_unless_yes(cli, news):
    r = cli("index", "drop", "news", input="n\n")
    assert r.exit_code == 1 and "Aborted" in r.output
    assert cli("index", "drop", "news", "--yes").output.strip() == "dropped news"
    assert "no collections" in cli("index", "list").output


def test_add_reports_ids_repeated_in_the_input(cli, tmp_path):
    """Two records with one id used to be collapsed silently ("added 1")."""
    src = tmp_path / "d.jsonl"
    src.write_text(
        '{"id": "a1", "text": "first"}\n{"id": "a2", "text": "two"}\n{"id": "a1", "text": "second"}\n'
        '{"id": "a2", "text": "two again"}\n{"id": "a1", "text": "third"}\n{"id": "b", "text": "bee"}\n'
    )
    assert cli("index", "create", "d", "--model", "hashing").exit_code == 0
    r = cli("index", "add", "d", str(src))
    assert r.exit_code == 0, r.output
    assert "added 3" in r.output
    assert "3 records repeated the id of an earlier record (2 ids: a1, a2); the last record of each id was kept" in r.output
    from embedsearch.config import Settings
    from embedsearch.store import Store

    coll = Store(Settings.from_env(cli.data_dir)).open("d")
    assert coll.get("a1").text == "third" and coll.get("a2").text == "two again"
    r = cli("index", "add", "d", str(src), "--json")
    assert json.loads(r.output)["duplicates"] == {"records": 3, "ids": 2, "first": ["a1", "a2"]}
    # the last record wins also when the repeats land in different commits
    assert cli("index", "create", "e", "--model", "hashing").exit_code == 0
    assert cli("index", "add", "e", str(src), "--commit-every", "1", "--batch-size", "1").exit_code == 0
    coll = Store(Settings.from_env(cli.data_dir)).open("e")
    assert coll.get("a1").text == "third" and coll.get("a2").text == "two again" and coll.count() == 3


def test_payload_indexes_on_the_command_line(cli, tmp_path):
    import json

    r = cli("index", "create", "p", "--model", "hashing", "--index-field", "year", "--index-field", "src")
    assert r.exit_code == 0 and "payload indexes on year, src" in r.output
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"id": "a", "text": "alpha fire", "year": 2001, "src": "x"}\n'
        '{"id": "b", "text": "beta fire", "year": 2005, "src": "y", "tags": ["t1", "t2"]}\n'
    )
    assert cli("index", "add", "p", str(src)).exit_code == 0
    r = cli("search", "p", "fire", "--where", '{"year": {"$gt": 2002}}', "--json")
    assert [h["id"] for h in json.loads(r.output)] == ["b"]
    r = cli("index", "alter", "p", "--index-field", "tags", "--drop-index-field", "src", "--json")
    out = json.loads(r.output)
    assert out["added"] == ["tags"] and out["dropped"] == ["src"] and out["index_fields"] == {"tags": 2, "year": 2}
    r = cli("index", "info", "p")
    assert "tags (2 entries), year (2 entries)" in r.output
    assert json.loads(cli("index", "info", "p", "--json").output)["index_fields"] == {"tags": 2, "year": 2}
    r = cli("index", "alter", "p", "--drop-index-field", "nope")
    assert r.exit_code == 2 and "not indexed: nope" in r.output
    r = cli("index", "alter", "p", "--index-field", "tags.0")
    assert r.exit_code == 2 and "numeric segments" in r.output
    assert cli("index", "alter", "p").exit_code == 2
    r = cli("index", "create", "q", "--model", "hashing", "--index-field", "a.$b")
    assert r.exit_code == 2 and "cannot start with '$'" in r.output
