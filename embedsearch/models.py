"""Model directories written by embedsearch: ``manifest.json`` plus weights in safe formats.

No pickle is ever loaded. The manifest's ``kind`` says which embedder reads the directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from embedsearch.embedders.base import Embedder
from embedsearch.errors import UnknownModel

MANIFEST = "manifest.json"


def read_manifest(path: Path) -> dict[str, Any]:
    """Read and minimally validate a model directory's manifest."""
    try:
        data = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnknownModel(f"{path}: no {MANIFEST}; not an embedsearch model directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnknownModel(f"{path}/{MANIFEST}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict) or "kind" not in data:
        raise UnknownModel(f"{path}/{MANIFEST}: manifest has no 'kind'")
    return data


def load_model_embedder(path: Path, *, device: str | None = None, batch_size: int = 32) -> Embedder:
    """Build the embedder a model directory's manifest asks for."""
    manifest = read_manifest(path)
    kind = manifest["kind"]
    if kind == "sentence-transformers":
        from embedsearch.embedders.sentence import SentenceEmbedder

        return SentenceEmbedder(path, device=device, batch_size=batch_size)
    raise UnknownModel(f"{path}: model kind {kind!r} is not supported by this version of embedsearch")
