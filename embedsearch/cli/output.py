"""Output helpers shared by the commands: JSON, aligned tables, short text."""

from __future__ import annotations

import json
import shutil
import unicodedata
from collections.abc import Sequence
from typing import Any

import click


def echo_json(obj: Any, *, indent: int | None = 2) -> None:
    click.echo(json.dumps(obj, indent=indent, ensure_ascii=False, default=str))


def char_width(ch: str) -> int:
    """Columns a character takes in a terminal: 2 for East Asian wide and full-width characters
    (CJK ideographs, kana, hangul, full-width forms, most emoji), 0 for combining marks and
    format characters (zero-width joiner, variation selectors), 1 otherwise."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal (not its length: 東京 is 2 characters, 4 columns)."""
    return sum(char_width(ch) for ch in text)


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` columns (``str.ljust`` counts characters)."""
    return text + " " * max(0, width - display_width(text))


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to at most ``width`` columns with an ellipsis."""
    text = " ".join(str(text).split())
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = char_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…" if width >= 1 else ""


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], *, flex: int | None = None) -> str:
    """A plain aligned table, by display width (wide CJK characters take two columns); column
    ``flex`` is shortened to fit the terminal."""
    cells = [[" ".join(str(c).split()) if i == flex else str(c) for i, c in enumerate(r)] for r in rows]
    widths = [max([display_width(h)] + [display_width(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if flex is not None and cells:
        term = shutil.get_terminal_size((120, 24)).columns
        others = sum(w for i, w in enumerate(widths) if i != flex) + 2 * (len(widths) - 1)
        widths[flex] = max(display_width(headers[flex]), min(widths[flex], term - others))
        for r in cells:
            r[flex] = shorten(r[flex], widths[flex])
    lines = ["  ".join(pad(h, w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)
