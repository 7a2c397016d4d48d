"""The queries a comparison measures retrieval on: a labelled query file, or documents that share
a metadata label (label mode), and the fingerprints that pin a report to its corpus and queries.
A BEIR set's judged queries (:mod:`.beir`) are :class:`Query` objects too, with their grades."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedsearch.corpus import Document
from embedsearch.errors import CorpusError


@dataclass
class Query:
    """A query, the ids relevant to it, and (label mode) the document it came from, which it
    must not retrieve."""

    id: str
    text: str
    relevant: set[str]
    exclude: str | None = None
    doc_index: int | None = None  # label mode: the query is this document's own embedding
    grades: dict[str, int] | None = None  # graded judgements (a BEIR set), 0 and below not relevant


def fingerprint_documents(docs: Sequence[Document]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(d.id.encode() + b"\0" + d.text.encode() + b"\0")
    return h.hexdigest()


def fingerprint_queries(queries: Sequence[Query]) -> str:
    rows = [[q.id, q.text, sorted(q.relevant)] + ([sorted(q.grades.items())] if q.grades is not None else []) for q in queries]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def read_queries(path: Path, doc_ids: set[str]) -> list[Query]:
    """A labelled query set: one ``{"query": ..., "relevant": [ids], "id": optional}`` per line.
    Every relevant id must be in the corpus, so a typo cannot silently lower a score."""
    queries: list[Query] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise CorpusError(f"{where}: expected an object with 'query' and 'relevant'")
        text, rel = rec.get("query"), rec.get("relevant")
        if not isinstance(text, str) or not text.strip():
            raise CorpusError(f"{where}: 'query' must be a non-empty string")
        if not isinstance(rel, list) or not rel or not all(isinstance(r, str | int) for r in rel):
            raise CorpusError(f"{where}: 'relevant' must be a non-empty list of document ids")
        rel_ids = {str(r) for r in rel}
        unknown = sorted(rel_ids - doc_ids)
        if unknown:
            shown = ", ".join(unknown[:5]) + (" …" if len(unknown) > 5 else "")
            raise CorpusError(f"{where}: relevant ids not in the corpus: {shown}")
        queries.append(Query(str(rec.get("id", f"q{n}")), text, rel_ids))
    if not queries:
        raise CorpusError(f"{path}: no queries")
    return queries


def label_queries(docs: Sequence[Document], label_field: str, *, max_queries: int = 500, seed: int = 0) -> list[Query]:
    """Every document (or a seeded sample) queries the others; those sharing its label are relevant."""
    labels = []
    for d in docs:
        value = d.metadata.get(label_field)
        if value is None or value == "":
            raise CorpusError(f"document {d.id} has no {label_field!r} metadata; every document needs a label")
        labels.append(str(value))
    by_label: dict[str, set[str]] = {}
    for d, lab in zip(docs, labels, strict=True):
        by_label.setdefault(lab, set()).add(d.id)
    if len(by_label) < 2:
        raise CorpusError(f"--label-field {label_field}: all documents share one label; retrieval needs two or more")
    candidates = [i for i, lab in enumerate(labels) if len(by_label[lab]) > 1]
    if len(candidates) > max_queries:
        candidates = sorted(np.random.default_rng(seed).choice(candidates, max_queries, replace=False).tolist())
    return [
        Query(docs[i].id, docs[i].text, by_label[labels[i]] - {docs[i].id}, exclude=docs[i].id, doc_index=i) for i in candidates
    ]


def document_queries(docs: Sequence[Document], sample: list[int]) -> list[Query]:
    """Documents as queries for their own neighbours (agreement without a query set)."""
    return [Query(docs[i].id, docs[i].text, {docs[i].id}, exclude=docs[i].id, doc_index=i) for i in sample]
