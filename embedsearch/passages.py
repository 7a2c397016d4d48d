"""Passages: long documents split into pieces a model sees whole.

A sentence model reads at most its window of word pieces (MiniLM: 256 including its two special
tokens) and silently drops the rest. A collection with chunking splits each document into
passages of at most ``tokens`` tokens, counted by the model's own tokenizer, consecutive passages
sharing ``overlap`` tokens; each passage is one vector, and a document's score is its best
passage's (store/passage_rows.py).

Where to cut: one tokenizer pass gives every token's character offsets; a cut may fall before
any token, and the text between two tokens says how good a cut it is: a paragraph break (a blank
line) is best, then a sentence end or a line break, then a space between words; inside a word
is the last resort (a word longer than a passage). Each passage ends at the best cut in the
second half of its window (the latest of the best), so a passage is never under half the size
asked for unless the document ends. With an overlap, the next passage starts at the best cut
within the overlap's tokens (a sentence start if there is one), never inside a word.

A document that fits in one passage is one passage spanning its whole text, so its vector is
exactly the unchunked vector.

No new dependency: semchunk and semantic-text-splitter count tokens by calling the tokenizer on
many candidate pieces; one pass over the document with offsets does the same job exactly, and
gives the character offsets that search results report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embedsearch.errors import InvalidArgument

MIN_TOKENS = 16  # below this a passage holds too little text to embed meaningfully

# how good a cut before a token is, from the text between it and the previous token
_INSIDE_WORD, _WORD, _SENTENCE, _PARAGRAPH = 0, 1, 2, 3
_SENTENCE_ENDS = (".", "!", "?", "。", "！", "？", ".\"", ".'", ".)", "!\"", "?\"", ".”", "!”", "?”")


@dataclass(frozen=True)
class Chunking:
    """A collection's passage settings: at most ``tokens`` tokens per passage, ``overlap``
    tokens shared by consecutive passages."""

    tokens: int
    overlap: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"tokens": self.tokens, "overlap": self.overlap}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Chunking | None:
        if not data:
            return None
        return cls(int(data["tokens"]), int(data.get("overlap", 0)))


def resolve_chunking(embedder, tokens: int | None, overlap: int | None, enabled: bool | None = None) -> Chunking | None:
    """The chunking a new collection gets. ``enabled`` False: none (one vector per document).
    Otherwise ``tokens`` (default: the model's window, when it has one) and ``overlap`` (default
    0), checked against the model: refused with the reason when the model has no tokenizer, the
    size is above its window or below MIN_TOKENS, or the overlap is not below half the size."""
    if enabled is False:
        if tokens is not None or overlap is not None:
            raise InvalidArgument("--no-chunking cannot be combined with --chunk-tokens or --chunk-overlap")
        return None
    window = embedder.token_window()
    tokenizer = embedder.chunk_tokenizer()
    if tokens is None:
        if window is None:  # models without a window (static, word vectors, hashing) see everything
            if overlap is not None or enabled:
                raise InvalidArgument(f"model {embedder.name} has no token window; give --chunk-tokens to split its documents")
            return None
        tokens = window
    if tokenizer is None:
        raise InvalidArgument(
            f"model {embedder.name} has no tokenizer to count passage tokens with; chunking needs a "
            "sentence-transformers, ONNX or static model"
        )
    if tokens < MIN_TOKENS:
        raise InvalidArgument(f"--chunk-tokens {tokens} is below {MIN_TOKENS}: passages that short carry too little text")
    if window is not None and tokens > window:
        raise InvalidArgument(
            f"--chunk-tokens {tokens} is above model {embedder.name}'s window of {window} tokens "
            "(its maximum sequence length less its special tokens): the rest of each passage would be cut off"
        )
    overlap = 0 if overlap is None else overlap
    if overlap < 0 or overlap * 2 > tokens:
        raise InvalidArgument(f"--chunk-overlap {overlap} must be between 0 and half of --chunk-tokens ({tokens // 2})")
    return Chunking(tokens, overlap)


class Chunker:
    """Splits texts into passages with ``tokenizer`` (a ``tokenizers.Tokenizer`` without
    truncation) as ``chunking`` says."""

    def __init__(self, tokenizer, chunking: Chunking) -> None:
        self.tokenizer = tokenizer
        self.chunking = chunking

    def spans(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        """For each text, its passages as ``(start, end)`` character offsets, in order."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [self._split(t, e.offsets) for t, e in zip(texts, encodings, strict=True)]

    def _split(self, text: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
        size, overlap = self.chunking.tokens, self.chunking.overlap
        n = len(offsets)
        if n <= size:
            return [(0, len(text))]
        quality = [_cut_quality(text, offsets, i) for i in range(n)]
        out: list[tuple[int, int]] = []
        start = 0
        while True:
            if n - start <= size:
                out.append((offsets[start][0], len(text)))
                return out
            limit = start + size  # the passage is tokens [start, cut), cut <= limit
            cut = max(range(start + max(1, size // 2), limit + 1), key=lambda i: (quality[i], i))
            out.append((offsets[start][0] if out else 0, offsets[cut - 1][1]))
            nxt = cut
            if overlap:  # the next passage starts at the best cut within the overlap (the earliest of the best)
                lo = max(cut - overlap, start + 1)
                nxt = max(range(lo, cut), key=lambda i: (quality[i], -i), default=cut)
                if quality[nxt] == _INSIDE_WORD:
                    nxt = cut
            start = max(nxt, start + 1)


def _cut_quality(text: str, offsets: list[tuple[int, int]], i: int) -> int:
    """How good a cut just before token ``i`` is."""
    if i == 0:
        return _PARAGRAPH
    prev_end, here = offsets[i - 1][1], offsets[i][0]
    gap = text[prev_end:here]
    if not gap:
        return _INSIDE_WORD
    if "\n" in gap and gap.count("\n") >= 2:
        return _PARAGRAPH
    if "\n" in gap or text[max(0, prev_end - 2) : prev_end].endswith(_SENTENCE_ENDS):
        return _SENTENCE
    return _WORD if gap.isspace() else _INSIDE_WORD


def embed_texts(embedder, chunking: Chunking | None, texts: list[str], progress: bool = False):
    """Vectors for documents' texts: ``(vectors, spans, truncated)``. With ``chunking``, one
    vector per passage and ``spans`` each text's passage offsets; without it, one vector per
    text, ``spans`` None and ``truncated`` the count of texts longer than the model's window."""
    if chunking is None:
        truncated = 0
        window, tokenizer = embedder.token_window(), embedder.chunk_tokenizer()
        if window is not None and tokenizer is not None:
            truncated = sum(c > window for c in token_counts(tokenizer, texts))
        return embedder.embed(texts, progress=progress), None, truncated
    tokenizer = embedder.chunk_tokenizer()
    if tokenizer is None:
        raise InvalidArgument(f"model {embedder.name} cannot split documents into passages (it has no tokenizer)")
    spans = Chunker(tokenizer, chunking).spans(texts)
    pieces = [t[a:b] for t, doc_spans in zip(texts, spans, strict=True) for a, b in doc_spans]
    return embedder.embed(pieces, progress=progress), spans, 0


def token_counts(tokenizer, texts: list[str]) -> list[int]:
    """Tokens in each text (no special tokens), for truncation warnings."""
    return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
