"""``embedsearch evaluate``: word benchmarks and Lee document similarity."""

from __future__ import annotations

import json

import numpy as np

from embedsearch.evaluation.docsim import lee_document_similarity, lee_human_similarities, lee_test_texts


def test_lee_ratings_are_a_symmetric_matrix():
    m = lee_human_similarities()
    assert m.shape == (50, 50) and np.allclose(m, m.T) and np.all(np.diag(m) == 1)
    assert len(lee_test_texts()) == 50
    assert m[0, 1] == 0.3 and m[0, 32] == 0.96  # values from the file's first row


def test_lee_similarity_of_a_perfect_and_a_lexical_model(hashing):
    class Oracle:
        """Embeds document i as the i-th row of a factor of the human matrix: cosine = ratings."""

        name = spec = fingerprint = "oracle"
        dim = 50

        def embed(self, texts):
            m = lee_human_similarities()
            w, v = np.linalg.eigh(m)
            factor = v * np.sqrt(np.clip(w, 0, None))
            index = {t: i for i, t in enumerate(lee_test_texts())}
            return np.stack([factor[index[t]] for t in texts])

    perfect = lee_document_similarity(Oracle())
    assert perfect["pairs"] == 1225 and perfect["pearson"] > 0.9
    lexical = lee_document_similarity(hashing)
    assert 0 < lexical["pearson"] < perfect["pearson"]


def test_evaluate_cli(cli, tmp_path):
    from embedsearch.models import import_vectors

    words = ["king", "queen", "man", "woman", "tiger", "cat", "love", "sex", "car", "automobile"]
    rng = np.random.default_rng(0)
    src = tmp_path / "v.txt"
    src.write_text("".join(f"{w} {' '.join(f'{x:.4f}' for x in rng.standard_normal(8))}\n" for w in words))
    import_vectors(src, "glove", tmp_path / "wm")
    r = cli("evaluate", str(tmp_path / "wm"), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["kind"] == "word vectors"
    assert data["metrics"]["wordsim353"]["covered"] >= 3 and data["metrics"]["wordsim353"]["coverage"] < 0.1
    assert {"google_analogy", "lee_docsim_mean", "lee_docsim_sif"} <= set(data["metrics"])
    r = cli("evaluate", "hashing")
    assert r.exit_code == 0 and "lee_docsim" in r.output and "no vocabulary" in r.output
    r = cli("evaluate", "no/such/model")
    assert r.exit_code == 2 and "unknown model" in r.output
