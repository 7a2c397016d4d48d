"""Training corpora: documents from the shared readers, tokenised once, for every trainer.

One pass over the input writes a tokenised text file (one document per line, tokens
separated by single spaces: the format gensim's ``corpus_file`` mode and the fastText
binary read fastest) and, at the same time, an int32 array of token ids. GloVe counts
co-occurrences from that array, so no trainer tokenises twice and every trainer sees the
same words as the word-vector embedder (:func:`embedsearch.corpus.tokenize`).
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedsearch.corpus import ReadOptions, iter_documents, resolve_sources, tokenize
from embedsearch.errors import CorpusError

#: identifies the tokenizer in manifests; bump when :func:`tokenize` changes behaviour
TOKENIZER = "embedsearch.corpus.tokenize/1"


@dataclass
class Vocabulary:
    """Words kept for training, most frequent first, with their corpus counts."""

    words: list[str]
    counts: np.ndarray  # int64, same order as words
    #: provisional id (first-seen order in the corpus) -> vocabulary id, -1 for dropped words
    remap: np.ndarray
    min_count: int

    def __len__(self) -> int:
        return len(self.words)


@dataclass
class PreparedCorpus:
    """A tokenised corpus on disk plus its token ids in memory."""

    tokens_path: Path  # one document per line, tokens separated by a space
    ids: np.ndarray  # int32 provisional ids, every token of every document in order
    doc_ends: np.ndarray  # int64 exclusive end offset of each document in ``ids``
    words: list[str]  # provisional id -> word
    counts: np.ndarray  # int64 count per provisional id
    fingerprint: str  # sha256 of the tokenised text
    sources: list[str]

    @property
    def n_tokens(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_docs(self) -> int:
        return int(self.doc_ends.shape[0])

    def require_words(self, min_count: int) -> None:
        """Raise :class:`CorpusError` when no word occurs ``min_count`` times (cheap: no sorting)."""
        if not (self.counts >= min_count).any():
            self.vocabulary(min_count)

    def vocabulary(self, min_count: int, max_size: int | None = None) -> Vocabulary:
        """Words seen at least ``min_count`` times, ordered by count (ties by word)."""
        keep = np.flatnonzero(self.counts >= min_count)
        if keep.size == 0:
            top = int(np.argmax(self.counts))
            raise CorpusError(
                f"no word occurs at least {min_count} times (the most frequent, {self.words[top]!r}, occurs "
                f"{int(self.counts[top])} times); lower --min-count or give a larger corpus"
            )
        words_kept = [self.words[i] for i in keep]
        # most frequent first, ties broken by the word so the order is deterministic
        order = sorted(range(keep.size), key=lambda k: (-int(self.counts[keep[k]]), words_kept[k]))
        if max_size is not None and max_size > 0:
            order = order[:max_size]
        kept = keep[np.asarray(order, dtype=np.int64)]
        remap = np.full(len(self.words), -1, dtype=np.int32)
        remap[kept] = np.arange(kept.size, dtype=np.int32)
        return Vocabulary([self.words[i] for i in kept], self.counts[kept].astype(np.int64), remap, min_count)

    def encoded(self, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
        """Token ids in vocabulary numbering with out-of-vocabulary tokens removed (as the
        reference GloVe does: they do not take a window position), and document ends."""
        mapped = vocab.remap[self.ids]
        keep = mapped >= 0
        kept_before = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
        return np.ascontiguousarray(mapped[keep]), kept_before[self.doc_ends]

    def sample_documents(self, limit: int) -> list[list[str]]:
        """Up to ``limit`` tokenised documents spread evenly over the corpus."""
        step = max(1, self.n_docs // max(1, limit))
        wanted = set(range(0, self.n_docs, step)[:limit])
        out: list[list[str]] = []
        with open(self.tokens_path, encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i in wanted:
                    out.append(line.split())
        return out


def prepare_corpus(
    inputs: Iterable[str],
    workdir: Path,
    opts: ReadOptions | None = None,
    *,
    stdin_path: Path | None = None,
    on_skip: Callable | None = None,
    progress: bool = False,
) -> PreparedCorpus:
    """Read ``inputs`` with the shared readers, tokenise, and write ``workdir/tokens.txt``.

    Raises :class:`CorpusError` for empty, binary or undecodable input (with file and line)
    and for a corpus without a single word.
    """
    opts = opts or ReadOptions(per_line=True)
    sources = resolve_sources(list(inputs), opts, stdin_path)
    tokens_path = Path(workdir) / "tokens.txt"
    index: dict[str, int] = {}
    ids = array("i")
    doc_ends = array("q")
    digest = hashlib.sha256()
    bar = None
    if progress:
        from embedsearch.progress import bar as progress_bar

        bar = progress_bar(None, "reading corpus", "doc")
    setdefault = index.setdefault
    try:
        with open(tokens_path, "w", encoding="utf-8", newline="\n") as out:
            for doc in iter_documents(sources, opts, on_skip):
                toks = tokenize(doc.text)
                if not toks:
                    continue
                line = " ".join(toks) + "\n"
                out.write(line)
                digest.update(line.encode("utf-8"))
                # setdefault evaluates len(index) before inserting: new words get the next id
                ids.extend([setdefault(t, len(index)) for t in toks])
                doc_ends.append(len(ids))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if not doc_ends:
        raise CorpusError("the corpus holds no words (every document is empty or has no letters or digits)")
    id_arr = np.frombuffer(ids, dtype=np.int32).copy()
    counts = np.bincount(id_arr, minlength=len(index)).astype(np.int64)
    return PreparedCorpus(
        tokens_path=tokens_path,
        ids=id_arr,
        doc_ends=np.frombuffer(doc_ends, dtype=np.int64).copy(),
        words=list(index),
        counts=counts,
        fingerprint=digest.hexdigest(),
        sources=[s.display for s in sources],
    )
