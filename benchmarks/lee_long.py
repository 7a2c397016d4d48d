"""The long-document set: Lee stories joined into documents of 2,000+ words whose answers lie
past the first 256 tokens (issue 15's passage benchmark).

    python benchmarks/lee_long.py            # (re)writes corpora/lee-long.jsonl and corpora/lee-long-queries.jsonl

How it is built, deterministically, from the bundled Lee corpus and ``corpora/lee-queries.jsonl``:

1. Stories relevant to some query are grouped by the first query (in file order) that judges
   them relevant; the other stories are fillers, kept in corpus order.
2. Each long document takes, in this order: fillers until it holds 400 words (about 520 MiniLM
   word pieces, twice its window), the relevant stories of the next two query groups, then
   fillers until it holds 2,000 words. Fillers are used once; when they run out, the last
   documents are cut short of 2,000 words only if need be, never of the 400-word lead.
3. A query's relevant long documents are those holding any of its relevant stories. Every answer
   therefore starts past the first 400 words: a model that reads only its window cannot see it.

``corpora/lee-long.jsonl`` records which stories make each document (``parts``, in order); like
every corpus here, the texts are read from the installed gensim wheel, not copied (they are
joined with a blank line between stories by :func:`documents`).
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYOUT = REPO / "corpora" / "lee-long.jsonl"
QUERIES = REPO / "corpora" / "lee-long-queries.jsonl"
LEAD_WORDS, DOC_WORDS, GROUPS_PER_DOC = 400, 2000, 2


def build() -> tuple[list[dict], list[dict]]:
    from embedsearch.datasets import bundled_corpus

    stories = {d.id: d for d in bundled_corpus("lee")}
    order = list(stories)
    queries = [json.loads(line) for line in (REPO / "corpora" / "lee-queries.jsonl").read_text().splitlines() if line.strip()]
    owner: dict[str, str] = {}
    for q in queries:
        for sid in q["relevant"]:
            owner.setdefault(sid, q["id"])
    groups = [[sid for sid in order if owner.get(sid) == q["id"]] for q in queries]
    groups = [g for g in groups if g]
    fillers = [sid for sid in order if sid not in owner]
    words = {sid: len(stories[sid].text.split()) for sid in order}

    layout = []
    for start in range(0, len(groups), GROUPS_PER_DOC):
        parts: list[str] = []
        if not _fill(parts, fillers, words, LEAD_WORDS):
            break
        for g in groups[start : start + GROUPS_PER_DOC]:
            parts += g
        _fill(parts, fillers, words, DOC_WORDS)
        layout.append({"id": f"lee-long-{len(layout)}", "parts": parts})
    where = {sid: doc["id"] for doc in layout for sid in doc["parts"]}
    long_queries = []
    for q in queries:
        relevant = sorted({where[sid] for sid in q["relevant"] if sid in where}, key=lambda i: int(i.rsplit("-", 1)[1]))
        if relevant:
            long_queries.append({"id": q["id"], "query": q["query"], "relevant": relevant})
    return layout, long_queries


def _fill(parts: list[str], fillers: list[str], words: dict[str, int], target: int) -> bool:
    """Append fillers to ``parts`` until they hold ``target`` words (False: fillers ran out)."""
    while sum(words[p] for p in parts) < target:
        if not fillers:
            return False
        parts.append(fillers.pop(0))
    return True


def documents(layout_path: Path = LAYOUT):
    """The long documents, assembled from the bundled Lee corpus."""
    from embedsearch.corpus import Document
    from embedsearch.datasets import bundled_corpus

    stories = {d.id: d for d in bundled_corpus("lee")}
    out = []
    for line in layout_path.read_text().splitlines():
        doc = json.loads(line)
        out.append(Document(doc["id"], "\n\n".join(stories[p].text.strip() for p in doc["parts"]), {"parts": len(doc["parts"])}))
    return out


def main() -> None:
    layout, queries = build()
    LAYOUT.write_text("".join(json.dumps(d) + "\n" for d in layout))
    QUERIES.write_text("".join(json.dumps(q) + "\n" for q in queries))
    docs = documents()
    lengths = sorted(len(d.text.split()) for d in docs)
    median = lengths[len(lengths) // 2]
    print(f"{len(docs)} documents, {lengths[0]}-{lengths[-1]} words (median {median}); {len(queries)} queries")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(REPO))
    main()
