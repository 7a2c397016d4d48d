"""Why a hit matched: the query's words in the hit's text, with character offsets.

Words are cut and compared as the lexical index does (:func:`embedsearch.store.lexical.query_terms`:
letters and digits, lower-cased), so a highlight is a word the lexical index matched.
"""

from __future__ import annotations

from embedsearch.store.lexical import normalise, words

MAX_HIGHLIGHTS = 50  # per hit


def highlights(text: str, terms: list[str], limit: int = MAX_HIGHLIGHTS) -> list[dict]:
    """``[{"term", "start", "end"}]``: each occurrence in ``text`` of one of ``terms`` (lower-cased
    query words), in text order; ``text[start:end]`` is the occurrence as written."""
    if not terms or not text:
        return []
    wanted = set(terms)
    out = []
    for m in words(text):
        term = normalise(m.group())
        if term in wanted:
            out.append({"term": term, "start": m.start(), "end": m.end()})
            if len(out) >= limit:
                break
    return out


def mark(text: str, spans: list[dict], before: str = "**", after: str = "**") -> str:
    """``text`` with each highlighted span wrapped in ``before`` / ``after``."""
    parts, at = [], 0
    for s in spans:
        parts += [text[at : s["start"]], before, text[s["start"] : s["end"]], after]
        at = s["end"]
    parts.append(text[at:])
    return "".join(parts)
