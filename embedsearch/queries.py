"""Query files for ``search --queries``: plain text or jsonl, decided once per file.

Deciding per line (a line starting with ``{`` is JSON) stopped a run at a plain-text query that
happened to begin with a brace. The format is the file's: ``--queries-format``, or the extension
(``.jsonl``/``.ndjson`` are jsonl, anything else and stdin are text).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from embedsearch.errors import CorpusError

QUERY_FORMATS = ("auto", "txt", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


def queries_format(path: str, fmt: str = "auto") -> str:
    """``txt`` or ``jsonl`` for a query file (``-`` is stdin)."""
    if fmt not in QUERY_FORMATS:
        raise CorpusError(f"unknown query file format {fmt!r}; use one of {', '.join(QUERY_FORMATS)}")
    if fmt != "auto":
        return fmt
    return "jsonl" if path != "-" and Path(path).suffix.lower() in JSONL_SUFFIXES else "txt"


def read_queries(path: str, fmt: str = "auto", stream: IO[str] | None = None) -> Iterator[str]:
    """Queries from a file (or ``-`` for ``stream``): one per non-empty line, or jsonl objects
    with a non-empty ``query`` string; errors name the line."""
    kind = queries_format(path, fmt)
    handle = stream if path == "-" else None
    if handle is None:
        p = Path(path)
        if not p.is_file():
            raise CorpusError(f"{path}: no such file")
        handle = open(p, encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        for lineno, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            if kind == "txt":
                yield text
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CorpusError(
                    f"{path}:{lineno}: malformed JSON ({exc.msg}); a jsonl query file holds one object per line"
                ) from None
            q = obj.get("query") if isinstance(obj, dict) else None
            if not isinstance(q, str) or not q.strip():
                raise CorpusError(f"{path}:{lineno}: expected an object with a non-empty 'query' string")
            yield q.strip()
    except UnicodeDecodeError:
        raise CorpusError(f"{path}: not valid UTF-8") from None
    finally:
        if handle is not stream:
            handle.close()
