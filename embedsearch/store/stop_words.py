"""Stop words: function words ("a", "of", "how", "do") kept out of a lexical query's matching and
out of highlights, unless the query has no other word.

Lists per language are the Snowball project's (``stopwords/<language>.txt``, see its README). The
index itself keeps every word (stop words are dropped at query time only), so a collection's
language can change without reindexing, and a query made only of stop words ("to be or not to
be") still finds the documents holding them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from embedsearch.errors import InvalidArgument

DEFAULT_LANGUAGE = "english"
NONE = "none"  # no stop words: every query word counts
_DIR = Path(__file__).resolve().parent / "stopwords"


@cache
def languages() -> tuple[str, ...]:
    """The languages with a list, and ``none`` (the package's files, listed once: every search
    checks its collection's language against them)."""
    return (*sorted(p.stem for p in _DIR.glob("*.txt")), NONE)


@cache
def stop_words(language: str | None = None) -> frozenset[str]:
    """The stop words of ``language`` (default English; ``none``: no stop words)."""
    language = language or DEFAULT_LANGUAGE
    if language == NONE:
        return frozenset()
    path = _DIR / f"{language}.txt"
    if language not in languages() or not path.is_file():
        raise InvalidArgument(f"no stop-word list for {language!r}; choose one of {', '.join(languages())}")
    return frozenset(w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip())


def without_stop_words(terms: list[str], stop: frozenset[str]) -> list[str]:
    """``terms`` less the stop words, or ``terms`` unchanged when nothing else would be left."""
    kept = [t for t in terms if t not in stop]
    return kept or terms
