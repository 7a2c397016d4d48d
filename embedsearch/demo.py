"""The demo: index the Lee news corpus (shipped inside gensim's wheel) and run sample queries."""

from __future__ import annotations

from dataclasses import dataclass

from embedsearch.datasets import lee_documents
from embedsearch.store import AddResult, Collection, Hit, Store

DEMO_COLLECTION = "lee-demo"
DEMO_QUERIES: list[tuple[str, dict | None]] = [
    ("bushfires threaten homes near Sydney", None),
    ("central bank raises interest rates", None),
    ("Test cricket match against South Africa", None),
    ("asylum seekers in detention centres", {"split": "test"}),
]


@dataclass
class DemoResult:
    collection: Collection
    added: AddResult
    queries: list[tuple[str, dict | None, list[Hit]]]


def run_demo(
    store: Store,
    model: str = "minilm",
    name: str = DEMO_COLLECTION,
    k: int = 3,
    progress: bool = False,
    device: str | None = None,
) -> DemoResult:
    """Create (or reuse) the demo collection, add the Lee corpus, run the sample queries."""
    from embedsearch.embedders import load_embedder
    from embedsearch.search import search

    embedder = load_embedder(model, device=device)
    coll = store.open(name) if store.exists(name) else store.create(name, embedder, "auto")
    docs = list(lee_documents())
    added = coll.add_documents(docs, embedder, progress=progress, total=len(docs))
    results = []
    for query, where in DEMO_QUERIES:
        hits = search(coll, [query], k, where=where, embedder=embedder)[0]
        results.append((query, where, hits))
    return DemoResult(coll, added, results)
