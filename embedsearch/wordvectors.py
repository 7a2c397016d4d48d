"""Word vectors in memory: lookup, nearest words and analogies.

:class:`WordVectors` holds a vocabulary and a float32 matrix (word2vec, GloVe, imported
vectors); :class:`FastTextVectors` adds subword composition, so every word has a vector.
Neighbours are by cosine similarity over the vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embedsearch.errors import InvalidArgument, OutOfVocabulary

ANALOGY_METHODS = ("3cosadd", "3cosmul")
EOS = "</s>"


@dataclass
class Neighbour:
    word: str
    score: float

    def to_dict(self) -> dict:
        return {"word": self.word, "score": self.score}


class WordVectors:
    """A vocabulary (most frequent first, when counts are known) and its vectors."""

    has_subwords = False

    def __init__(self, words: Sequence[str], vectors: np.ndarray, counts: np.ndarray | None = None) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise InvalidArgument(f"{len(words)} words but a vectors array of shape {vectors.shape}")
        self.words = list(words)
        self.vectors = vectors
        self.counts = None if counts is None else np.asarray(counts, dtype=np.int64)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise InvalidArgument("the vocabulary repeats a word")
        self._unit: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    @property
    def unit(self) -> np.ndarray:
        """Unit-length rows (zero rows stay zero), computed once."""
        if self._unit is None:
            from embedsearch.embedders.base import normalize_rows

            self._unit = normalize_rows(self.vectors.copy())
        return self._unit

    def vector(self, word: str) -> np.ndarray:
        """The vector of ``word``; raises :class:`OutOfVocabulary` when there is none."""
        i = self.index.get(word)
        if i is None:
            raise OutOfVocabulary(self._oov_message(word))
        return self.vectors[i]

    def _oov_message(self, word: str) -> str:
        return (
            f"{word!r} is not in the model's vocabulary of {len(self):,} words, and this model has no subword "
            "information to build a vector for it (FastText models do); words are matched after lower-casing "
            "and tokenising"
        )

    def _unit_vector(self, word: str) -> np.ndarray:
        v = np.asarray(self.vector(word), dtype=np.float32)
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v

    def similar(self, query: str | np.ndarray, k: int = 10, *, exclude: Sequence[str] = ()) -> list[Neighbour]:
        """The ``k`` vocabulary words closest to a word or a vector, by cosine similarity."""
        if k < 1:
            raise InvalidArgument("k must be at least 1")
        if isinstance(query, str):
            exclude = (*exclude, query)
            q = self._unit_vector(query)
        else:
            q = np.asarray(query, dtype=np.float32)
            if q.shape != (self.dim,):
                raise InvalidArgument(f"query vector has shape {q.shape}, expected ({self.dim},)")
            n = float(np.linalg.norm(q))
            q = q / n if n > 0 else q
        scores = self.unit @ q
        return self._top(scores, k, exclude)

    def _top(self, scores: np.ndarray, k: int, exclude: Sequence[str]) -> list[Neighbour]:
        banned = [self.index[w] for w in exclude if w in self.index]
        scores = scores.astype(np.float64, copy=True)
        scores[banned] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Neighbour(self.words[i], float(scores[i])) for i in top]

    def analogy(self, a: str, b: str, c: str, k: int = 1, *, method: str = "3cosadd") -> list[Neighbour]:
        """Words d with a : b :: c : d, read as ``a - b + c`` (``king man woman`` -> queen).

        ``3cosadd`` ranks by cos(d, a - b + c) (Mikolov et al. 2013); ``3cosmul`` by
        cos(d, a) cos(d, c) / (cos(d, b) + 0.001) with cosines shifted to [0, 1] (Levy and
        Goldberg 2014). The three query words are never answers.
        """
        if method not in ANALOGY_METHODS:
            raise InvalidArgument(f"unknown analogy method {method!r}; choose one of {', '.join(ANALOGY_METHODS)}")
        va, vb, vc = (self._unit_vector(w) for w in (a, b, c))
        if method == "3cosadd":
            target = va - vb + vc
            n = float(np.linalg.norm(target))
            scores = self.unit @ (target / n if n > 0 else target)
        else:
            sa, sb, sc = ((self.unit @ v + 1.0) / 2.0 for v in (va, vb, vc))
            scores = sa * sc / (sb + 1e-3)
        return self._top(scores, k, (a, b, c))

    def similarity(self, w1: str, w2: str) -> float:
        return float(self._unit_vector(w1) @ self._unit_vector(w2))


class FastTextVectors(WordVectors):
    """A fastText ``.bin`` model: vocabulary vectors plus vectors for any word from its
    character n-grams."""

    has_subwords = True

    def __init__(self, model) -> None:  # a fasttext._FastText
        self.model = model
        words, freqs = model.get_words(include_freq=True)
        # fastText's end-of-line token is part of its vocabulary, not a word anyone asks for
        keep = [i for i, w in enumerate(words) if w != EOS]
        words, freqs = [words[i] for i in keep], [freqs[i] for i in keep]
        # get_word_vector composes the word's own vector with its n-grams, as fastText does
        vectors = np.stack([model.get_word_vector(w) for w in words]) if words else np.zeros((0, model.get_dimension()))
        super().__init__(words, vectors, np.asarray(freqs, dtype=np.int64))

    def vector(self, word: str) -> np.ndarray:
        i = self.index.get(word)
        if i is not None:
            return self.vectors[i]
        if not word:
            raise OutOfVocabulary("an empty word has no vector")
        return np.asarray(self.model.get_word_vector(word), dtype=np.float32)


def load_fasttext_bin(path) -> object:
    """Load a fastText ``.bin`` with the fasttext library (its own binary format, not pickle)."""
    import fasttext
    import fasttext.FastText as ft_module

    # the library prints a deprecation notice on every load; it is not the user's concern
    ft_module.eprint = lambda *args, **kwargs: None
    return fasttext.load_model(str(path))
