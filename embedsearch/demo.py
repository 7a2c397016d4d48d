"""The demo: index the Lee news corpus (shipped inside gensim's wheel) and run sample queries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from embedsearch.corpus import Document
from embedsearch.errors import CorpusError
from embedsearch.store.collection import AddResult, Collection, Hit, Store

DEMO_COLLECTION = "lee-demo"
DEMO_QUERIES: list[tuple[str, dict | None]] = [
    ("bushfires threaten homes near Sydney", None),
    ("central bank raises interest rates", None),
    ("Test cricket match against South Africa", None),
    ("asylum seekers in detention centres", {"split": "test"}),
]


def gensim_data(name: str) -> Path:
    """A file from gensim's bundled test data (the wheel ships it; nothing is downloaded)."""
    from gensim.test.utils import datapath

    path = Path(datapath(name))
    if not path.exists():
        raise CorpusError(f"gensim's bundled data file {name} is missing; reinstall gensim")
    return path


def lee_documents() -> Iterator[Document]:
    """The Lee corpus: 300 background news stories and the 50 rated test stories."""
    for split, filename in (("background", "lee_background.cor"), ("test", "lee.cor")):
        with open(gensim_data(filename), encoding="latin-1") as f:
            for n, line in enumerate(f, start=1):
                text = line.strip()
                if text:
                    yield Document(f"lee-{split}-{n}", text, {"source": "lee", "split": split, "n": n})


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
