"""Evaluation sets of different kinds, from text that ships in Debian packages (issue 22).

    apt-get install dict-gcide dict-jargon dict-foldoc debian-faq sqlite3-doc postgresql-doc-15
    python benchmarks/eval_sets.py --write      # (re)writes corpora/eval/*-queries.jsonl
    python benchmarks/eval_sets.py              # prints each set's size

Like the Lee corpus (read from the installed gensim wheel), the documents are read from the
installed packages when a benchmark runs; only the query files live in the repository. Every
label comes from the texts' own structure, never from a model or a hand-picked list:

| set | kind | query | relevant document |
|---|---|---|---|
| ``gcide`` | term → definition | a GCIDE noun headword | its entry, headword and pronunciation removed |
| ``jargon`` | term → glossary entry | a Jargon File headword | its entry, headword removed |
| ``foldoc-abbrev`` | expansion → abbreviation | an expansion ("Access Control List") | its entry, headword removed |
| ``debian-faq`` | question → answer | a Debian FAQ question (its heading) | the answer under it |
| ``debian-faq-paraphrase`` | question → answer | a hand-written rewording of a Debian FAQ question | the answer under it |
| ``sqlite-faq`` | question → answer | an SQLite FAQ question | its answer |
| ``pg-sections`` | title → section | a PostgreSQL manual section title | that section's text, title removed |
| ``sqlite-pages`` | long document → passage | a heading inside an SQLite manual page | the page, by passages |

Sampling is deterministic: entries are ordered by the SHA-1 of their key and the first ones are
taken, so a rebuild gives the same sets. Distractors are the other entries of the same source.
``debian-faq-paraphrase-queries.jsonl`` is the one hand-written file (``--write`` keeps it).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EVAL_DIR = REPO / "corpora" / "eval"
DICTD = Path("/usr/share/dictd")
DEBIAN_FAQ = Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")
SQLITE_DOC = Path("/usr/share/doc/sqlite3")
PG_DOC = Path("/usr/share/doc/postgresql-doc-15/html")
PACKAGES = "dict-gcide dict-jargon dict-foldoc debian-faq sqlite3-doc postgresql-doc-15"
MIN_WORDS = 12  # entries shorter than this ("See {foo}.") say nothing to retrieve


@dataclass
class EvalSet:
    name: str
    kind: str
    documents: list  # embedsearch.corpus.Document
    queries: Path


def _key(s: str) -> str:
    return hashlib.sha1(s.encode("utf-8")).hexdigest()


def _words(text: str) -> int:
    return len(text.split())


# ---- dictd dictionaries -------------------------------------------------------------------

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64.index(c)
    return n


def dictd_entries(name: str) -> list[tuple[str, str]]:
    """(headword, entry text) of a dictd dictionary, in index order, one per distinct entry;
    the dictionary's own header entries (00-database-*) left out."""
    missing = [p for p in (DICTD / f"{name}.index", DICTD / f"{name}.dict.dz") if not p.exists()]
    if missing:
        raise SystemExit(f"missing {', '.join(map(str, missing))}: apt-get install {PACKAGES}")
    data = gzip.open(DICTD / f"{name}.dict.dz").read()
    seen, out = set(), []
    for line in (DICTD / f"{name}.index").read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        start, length = _b64(parts[1]), _b64(parts[2])
        if (start, length) in seen:
            continue
        seen.add((start, length))
        out.append((parts[0], data[start : start + length].decode("utf-8", errors="replace")))
    return out


_GCIDE_TAGS = re.compile(r"\[(?:1913 Webster|Webster 1913 Suppl\.|WordNet 1\.5|PJC)\]")
_GCIDE_FORMS = re.compile(r"\\[^\\\n]{1,80}\\|\[(?:[`^=.~'\"]?[a-z]{1,2}|[a-z]{1,2}[`^=.~'\"])\]")


def _strip_headword(text: str, headword: str) -> str:
    """The entry without its first line (the headword) and without the headword itself."""
    body = text.split("\n", 1)[1] if "\n" in text else ""
    body = re.sub(r"(?i)(?<!\w)" + re.escape(headword) + r"(?!\w)", " ", body)
    return " ".join(body.split())


def _gcide() -> tuple[list, list]:
    from embedsearch.corpus import Document

    nouns, docs = [], {}
    for head, text in dictd_entries("gcide"):
        if not re.fullmatch(r"[a-z][a-z-]{2,}", head):  # common lower-case words, no phrases or names
            continue
        clean = _GCIDE_FORMS.sub(" ", _GCIDE_TAGS.sub(" ", text))
        body = _strip_headword(clean, head)
        if _words(body) < MIN_WORDS:
            continue
        docs[head] = body
        if re.search(r",\s*n\.(?:\s|;|,|$)", clean.split("\n", 2)[0] + " " + clean[:200]):
            nouns.append(head)
    chosen = sorted(docs, key=_key)[:3000]
    targets = sorted((h for h in chosen if h in set(nouns)), key=_key)[:300]
    documents = [Document(f"gcide:{h}", docs[h], {"source": "gcide"}) for h in sorted(chosen)]
    queries = [{"id": f"gcide:{h}", "query": h, "relevant": [f"gcide:{h}"]} for h in targets]
    return documents, queries


def _jargon() -> tuple[list, list]:
    from embedsearch.corpus import Document

    docs = {}
    for head, text in dictd_entries("jargon"):
        body = _strip_headword(text, head)
        if _words(body) >= MIN_WORDS:
            docs.setdefault(head, body)
    documents = [Document(f"jargon:{h}", b, {"source": "jargon"}) for h, b in sorted(docs.items())]
    chosen = sorted(docs, key=_key)[:500]
    return documents, [{"id": f"jargon:{h}", "query": h, "relevant": [f"jargon:{h}"]} for h in chosen]


def _initials_match(abbrev: str, expansion: str) -> bool:
    letters = [w[0].lower() for w in re.findall(r"[A-Za-z][\w'-]*", expansion)]
    return len(letters) >= 2 and "".join(letters) == abbrev.lower()


def _foldoc() -> tuple[list, list]:
    from embedsearch.corpus import Document

    docs, abbrevs = {}, {}
    for head, text in dictd_entries("foldoc"):
        body = " ".join(text.split("\n", 1)[1].split()) if "\n" in text else ""
        if _words(body) < MIN_WORDS or head in docs:
            continue
        # "<networking> (ACL) Access Control List ..." or "Access Control List" as the first words
        m = re.match(r"(?:<[^>]+>\s*)*([A-Z][\w'-]*(?:\s+[A-Za-z][\w'-]*){1,6})", body)
        if re.fullmatch(r"[A-Za-z]{2,6}", head) and m:
            words = m.group(1).split()
            for n in range(len(words), 1, -1):
                if _initials_match(head, " ".join(words[:n])):
                    abbrevs[head] = " ".join(words[:n])
                    break
        docs[head] = _strip_headword(text, head)
    targets = sorted(abbrevs, key=_key)[:300]
    others = [h for h in sorted(docs, key=_key) if h not in abbrevs][: 3000 - len(targets)]
    documents = [Document(f"foldoc:{h}", docs[h], {"source": "foldoc"}) for h in sorted(set(targets) | set(others))]
    queries = [{"id": f"foldoc:{h}", "query": abbrevs[h], "relevant": [f"foldoc:{h}"]} for h in targets]
    return documents, queries


# ---- the Debian FAQ ------------------------------------------------------------------------


def _debian_faq_sections() -> list[tuple[str, str, str]]:
    """(number, question, answer) for every numbered section of the Debian FAQ."""
    if not DEBIAN_FAQ.exists():
        raise SystemExit(f"missing {DEBIAN_FAQ}: apt-get install {PACKAGES}")
    lines = gzip.open(DEBIAN_FAQ).read().decode("utf-8").splitlines()
    heads = [(i, m) for i, line in enumerate(lines) if (m := re.match(r"^(\d+\.\d+)\.\s+(\S.*)$", line))]
    out = []
    for n, (i, m) in enumerate(heads):
        end = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        title, j = m.group(2).strip(), i + 1
        while j < end and lines[j].strip() and not lines[j].startswith("    "):  # a title on two lines
            title += " " + lines[j].strip()
            j += 1
        body = " ".join(" ".join(lines[j:end]).split())
        # the next chapter's heading ("2. Getting and installing Debian") ends the last answer
        body = re.split(r"\s\d+\. [A-Z][^.]{3,80}$", body)[0]
        if _words(body) >= MIN_WORDS:
            out.append((m.group(1), title, body))
    return out


def _debian_faq() -> tuple[list, list]:
    from embedsearch.corpus import Document

    sections = _debian_faq_sections()
    documents = [Document(f"debian-faq:{num}", body, {"source": "debian-faq"}) for num, _, body in sections]
    queries = [{"id": f"debian-faq:{num}", "query": q, "relevant": [f"debian-faq:{num}"]} for num, q, _ in sections]
    return documents, queries


# ---- HTML manuals --------------------------------------------------------------------------


class _Text(HTMLParser):
    """Visible text of an HTML page, with the text of each heading (h1-h4) collected apart."""

    def __init__(self, skip_classes: tuple[str, ...] = ()):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.headings: list[tuple[str, str, int]] = []  # (tag, text, position in parts)
        self._heading: list[str] | None = None
        self._tag = ""
        self._skip = 0
        self._skip_tag = ""
        self._skip_classes = skip_classes

    def handle_starttag(self, tag, attrs):
        if self._skip:  # inside a skipped element: only its own tag name nests
            self._skip += tag == self._skip_tag
            return
        cls = (dict(attrs).get("class") or "").split()
        if tag in ("script", "style") or any(c in cls for c in self._skip_classes):
            self._skip, self._skip_tag = 1, tag
            return
        if tag in ("h1", "h2", "h3", "h4"):
            self._heading, self._tag = [], tag

    def handle_endtag(self, tag):
        if self._skip:
            self._skip -= tag == self._skip_tag
            return
        if tag == self._tag and self._heading is not None:
            self.headings.append((tag, " ".join("".join(self._heading).split()), len(self.parts)))
            self._heading = None

    def handle_data(self, data):
        if self._skip:
            return
        if self._heading is not None:
            self._heading.append(data)
        else:
            self.parts.append(data)


def _page(path: Path, skip_classes: tuple[str, ...] = ()) -> _Text:
    p = _Text(skip_classes)
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return p


def _sqlite_faq() -> tuple[list, list]:
    from embedsearch.corpus import Document

    if not (SQLITE_DOC / "faq.html").exists():
        raise SystemExit(f"missing {SQLITE_DOC / 'faq.html'}: apt-get install {PACKAGES}")
    page = (SQLITE_DOC / "faq.html").read_text(encoding="utf-8")
    documents, queries = [], []
    for m in re.finditer(r'<a name="q(\d+)"></a>\s*<p><b>\(\d+\)\s*(.*?)</b></p>(.*?)(?=<a name="q\d+"></a>|$)', page, re.S):
        num, q = m.group(1), " ".join(html.unescape(re.sub(r"<[^>]+>", "", m.group(2))).split())
        body = _Text()
        body.feed(m.group(3))
        text = " ".join("".join(body.parts).split())
        documents.append(Document(f"sqlite-faq:{num}", text, {"source": "sqlite-faq"}))
        queries.append({"id": f"sqlite-faq:{num}", "query": q, "relevant": [f"sqlite-faq:{num}"]})
    return documents, queries


_NUMBER = re.compile(r"^(?:[A-Z]?\d+(?:\.\d+)*\.?|[A-Z]\.\d+(?:\.\d+)*\.?)\s+")


def _pg_sections() -> tuple[list, list]:
    """Every titled section (h2/h3) of the PostgreSQL manual's pages: its text until the next heading."""
    from embedsearch.corpus import Document

    if not PG_DOC.exists():
        raise SystemExit(f"missing {PG_DOC}: apt-get install {PACKAGES}")
    docs: dict[str, tuple[str, str]] = {}
    titles: dict[str, list[str]] = {}
    for path in sorted(PG_DOC.glob("*.html")):
        p = _page(path, skip_classes=("navheader", "navfooter", "toc"))
        heads = [(t, txt, pos) for t, txt, pos in p.headings if t in ("h2", "h3")]
        for n, (_, title, pos) in enumerate(heads):
            end = heads[n + 1][2] if n + 1 < len(heads) else len(p.parts)
            body = " ".join("".join(p.parts[pos:end]).split())
            title = _NUMBER.sub("", title).strip()
            if _words(body) < 40 or not title or _words(body) > 3000:
                continue
            key = f"{path.stem}#{n}"
            docs[key] = (title, body)
            titles.setdefault(title.lower(), []).append(key)
    unique = [k for k, (t, _) in docs.items() if len(titles[t.lower()]) == 1]  # a title naming one section
    chosen = set(sorted(docs, key=_key)[:2500]) | set(sorted(unique, key=_key)[:300])
    targets = sorted(unique, key=_key)[:300]
    documents = [Document(f"pg:{k}", docs[k][1], {"source": "postgresql-manual"}) for k in sorted(chosen)]
    queries = [{"id": f"pg:{k}", "query": docs[k][0], "relevant": [f"pg:{k}"]} for k in targets]
    return documents, queries


def _sqlite_pages() -> tuple[list, list]:
    """SQLite manual pages of 1,000+ words as long documents; each of their h2 headings is a query
    for its page, and the headings are taken out of the page's text."""
    from embedsearch.corpus import Document

    if not SQLITE_DOC.exists():
        raise SystemExit(f"missing {SQLITE_DOC}: apt-get install {PACKAGES}")
    documents, candidates, seen = [], [], {}
    for path in sorted(SQLITE_DOC.glob("*.html")):
        p = _page(path, skip_classes=("nosearch", "menu", "fancy_toc"))
        text = " ".join("".join(p.parts).split())
        if _words(text) < 1000:
            continue
        documents.append(Document(f"sqlite:{path.stem}", text, {"source": "sqlite-manual"}))
        for tag, title, _ in p.headings:
            title = _NUMBER.sub("", title).strip()
            if tag == "h2" and _words(title) >= 2:
                seen.setdefault(title.lower(), set()).add(path.stem)
                candidates.append((title, path.stem))
    unique = {(t, s) for t, s in candidates if len(seen[t.lower()]) == 1}
    chosen = sorted(unique, key=lambda ts: _key(ts[0] + ts[1]))[:300]
    queries = [{"id": f"sqlite:{s}:{_key(t)[:8]}", "query": t, "relevant": [f"sqlite:{s}"]} for t, s in chosen]
    return documents, queries


BUILDERS: dict[str, tuple[str, Callable[[], tuple[list, list]]]] = {
    "gcide": ("term → definition", _gcide),
    "jargon": ("term → glossary entry", _jargon),
    "foldoc-abbrev": ("expansion → abbreviation", _foldoc),
    "debian-faq": ("question → answer", _debian_faq),
    "debian-faq-paraphrase": ("paraphrased question → answer", _debian_faq),
    "sqlite-faq": ("question → answer", _sqlite_faq),
    "pg-sections": ("title → section", _pg_sections),
    "sqlite-pages": ("long document → passage", _sqlite_pages),
}
HAND_WRITTEN = {"debian-faq-paraphrase"}


def queries_path(name: str) -> Path:
    return EVAL_DIR / f"{name}-queries.jsonl"


def load(name: str) -> EvalSet:
    """A set's documents (read from the packages now) and its query file; ``lee`` and
    ``lee-long`` are the existing Lee sets."""
    if name == "lee":
        from embedsearch.datasets import bundled_corpus

        return EvalSet("lee", "news story → related stories", bundled_corpus("lee"), REPO / "corpora" / "lee-queries.jsonl")
    if name == "lee-long":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import lee_long

        return EvalSet("lee-long", "long document → passage", lee_long.documents(), lee_long.QUERIES)
    kind, build = BUILDERS[name]
    return EvalSet(name, kind, build()[0], queries_path(name))


ALL = (*BUILDERS, "lee", "lee-long")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="(re)write the query files under corpora/eval")
    ap.add_argument("--sets", default=",".join(BUILDERS))
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    EVAL_DIR.mkdir(parents=True, exist_ok=True)
    total = 0
    for name in args.sets.split(","):
        kind, build = BUILDERS[name]
        documents, queries = build()
        path = queries_path(name)
        if args.write and name not in HAND_WRITTEN:
            path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries), encoding="utf-8")
        ids = {d.id for d in documents}
        n = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) if path.exists() else 0
        bad = [q for q in (json.loads(x) for x in path.read_text().splitlines() if x.strip())] if path.exists() else []
        unknown = sum(1 for q in bad for r in q["relevant"] if r not in ids)
        words = sum(_words(d.text) for d in documents)
        print(f"{name:24} {kind:30} {len(documents):6} documents {words:9} words {n:5} queries  {unknown} unknown ids")
        total += n
    print(f"{total} queries in all")


if __name__ == "__main__":
    main()
