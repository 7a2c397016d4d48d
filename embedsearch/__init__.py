"""embedsearch: train, index, search and compare embeddings."""

from __future__ import annotations

import os

# Nothing in embedsearch may download weights or data at run time: make the Hugging Face
# stack fail fast instead of reaching for the network (users can still override).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"

from embedsearch.corpus import Document  # noqa: E402
from embedsearch.errors import EmbedsearchError  # noqa: E402

__all__ = ["Document", "EmbedsearchError", "__version__"]
