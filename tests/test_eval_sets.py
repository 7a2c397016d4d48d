"""The evaluation sets of benchmarks/eval_sets.py: rebuilt from the installed Debian packages,
they give exactly the committed query files, and every label names a document of its set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import eval_sets  # noqa: E402

NEEDS = {
    "gcide": ["/usr/share/dictd/gcide.dict.dz"],
    "jargon": ["/usr/share/dictd/jargon.dict.dz"],
    "foldoc-abbrev": ["/usr/share/dictd/foldoc.dict.dz"],
    "debian-faq": [str(eval_sets.DEBIAN_FAQ)],
    "debian-faq-paraphrase": [str(eval_sets.DEBIAN_FAQ)],
    "sqlite-faq": [str(eval_sets.SQLITE_DOC / "faq.html")],
    "pg-sections": [str(eval_sets.PG_DOC)],
    "sqlite-pages": [str(eval_sets.SQLITE_DOC)],
}


@pytest.mark.parametrize("name", list(eval_sets.BUILDERS))
def test_a_rebuilt_set_matches_its_query_file(name):
    missing = [p for p in NEEDS[name] if not Path(p).exists()]
    if missing:
        pytest.skip(f"apt-get install {eval_sets.PACKAGES} (missing {missing[0]})")
    documents, queries = eval_sets.BUILDERS[name][1]()
    committed = [json.loads(line) for line in eval_sets.queries_path(name).read_text().splitlines() if line.strip()]
    ids = [d.id for d in documents]
    assert len(ids) == len(set(ids)) and all(d.text.strip() for d in documents)
    assert all(r in set(ids) for q in committed for r in q["relevant"]), "a label names no document"
    assert len({q["id"] for q in committed}) == len(committed)
    if name in eval_sets.HAND_WRITTEN:
        assert len(committed) >= 30
    else:
        assert queries == committed  # deterministic: the packages' text gives the same labels


def test_the_sets_hold_over_a_thousand_queries_of_several_kinds():
    files = [eval_sets.queries_path(n) for n in eval_sets.BUILDERS]
    counts = [sum(1 for line in f.read_text().splitlines() if line.strip()) for f in files]
    assert sum(counts) >= 1000 and min(counts) >= 27
    assert len({kind for kind, _ in eval_sets.BUILDERS.values()}) >= 6
