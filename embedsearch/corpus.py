"""Corpus readers: txt, jsonl, csv/tsv, directories and stdin, streamed as :class:`Document`.

Every reader is a generator over a file opened in binary and decoded line by line, so a
1 GB jsonl never sits in memory at once and a decoding error can name its file and line.
The same tokenizer serves training and embedding, so a word means the same at both ends.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import math
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from embedsearch.errors import CorpusError

FORMATS = ("txt", "jsonl", "csv", "tsv")
_EXTENSIONS = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "txt",
    ".cor": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
}
_BINARY_SNIFF_BYTES = 8192
_NUMBER_RE = re.compile(r"^-?(?:\d+|\d*\.\d+)(?:[eE][-+]?\d+)?$")
_TOKEN_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


@dataclass
class Document:
    """One unit of text to embed: the user's id, the text and free-form JSON metadata."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """A stable hash of text and metadata; unchanged documents are skipped on re-add."""
        payload = json.dumps({"t": self.text, "m": self.metadata}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def metadata_problem(value: Any, path: str = "") -> str | None:
    """Why ``value`` is not strict JSON metadata, or None: NaN and Infinity are not JSON (SQLite's
    JSON functions then fail on the row, and every filtered search with them), and strings with
    lone surrogates cannot be stored as UTF-8."""
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path or 'value'} is {value!r}, which is not JSON"
    if isinstance(value, str):
        return _surrogates(value, path)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"key {key!r} at {path or 'the top level'} is not a string"
            sub = f"{path}.{key}" if path else key
            problem = _surrogates(key, f"key {sub!r}") or metadata_problem(item, sub)
            if problem:
                return problem
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = metadata_problem(item, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if value is None or isinstance(value, (bool, int)):
        return None
    return f"{path or 'value'} is a {type(value).__name__}, which is not JSON"


def _surrogates(text: str, where: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{where or 'value'} contains a lone surrogate (not valid Unicode text)"
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (metadata must be strict JSON: use null or a number)")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits, inner apostrophes kept)."""
    return _TOKEN_RE.findall(text.lower())


@dataclass
class ReadOptions:
    """How to turn files into documents; mirrors the ``index add`` options."""

    format: str | None = None  # None: from the file extension
    per_line: bool = False  # txt: one document per non-blank line instead of per file
    text_field: str = "text"
    id_field: str = "id"
    encoding: str = "utf-8"
    skip_bad: bool = False  # skip malformed records (reported through on_skip) instead of stopping
    glob: str = "**/*"  # files to take from a directory
    metadata: dict[str, Any] = field(default_factory=dict)  # added to every document

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise CorpusError(f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}")
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise CorpusError(f"unknown encoding {self.encoding!r}") from None


@dataclass(frozen=True)
class Source:
    """One input file and the name used for it in ids and messages."""

    path: Path
    display: str
    format: str


SkipHandler = Callable[[str], None]


def _format_for(path: Path, opts: ReadOptions) -> str | None:
    if opts.format:
        return opts.format
    return _EXTENSIONS.get(path.suffix.lower())


def resolve_sources(inputs: Iterable[str], opts: ReadOptions, stdin_path: Path | None = None) -> list[Source]:
    """Expand files and directories into a sorted, de-duplicated list of sources.

    ``-`` means standard input, which the caller must first spool to ``stdin_path`` (see
    :func:`spool_stdin`) so that it can be validated before anything is written.
    """
    sources: list[Source] = []
    seen: set[Path] = set()
    inputs = list(inputs)
    if not inputs:
        raise CorpusError("no input files given")
    for raw in inputs:
        if raw == "-":
            if stdin_path is None:
                raise CorpusError("standard input was not provided")
            sources.append(Source(stdin_path, "stdin", opts.format or "txt"))
            continue
        path = Path(raw).expanduser()
        if path.is_dir():
            found = 0
            for child in sorted(path.glob(opts.glob)):
                if not child.is_file() or any(p.startswith(".") for p in child.relative_to(path).parts):
                    continue
                fmt = _format_for(child, opts)
                if fmt is None:
                    continue  # unknown extensions in a directory are skipped, not errors
                if child.resolve() in seen:
                    continue
                seen.add(child.resolve())
                sources.append(Source(child, str(child.relative_to(path.parent) if path.parent != path else child), fmt))
                found += 1
            if not found:
                raise CorpusError(f"{raw}: directory has no readable files matching {opts.glob!r}")
            continue
        if not path.exists():
            raise CorpusError(f"{raw}: no such file or directory")
        if not path.is_file():
            raise CorpusError(f"{raw}: not a regular file")
        fmt = _format_for(path, opts)
        if fmt is None:
            raise CorpusError(f"{raw}: cannot tell the format from the extension; pass --format ({', '.join(FORMATS)})")
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        sources.append(Source(path, raw, fmt))
    return sources


def spool_stdin(stream: IO[bytes] | IO[str], directory: str | None = None) -> Path:
    """Copy standard input to a temporary file so it can be read twice (validate, then embed)."""
    fd, name = tempfile.mkstemp(prefix="embedsearch-stdin-", suffix=".txt", dir=directory)
    with open(fd, "wb") as out:
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            shutil.copyfileobj(buffer, out)
        else:
            data = stream.read()
            out.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(name)


def _ascii_compatible(encoding: str) -> bool:
    try:
        return "\n".encode(encoding) == b"\n" and "a".encode(encoding) == b"a"
    except LookupError:
        return False


def iter_lines(source: Source, encoding: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each line, raising a :class:`CorpusError` that names
    the file and line on undecodable bytes, and refusing binary files and empty files."""
    path = source.path
    try:
        size = path.stat().st_size
        handle = open(path, "rb")
    except OSError as exc:
        raise CorpusError(f"{source.display}: cannot read: {exc.strerror}") from None
    with handle:
        head = handle.read(_BINARY_SNIFF_BYTES)
        if size == 0 or (size <= len(head) and not head.strip(b" \t\r\n\x00\xef\xbb\xbf")):
            raise CorpusError(f"{source.display}: file is empty")
        if _ascii_compatible(encoding) and b"\x00" in head:
            raise CorpusError(f"{source.display}: looks like a binary file (NUL bytes); not a text corpus")
        handle.seek(0)
        if _ascii_compatible(encoding):
            enc = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
            for lineno, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode(enc if lineno == 1 else encoding)
                except UnicodeDecodeError as exc:
                    bad = raw[exc.start : exc.start + 1]
                    raise CorpusError(
                        f"{source.display}:{lineno}: cannot decode byte 0x{bad.hex()} at column {exc.start + 1} "
                        f"as {encoding}; pass --encoding (e.g. latin-1) if the file uses another encoding"
                    ) from None
                yield lineno, text
        else:
            # utf-16/32 cannot be split on b"\n"; decode incrementally and count lines as we go.
            reader = codecs.getreader(encoding)(handle, errors="strict")
            lineno = 0
            try:
                for lineno, text in enumerate(reader, start=1):  # noqa: B007
                    yield lineno, text
            except UnicodeDecodeError as exc:
                raise CorpusError(
                    f"{source.display}:{lineno + 1}: cannot decode as {encoding}: {exc.reason}; check --encoding"
                ) from None


def _coerce_csv_value(value: str) -> Any:
    if _NUMBER_RE.match(value):
        number = float(value)
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
    return value


def _bad(message: str, opts: ReadOptions, on_skip: SkipHandler | None) -> None:
    if not opts.skip_bad:
        raise CorpusError(message + " (use --skip-bad to skip such records)")
    if on_skip is not None:
        on_skip(message)


def _read_txt(source: Source, opts: ReadOptions, on_skip: SkipHandler | None) -> Iterator[Document]:
    if opts.per_line:
        for lineno, line in iter_lines(source, opts.encoding):
            text = line.strip()
            if text:
                yield Document(f"{source.display}:{lineno}", text, {"path": source.display, "line": lineno, **opts.metadata})
        return
    text = "".join(line for _, line in iter_lines(source, opts.encoding)).strip()
    yield Document(source.display, text, {"path": source.display, **opts.metadata})


def _record_to_document(
    record: dict[str, Any], where: str, default_id: str, opts: ReadOptions, on_skip: SkipHandler | None
) -> Document | None:
    text = record.get(opts.text_field)
    if not isinstance(text, str) or not text.strip():
        problem = "is missing" if text is None else "is empty" if isinstance(text, str) else "is not a string"
        _bad(f"{where}: text field {opts.text_field!r} {problem}", opts, on_skip)
        return None
    raw_id = record.get(opts.id_field)
    if raw_id is None or raw_id == "":
        doc_id = default_id
    elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool):
        doc_id = str(raw_id)
    else:
        _bad(f"{where}: id field {opts.id_field!r} must be a string or an integer", opts, on_skip)
        return None
    metadata = {k: v for k, v in record.items() if k not in (opts.text_field, opts.id_field)}
    problem = metadata_problem(metadata) or _surrogates(text, "the text") or _surrogates(doc_id, "the id")
    if problem:
        _bad(f"{where}: {problem}", opts, on_skip)
        return None
    return Document(doc_id, text.strip(), {**opts.metadata, **metadata})


def _read_jsonl(source: Source, opts: ReadOptions, on_skip: SkipHandler | None) -> Iterator[Document]:
    for lineno, line in iter_lines(source, opts.encoding):
        if not line.strip():
            continue
        where = f"{source.display}:{lineno}"
        try:
            record = json.loads(line, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            _bad(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})", opts, on_skip)
            continue
        except ValueError as exc:  # NaN / Infinity
            _bad(f"{where}: {exc}", opts, on_skip)
            continue
        if not isinstance(record, dict):
            _bad(f"{where}: expected a JSON object, got {type(record).__name__}", opts, on_skip)
            continue
        doc = _record_to_document(record, where, where, opts, on_skip)
        if doc is not None:
            yield doc


def _read_csv(source: Source, opts: ReadOptions, on_skip: SkipHandler | None) -> Iterator[Document]:
    delimiter = "\t" if source.format == "tsv" else ","
    lines = (line for _, line in iter_lines(source, opts.encoding))
    reader = csv.DictReader(lines, delimiter=delimiter)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise CorpusError(f"{source.display}:1: malformed header: {exc}") from None
    if not header or opts.text_field not in header:
        raise CorpusError(
            f"{source.display}:1: no {opts.text_field!r} column in the header "
            f"(columns: {', '.join(header or [])}); choose one with --text-field"
        )
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            _bad(f"{source.display}:{reader.line_num}: malformed CSV ({exc})", opts, on_skip)
            continue
        where = f"{source.display}:{reader.line_num}"
        if None in row:
            _bad(f"{where}: more fields than the header has", opts, on_skip)
            continue
        record = {
            k: (_coerce_csv_value(v) if k not in (opts.text_field, opts.id_field) else v)
            for k, v in row.items()
            if v not in (None, "")
        }
        doc = _record_to_document(record, where, f"{source.display}:{reader.line_num}", opts, on_skip)
        if doc is not None:
            yield doc


_READERS = {"txt": _read_txt, "jsonl": _read_jsonl, "csv": _read_csv, "tsv": _read_csv}


def iter_documents(sources: Iterable[Source], opts: ReadOptions, on_skip: SkipHandler | None = None) -> Iterator[Document]:
    """Stream documents from every source in order."""
    for source in sources:
        yield from _READERS[source.format](source, opts, on_skip)


@dataclass
class Duplicates:
    """Ids that more than one record of an input carries (a collection keeps the last record)."""

    seen: set[str] = field(default_factory=set)
    repeated: dict[str, int] = field(default_factory=dict)  # id -> records beyond the first

    def add(self, doc_id: str) -> None:
        if doc_id in self.seen:
            self.repeated[doc_id] = self.repeated.get(doc_id, 0) + 1
        else:
            self.seen.add(doc_id)

    @property
    def records(self) -> int:
        """Records whose id an earlier record already had."""
        return sum(self.repeated.values())

    def first(self, n: int = 5) -> list[str]:
        return list(self.repeated)[:n]

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "ids": len(self.repeated), "first": self.first()}


def scan(
    sources: list[Source], opts: ReadOptions, on_skip: SkipHandler | None = None, duplicates: Duplicates | None = None
) -> int:
    """Read everything once without keeping it, so bad input is found before anything is
    written; returns the number of documents (and tallies repeated ids in ``duplicates``)."""
    count = 0
    for doc in iter_documents(sources, opts, on_skip):
        count += 1
        if duplicates is not None:
            duplicates.add(doc.id)
    if count == 0:
        raise CorpusError("the input holds no documents")
    return count


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Group an iterable into lists of at most ``size`` items."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def read_documents(inputs: Iterable[str], opts: ReadOptions | None = None, stdin: IO | None = None) -> Iterator[Document]:
    """Convenience for library users: resolve, then stream documents (stdin spooled if used)."""
    opts = opts or ReadOptions()
    inputs = list(inputs)
    stdin_path = spool_stdin(stdin or sys.stdin) if "-" in inputs else None
    try:
        yield from iter_documents(resolve_sources(inputs, opts, stdin_path), opts)
    finally:
        if stdin_path is not None:
            stdin_path.unlink(missing_ok=True)
