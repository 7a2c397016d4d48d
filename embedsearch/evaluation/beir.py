"""A BEIR-format directory as a corpus and judged queries (what BEIR's ``GenericDataLoader`` reads):

    corpus.jsonl       {"_id": "d1", "title": "...", "text": "..."} per line
    queries.jsonl      {"_id": "q1", "text": "..."} per line
    qrels/<split>.tsv  query-id <TAB> corpus-id <TAB> score, after a header line

A document's text is its title and text joined by a space, as BEIR's and MTEB's sentence-model
wrappers join them. Scores are integer grades: above 0 is relevant, and nDCG uses the grade as
the gain (see :mod:`embedsearch.evaluation.trec`). Queries the split does not judge are skipped,
as BEIR and MTEB skip them; a judged query with no relevant document counts, scoring 0, as in
trec_eval. Everything is checked before anything is embedded: a missing file or split, a
malformed line, a repeated id, and judgements that name a query or document the files do not
hold are :class:`~embedsearch.errors.CorpusError` with counts and the first few cases.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedsearch.corpus import Document
from embedsearch.errors import CorpusError, InvalidArgument
from embedsearch.evaluation.query_sets import Query

CORPUS, QUERIES, QRELS = "corpus.jsonl", "queries.jsonl", "qrels"
SHOWN = 3  # cases named in an error message
_SPLIT_RE = re.compile(r"[A-Za-z0-9][\w.-]*")


@dataclass
class BeirSet:
    """A BEIR directory read for one split."""

    path: Path
    split: str
    documents: list[Document]
    queries: list[Query]  # the judged queries, in queries.jsonl's order
    skipped: list[str] = field(default_factory=list)  # query ids the split does not judge
    fingerprint: str = ""  # sha256 over the three files' bytes

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def without_relevant(self) -> int:
        """Judged queries none of whose judgements is above 0."""
        return sum(1 for q in self.queries if not q.relevant)

    def notes(self) -> list[str]:
        total = len(self.queries) + len(self.skipped)
        out = []
        if self.skipped:
            n = len(self.skipped)
            out.append(
                f"{n} of {total} queries {'has' if n == 1 else 'have'} no judgements in {QRELS}/{self.split}.tsv: skipped, "
                f"as BEIR and MTEB skip them (first: {', '.join(self.skipped[:SHOWN])})"
            )
        if self.without_relevant:
            n = self.without_relevant
            out.append(
                f"{n} judged {'query has' if n == 1 else 'queries have'} no relevant document (no score above 0): "
                "counted, scoring 0 on every metric, as in trec_eval, BEIR and MTEB"
            )
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "split": self.split,
            "documents": len(self.documents),
            "queries": len(self.queries),
            "skipped_queries": len(self.skipped),
            "queries_without_relevant": self.without_relevant,
            "judgements": sum(len(q.grades or {}) for q in self.queries),
            "fingerprint": self.fingerprint,
        }


def splits(path: Path) -> list[str]:
    """The splits a BEIR directory judges: the names of ``qrels/*.tsv``."""
    return sorted(p.stem for p in (Path(path) / QRELS).glob("*.tsv"))


def load_beir(path: Path | str, split: str = "test") -> BeirSet:
    """Read and check a BEIR directory for ``split`` (see the module docstring)."""
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(f"{path}: not a directory (a BEIR set is a directory with {CORPUS}, {QUERIES} and {QRELS}/)")
    if not _SPLIT_RE.fullmatch(split):
        raise InvalidArgument(f"split {split!r} is not a file name under {QRELS}/")
    missing = [name for name in (CORPUS, QUERIES, QRELS) if not (path / name).exists()]
    if missing:
        raise CorpusError(f"{path} is not a BEIR directory: no {', no '.join(missing)}")
    qrels_file = path / QRELS / f"{split}.tsv"
    if not qrels_file.is_file():
        have = splits(path)
        raise InvalidArgument(
            f"{path} has no {QRELS}/{split}.tsv; its splits: {', '.join(have) or f'none (no .tsv files in {QRELS}/)'}"
        )
    digest = hashlib.sha256()
    documents = _read_documents(path / CORPUS, digest)
    texts = _read_queries(path / QUERIES, digest)
    qrels = _read_qrels(qrels_file, digest)
    _check_ids(qrels, set(texts), {d.id for d in documents}, split)
    queries = [
        Query(qid, text, {d for d, g in qrels[qid].items() if g > 0}, grades=qrels[qid])
        for qid, text in texts.items()
        if qid in qrels
    ]
    if not queries:
        raise CorpusError(f"{qrels_file}: no judgements")
    skipped = [qid for qid in texts if qid not in qrels]
    return BeirSet(path, split, documents, queries, skipped, digest.hexdigest())


class _Problems:
    """Malformed lines of one file, counted, the first few kept for the message."""

    def __init__(self, path: Path) -> None:
        self.path, self.count, self.first = path, 0, []

    def add(self, n: int, message: str) -> None:
        self.count += 1
        if len(self.first) < SHOWN:
            self.first.append(f"line {n}: {message}")

    def raise_any(self) -> None:
        if self.count:
            s = "" if self.count == 1 else "s"
            raise CorpusError(f"{self.path}: {self.count} malformed line{s} (first: {'; '.join(self.first)})")


def _lines(path: Path, digest, problems: _Problems) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines, hashing the bytes as they are read."""
    digest.update(path.name.encode() + b"\0")
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            digest.update(raw)
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                problems.add(n, f"not UTF-8 ({exc.reason} at byte {exc.start})")
                continue
            if line.strip():
                yield n, line


def _records(path: Path, digest, problems: _Problems) -> Iterator[tuple[int, dict, str | None]]:
    """(line number, object, its id) of a jsonl file; lines that are not an object with an id are problems."""
    for n, line in _lines(path, digest, problems):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.add(n, f"not JSON ({exc.msg})")
            continue
        if not isinstance(rec, dict):
            problems.add(n, "expected an object with '_id' and 'text'")
            continue
        rid = rec.get("_id")
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)
        if not isinstance(rid, str) or not rid.strip():
            problems.add(n, "'_id' must be a non-empty string")
            continue
        yield n, rec, rid


def _repeats(ids: list[str], path: Path, what: str) -> None:
    seen: set[str] = set()
    repeated = list(dict.fromkeys(i for i in ids if i in seen or seen.add(i)))
    if repeated:
        n = len(repeated)
        raise CorpusError(f"{path}: {n} {what} {'id repeats' if n == 1 else 'ids repeat'} (first: {', '.join(repeated[:SHOWN])})")


def _read_documents(path: Path, digest) -> list[Document]:
    problems = _Problems(path)
    docs = []
    for n, rec, rid in _records(path, digest, problems):
        title, text = rec.get("title") or "", rec.get("text")
        if not isinstance(text, str):
            problems.add(n, "'text' must be a string")
        elif not isinstance(title, str):
            problems.add(n, "'title' must be a string")
        elif not (title.strip() or text.strip()):
            problems.add(n, "no title and no text")
        else:
            # MTEB's join (mteb/_create_dataloaders.py): title and text, stripped, when there is a title
            docs.append(Document(rid, f"{title} {text}".strip() if title else text, {"title": title} if title else {}))
    problems.raise_any()
    if not docs:
        raise CorpusError(f"{path}: no documents")
    _repeats([d.id for d in docs], path, "document")
    return docs


def _read_queries(path: Path, digest) -> dict[str, str]:
    problems = _Problems(path)
    ids, texts = [], {}
    for n, rec, rid in _records(path, digest, problems):
        text = rec.get("text")
        if not isinstance(text, str) or not text.strip():
            problems.add(n, "'text' must be a non-empty string")
            continue
        ids.append(rid)
        texts[rid] = text
    problems.raise_any()
    if not texts:
        raise CorpusError(f"{path}: no queries")
    _repeats(ids, path, "query")
    return texts


def _read_qrels(path: Path, digest) -> dict[str, dict[str, int]]:
    """query id -> {document id: grade}. The first line is a header (BEIR skips it) unless its
    score is an integer; a pair judged twice with different grades is a problem."""
    problems = _Problems(path)
    qrels: dict[str, dict[str, int]] = {}
    for n, line in _lines(path, digest, problems):
        cells = line.rstrip("\r\n").split("\t")
        if n == 1 and (len(cells) < 3 or not _is_int(cells[2])):
            continue  # the header: query-id corpus-id score
        if len(cells) != 3:
            problems.add(n, f"expected 3 tab-separated fields (query-id, corpus-id, score), got {len(cells)}")
            continue
        qid, doc, score = (c.strip() for c in cells)
        if not qid or not doc:
            problems.add(n, "empty query-id or corpus-id")
        elif not _is_int(score):
            problems.add(n, f"score {score!r} is not an integer")
        elif qrels.get(qid, {}).get(doc, int(score)) != int(score):
            problems.add(n, f"{qid} {doc} judged again with another score ({qrels[qid][doc]}, then {score})")
        else:
            qrels.setdefault(qid, {})[doc] = int(score)
    problems.raise_any()
    return qrels


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _check_ids(qrels: dict[str, dict[str, int]], query_ids: set[str], doc_ids: set[str], split: str) -> None:
    """Judgements must name queries and documents the files hold: a typo would silently lower a score."""
    where = f"{QRELS}/{split}.tsv"
    unknown_q = [q for q in qrels if q not in query_ids]
    unknown_d = list(dict.fromkeys(d for judged in qrels.values() for d in judged if d not in doc_ids))
    problems = []
    for ids, what, file in ((unknown_q, "query", QUERIES), (unknown_d, "corpus", CORPUS)):
        if ids:
            s = "" if len(ids) == 1 else "s"
            problems.append(f"{where} names {len(ids)} {what} id{s} not in {file} (first: {', '.join(ids[:SHOWN])})")
    if problems:
        raise CorpusError("; ".join(problems))
