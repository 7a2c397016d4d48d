"""Intrinsic word benchmarks: word-pair similarity (WordSim-353, SimLex-999) and analogies
(Google's questions-words), read from the test data gensim's wheel installs.

Pairs or questions with a word the model lacks are skipped and reported as coverage, as
gensim and the original word2vec tools do; a FastText model has no missing words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.datasets import gensim_data
from embedsearch.wordvectors import WordVectors

#: benchmark name -> file under gensim.test.utils.datapath
WORD_SIMILARITY_SETS = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}
ANALOGY_SETS = {"google": "questions-words.txt"}


def read_word_pairs(path: Path) -> list[tuple[str, str, float]]:
    """``word1<TAB>word2<TAB>score`` lines; ``#`` lines are comments."""
    pairs = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        a, b, score = line.split("\t")[:3]
        pairs.append((a.lower(), b.lower(), float(score)))
    return pairs


def pair_similarities(wv: WordVectors, pairs: list[tuple[str, str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of each pair (NaN where a word is unknown and the model has no
    subwords) and whether both words are in the model's own vocabulary."""
    sims = np.full(len(pairs), np.nan)
    known = np.zeros(len(pairs), dtype=bool)
    for i, (a, b, _) in enumerate(pairs):
        known[i] = a in wv and b in wv
        if wv.has_subwords or known[i]:
            sims[i] = wv.similarity(a, b)
    return sims, known


def word_similarity(wv: WordVectors, pairs: list[tuple[str, str, float]], *, resamples: int = 0, seed: int = 0) -> dict[str, Any]:
    """Spearman and Pearson correlation between cosine similarities and human scores.

    Pairs with a word outside the vocabulary are skipped, except for models with subwords,
    which answer every pair; ``in_vocab_pairs`` and ``spearman_in_vocab`` report the pairs
    whose words are all in the model's own vocabulary, so a subword model's advantage on
    unseen words is visible as such. With ``resamples``, a bootstrap interval over pairs
    is added (``spearman_low``/``spearman_high``).
    """
    sims, known = pair_similarities(wv, pairs)
    return correlate_pairs(sims, known, np.array([score for _, _, score in pairs]), resamples=resamples, seed=seed)


def correlate_pairs(
    sims: np.ndarray, known: np.ndarray, human: np.ndarray, *, resamples: int = 0, seed: int = 0
) -> dict[str, Any]:
    """:func:`word_similarity` from the output of :func:`pair_similarities` and the human scores."""
    from scipy.stats import pearsonr

    from embedsearch.evaluation.metrics import bootstrap_indices, bootstrap_spearman, percentile_interval, spearman

    covered = ~np.isnan(sims)
    m, h = sims[covered], np.asarray(human, dtype=np.float64)[covered]
    mask = known[covered]
    n = len(sims)
    out: dict[str, Any] = {"pairs": n, "covered": int(covered.sum()), "coverage": int(covered.sum()) / max(1, n)}
    out["in_vocab_pairs"] = int(mask.sum())
    out["oov_rate"] = 1 - out["in_vocab_pairs"] / max(1, n)
    out["spearman"] = out["pearson"] = out["spearman_in_vocab"] = None
    if m.size >= 3:
        out["spearman"] = spearman(m, h)
        out["pearson"] = float(pearsonr(m, h).statistic)
        if resamples:
            rhos = bootstrap_spearman(m, h, bootstrap_indices(m.size, resamples, seed))
            out["spearman_low"], out["spearman_high"] = percentile_interval(rhos)
    if mask.sum() >= 3:
        out["spearman_in_vocab"] = spearman(m[mask], h[mask])
    return out


def read_analogies(path: Path) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """Sections (``: name`` lines) of four-word questions a b c d (a : b :: c : d)."""
    sections: list[tuple[str, list]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            sections.append((line[1:].strip(), []))
        elif line.strip():
            words = line.lower().split()
            if len(words) == 4 and sections:
                sections[-1][1].append(tuple(words))
    return sections


def analogy_accuracy(
    wv: WordVectors, sections, *, restrict_vocab: int = 30000, method: str = "3cosadd", batch: int = 512
) -> dict[str, Any]:
    """Accuracy of ``b - a + c`` on questions whose four words are among the ``restrict_vocab``
    most frequent (the convention of word2vec's compute-accuracy and gensim)."""
    n = min(restrict_vocab, len(wv))
    unit = wv.unit[:n]
    index = {w: i for i, w in enumerate(wv.words[:n])}
    per_section = []
    correct_total = covered_total = total = 0
    for name, questions in sections:
        total += len(questions)
        rows = [[index[w] for w in q] for q in questions if all(w in index for w in q)]
        correct = 0
        for s in range(0, len(rows), batch):
            q = np.asarray(rows[s : s + batch], dtype=np.int64)
            if method == "3cosmul":
                sims = [(unit @ unit[q[:, col]].T).T for col in range(3)]
                sa, sb, sc = ((x + 1.0) / 2.0 for x in sims)
                scores = sb * sc / (sa + 1e-3)
            else:
                target = unit[q[:, 1]] - unit[q[:, 0]] + unit[q[:, 2]]
                target /= np.maximum(np.linalg.norm(target, axis=1, keepdims=True), 1e-12)
                scores = target @ unit.T
            r = np.arange(q.shape[0])
            for col in range(3):
                scores[r, q[:, col]] = -np.inf
            correct += int((scores.argmax(axis=1) == q[:, 3]).sum())
        per_section.append({"section": name, "questions": len(questions), "covered": len(rows), "correct": correct})
        correct_total += correct
        covered_total += len(rows)
    return {
        "accuracy": correct_total / covered_total if covered_total else None,
        "correct": correct_total,
        "covered": covered_total,
        "questions": total,
        "coverage": covered_total / max(1, total),
        "restrict_vocab": n,
        "method": method,
        "sections": per_section,
    }


def intrinsic_report(wv: WordVectors, *, restrict_vocab: int = 30000) -> dict[str, Any]:
    """WordSim-353 and SimLex-999 Spearman plus Google analogy accuracy, with coverage."""
    out: dict[str, Any] = {}
    for name, file in WORD_SIMILARITY_SETS.items():
        out[name] = word_similarity(wv, read_word_pairs(gensim_data(file)))
    result = analogy_accuracy(wv, read_analogies(gensim_data(ANALOGY_SETS["google"])), restrict_vocab=restrict_vocab)
    result.pop("sections")
    out["google_analogy"] = result
    return out
