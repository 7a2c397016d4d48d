from __future__ import annotations

import io

import pytest

from embedsearch.corpus import ReadOptions, iter_documents, read_documents, resolve_sources, scan, tokenize
from embedsearch.errors import CorpusError


def docs(paths, **kw):
    opts = ReadOptions(**kw)
    return list(iter_documents(resolve_sources([str(p) for p in paths], opts), opts))


def test_txt_one_document_per_file(tmp_path):
    (tmp_path / "a.txt").write_text("Hello\nworld\n")
    (tmp_path / "b.txt").write_text("Second")
    out = docs([tmp_path / "a.txt", tmp_path / "b.txt"])
    assert [(d.text, d.metadata["path"]) for d in out] == [
        ("Hello\nworld", str(tmp_path / "a.txt")),
        ("Second", str(tmp_path / "b.txt")),
    ]


def test_txt_per_line_skips_blank_lines_and_numbers_ids(tmp_path):
    p = tmp_path / "lines.txt"
    p.write_text("one\n\n  two  \nthree\n")
    out = docs([p], per_line=True)
    assert [(d.id, d.text) for d in out] == [(f"{p}:1", "one"), (f"{p}:3", "two"), (f"{p}:4", "three")]


def test_jsonl_fields_ids_and_metadata(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"id": "a", "text": "alpha", "year": 2001, "tags": {"x": 1}}\n\n{"body": "beta", "text": "b2", "id": 7}\n')
    out = docs([p])
    assert [(d.id, d.text, d.metadata) for d in out] == [
        ("a", "alpha", {"year": 2001, "tags": {"x": 1}}),
        ("7", "b2", {"body": "beta"}),
    ]
    out = docs([p], text_field="body", skip_bad=True)
    assert [(d.id, d.text) for d in out] == [("7", "beta")]


def test_csv_and_tsv_coerce_numbers(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('id,text,year,score,name\nr1,"hello, world",2001,0.5,x\nr2,second,,1e3,007\n')
    out = docs([p])
    assert [(d.id, d.text, d.metadata) for d in out] == [
        ("r1", "hello, world", {"year": 2001, "score": 0.5, "name": "x"}),
        ("r2", "second", {"score": 1000.0, "name": 7}),
    ]
    t = tmp_path / "d.tsv"
    t.write_text("text\tlabel\nfoo\tA\n")
    assert [(d.text, d.metadata) for d in docs([t])] == [("foo", {"label": "A"})]


def test_directory_with_glob_skips_hidden_and_unknown(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.txt").write_text("x")
    (tmp_path / "y.md").write_text("y")
    (tmp_path / ".hidden.txt").write_text("h")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    assert sorted(d.text for d in docs([tmp_path])) == ["x", "y"]
    assert [d.text for d in docs([tmp_path], glob="**/*.txt")] == ["x"]


def test_stdin_is_read_through_a_spool():
    out = list(read_documents(["-"], ReadOptions(per_line=True), stdin=io.BytesIO(b"first\nsecond\n")))
    assert [(d.id, d.text) for d in out] == [("stdin:1", "first"), ("stdin:2", "second")]


def test_latin1_needs_the_encoding_option(tmp_path):
    p = tmp_path / "l1.txt"
    p.write_bytes("first line\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"l1.txt:2: cannot decode byte 0xe9 .*--encoding"):
        docs([p], per_line=True)
    assert [d.text for d in docs([p], per_line=True, encoding="latin-1")][1] == "café au lait"


def test_utf16_with_the_encoding_option(tmp_path):
    p = tmp_path / "u16.txt"
    p.write_bytes("один\nдва\n".encode("utf-16"))
    assert [d.text for d in docs([p], per_line=True, encoding="utf-16")] == ["один", "два"]


def test_utf8_bom_is_dropped(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "x"}\n')
    assert [d.text for d in docs([p])] == ["x"]


@pytest.mark.parametrize(
    "name, content, kwargs, message",
    [
        ("empty.txt", b"", {}, "empty.txt: file is empty"),
        ("blank.jsonl", b"\n  \n", {}, "blank.jsonl: file is empty"),
        ("bin.txt", b"\x00\x01\x02binary\x00", {}, "looks like a binary file"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": broken}\n', {}, r"bad.jsonl:2: malformed JSON"),
        ("arr.jsonl", b'["text"]\n', {}, r"arr.jsonl:1: expected a JSON object"),
        ("notext.jsonl", b'{"title": "x"}\n', {}, r"notext.jsonl:1: text field 'text' is missing"),
        ("emptytext.jsonl", b'{"text": "  "}\n', {}, r"emptytext.jsonl:1: text field 'text' is empty"),
        ("badid.jsonl", b'{"text": "a", "id": [1]}\n', {}, r"badid.jsonl:1: id field"),
        ("nohdr.csv", b"a,b\n1,2\n", {}, r"nohdr.csv:1: no 'text' column"),
        ("wide.csv", b"text\nx,y\n", {}, r"wide.csv:2: more fields than the header"),
        ("x.unknown", b"data", {}, "cannot tell the format"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, name, content, kwargs, message):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(CorpusError, match=message):
        opts = ReadOptions(**kwargs)
        scan(resolve_sources([str(p)], opts), opts)


def test_missing_file_and_unknown_format_or_encoding(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        docs([tmp_path / "nope.txt"])
    with pytest.raises(CorpusError, match="unknown format"):
        ReadOptions(format="xml")
    with pytest.raises(CorpusError, match="unknown encoding"):
        ReadOptions(encoding="klingon")


def test_skip_bad_reports_each_skipped_line(tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_text('{"text": "a"}\nnot json\n{"text": ""}\n{"text": "b"}\n')
    skipped = []
    opts = ReadOptions(skip_bad=True)
    assert scan(resolve_sources([str(p)], opts), opts, on_skip=skipped.append) == 2
    assert [s.split(":")[1] for s in skipped] == ["2", "3"]


def test_a_file_with_only_bad_records_has_no_documents(tmp_path):
    p = tmp_path / "allbad.jsonl"
    p.write_text("nope\n")
    opts = ReadOptions(skip_bad=True)
    with pytest.raises(CorpusError, match="no documents"):
        scan(resolve_sources([str(p)], opts), opts)


def test_content_hash_covers_text_and_metadata():
    from embedsearch.corpus import Document

    a = Document("1", "t", {"x": 1})
    assert a.content_hash == Document("other-id", "t", {"x": 1}).content_hash
    assert a.content_hash != Document("1", "t", {"x": 2}).content_hash
    assert a.content_hash != Document("1", "t2", {"x": 1}).content_hash


def test_tokenizer():
    assert tokenize("Don't STOP—the U.S. rate_cut 2.5%!") == ["don't", "stop", "the", "u", "s", "rate", "cut", "2", "5"]
