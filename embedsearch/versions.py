"""Library versions recorded in model manifests and reports, so a result can be reproduced."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

#: recorded name -> the distributions that provide it, first match wins
_DISTRIBUTIONS = {
    "fasttext": ("fasttext-wheel", "fasttext"),
    "faiss": ("faiss-cpu", "faiss-gpu-cu12", "faiss-gpu"),
}


def library_versions(*names: str) -> dict[str, str]:
    """Python, embedsearch and numpy, plus each named library that is installed (a missing
    one is left out rather than guessed)."""
    out = {"python": platform.python_version()}
    for name in ("embedsearch", "numpy", *names):
        for dist in _DISTRIBUTIONS.get(name, (name,)):
            try:
                out[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return out
