"""The real bundled MiniLM model, loaded from the installed package (no network)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedsearch.demo import lee_documents
from embedsearch.search import search

pytestmark = pytest.mark.slow  # loads the real MiniLM model


def test_embeddings_are_normalised_float32_and_match_sentence_transformers(minilm):
    texts = ["The cat sits on the mat.", "A feline rests on a rug.", "Stock markets fell sharply."]
    v = minilm.embed(texts)
    assert v.dtype == np.float32 and v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    direct = minilm.model.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(v, direct, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # paraphrase closer than an unrelated sentence
    assert minilm.fingerprint == load_again_fingerprint()


def load_again_fingerprint():
    from embedsearch.embedders import model_fingerprint

    return model_fingerprint("minilm")


def test_lee_search_finds_the_right_stories(store, minilm):
    coll = store.create("lee", minilm)
    docs = list(lee_documents())[:120]
    coll.add_documents(docs, minilm)
    hits = search(coll, ["bushfires threaten homes", "Test cricket against South Africa"], 3, embedder=minilm)
    assert any("fire" in h.text.lower() for h in hits[0][:1])
    assert "cricket" in hits[1][0].text.lower() or "test" in hits[1][0].text.lower()
    assert coll.verify().ok  # including the fingerprint of the model files on disk


def test_demo_command_end_to_end(cli):
    r = cli("demo", "--json", "-k", "2")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["add"]["added"] == 350
    first = out["queries"][0]
    assert first["query"].startswith("bushfires") and "fire" in first["hits"][0]["text"].lower()
    filtered = out["queries"][-1]
    assert filtered["where"] == {"split": "test"} and all(h["metadata"]["split"] == "test" for h in filtered["hits"])
    again = json.loads(cli("demo", "--json").output)
    assert again["add"]["unchanged"] == 350 and again["add"]["added"] == 0
