"""Static embeddings: a vector per token, mean-pooled (the student ``embedsearch train distill`` makes).

The model directory is a sentence-transformers model whose input module is
``StaticEmbedding`` (weights in safetensors, the teacher's ``tokenizer.json``), so
sentence-transformers loads it too and the triplet trainer can fine-tune it. Embedding here
needs neither torch nor sentence-transformers: the Rust tokenizer, then one sparse
(documents x vocabulary) averaging matrix times the token vectors. It computes what
``StaticEmbedding`` computes (an ``EmbeddingBag`` mean over the tokens, no special tokens, no
truncation); a text with no tokens embeds as zeros.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.embedders.base import Embedder, free_tokenizer
from embedsearch.errors import ModelFormatError

#: normalisers and pre-tokenizers that act on each whitespace-separated chunk on its own, so a
#: chunk's token ids do not depend on its neighbours (BERT's WordPiece set-up, among others)
_LOCAL_NORMALIZERS = {None, "BertNormalizer", "Lowercase", "NFD", "NFC", "NFKD", "NFKC", "StripAccents"}
_LOCAL_PRE_TOKENIZERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
#: every such tokenizer treats these as word breaks (BERT's normaliser maps \t \n \r to a space)
_BREAKS = re.compile(r"[ \t\n\r]+")
_CACHE_WORDS = 500_000


def static_module_dir(path: Path) -> Path:
    """The directory of the ``StaticEmbedding`` module listed in ``modules.json``."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFormatError(f"{path}: modules.json is missing") from None
    except ValueError as exc:
        raise ModelFormatError(f"{path}/modules.json: unreadable ({exc})") from None
    for m in modules if isinstance(modules, list) else []:
        if isinstance(m, dict) and str(m.get("type", "")).endswith("StaticEmbedding"):
            return path / str(m.get("path", ""))
    raise ModelFormatError(f"{path}: modules.json lists no StaticEmbedding module")


def load_static_weights(module_dir: Path) -> np.ndarray:
    """The (vocabulary, dim) float32 token vectors, read with safetensors (never pickle)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    weights = module_dir / "model.safetensors"
    if not weights.is_file():
        raise ModelFormatError(f"{weights} is missing")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{weights}: unreadable ({exc})") from None
    matrix = tensors.get("embedding.weight")
    if matrix is None or matrix.ndim != 2:
        raise ModelFormatError(f"{weights}: no 2-d 'embedding.weight' tensor")
    return np.ascontiguousarray(matrix, dtype=np.float32)


class StaticEmbedder(Embedder):
    """Mean of the token vectors of a ``static`` model directory."""

    chunk_size = 4096

    def __init__(self, path: Path, manifest: dict[str, Any] | None = None) -> None:
        from tokenizers import Tokenizer

        from embedsearch.embedders.sentence import directory_fingerprint

        path = Path(path).absolute()
        module = static_module_dir(path)
        self.vectors = load_static_weights(module)
        try:
            self.tokenizer = Tokenizer.from_file(str(module / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises its own Exception type for a bad file
            raise ModelFormatError(f"{module / 'tokenizer.json'}: unreadable ({exc})") from None
        self.tokenizer.no_padding()
        self._chunk_cache: dict[str, list[int]] | None = {} if chunk_local(self.tokenizer) else None
        if self.tokenizer.get_vocab_size(with_added_tokens=True) > len(self.vectors):
            raise ModelFormatError(f"{path}: the tokenizer knows more tokens than there are vectors ({len(self.vectors)})")
        self.manifest = manifest or {}
        self.name = path.name
        self.spec = str(path)
        self.dim = int(self.vectors.shape[1])
        self.fingerprint = directory_fingerprint(path)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "kind": "static", "teacher": self.manifest.get("teacher")}

    def chunk_tokenizer(self):
        if getattr(self, "_free_tokenizer", None) is None:
            self._free_tokenizer = free_tokenizer(self.tokenizer)
        return self._free_tokenizer

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids without special tokens. With a chunk-local tokenizer each distinct chunk
        is tokenised once and remembered: tokenising, not averaging, is what bounds the speed."""
        cache = self._chunk_cache
        if cache is None:
            return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        chunked = [_BREAKS.split(t) for t in texts]
        new = list({c for chunks in chunked for c in chunks if c not in cache})
        if new:
            if len(cache) + len(new) > _CACHE_WORDS:
                cache.clear()
            # one tokenizer call over all new chunks joined by spaces, each token mapped back
            # to its chunk by its character offset: far fewer calls than one per chunk
            starts = np.zeros(len(new), dtype=np.int64)
            np.cumsum([len(c) + 1 for c in new[:-1]], out=starts[1:])
            enc = self.tokenizer.encode(" ".join(new), add_special_tokens=False)
            owner = np.searchsorted(starts, [a for a, _ in enc.offsets], side="right") - 1
            bounds = np.searchsorted(owner, np.arange(len(new) + 1))
            ids = enc.ids
            for k, chunk in enumerate(new):
                cache[chunk] = ids[bounds[k] : bounds[k + 1]]
        return [[i for c in chunks for i in cache[c]] for chunks in chunked]

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        from scipy.sparse import csr_matrix

        token_ids = self.token_ids(texts)
        lengths = np.fromiter((len(x) for x in token_ids), dtype=np.int64, count=len(token_ids))
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        ids = np.fromiter((i for x in token_ids for i in x), dtype=np.int64, count=int(indptr[-1]))
        data = np.repeat((1.0 / np.maximum(lengths, 1)).astype(np.float32), lengths)
        averaging = csr_matrix((data, ids, indptr), shape=(len(texts), len(self.vectors)))
        return np.asarray(averaging @ self.vectors, dtype=np.float32)


def chunk_local(tokenizer) -> bool:
    """True when the tokenizer may be run chunk by chunk (see ``_LOCAL_NORMALIZERS``): no
    truncation (which counts tokens across the whole text) and a chunk-local set-up."""
    spec = json.loads(tokenizer.to_str())
    if spec.get("truncation") is not None:
        return False
    norm = spec.get("normalizer")
    norms = [None] if norm is None else (norm.get("normalizers") if norm.get("type") == "Sequence" else [norm])
    pre = spec.get("pre_tokenizer") or {}
    pres = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    return (
        all((n or {}).get("type") in _LOCAL_NORMALIZERS for n in norms or [None])
        and all(p.get("type") in _LOCAL_PRE_TOKENIZERS for p in pres or [{}])
        and (spec.get("model") or {}).get("type") in ("WordPiece", "WordLevel")
    )
