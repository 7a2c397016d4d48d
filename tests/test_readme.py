"""Statements in the README that the code decides, checked against the code."""

from __future__ import annotations

import re
from pathlib import Path

from embedsearch.trainers.fasttext import DEFAULT_BACKEND, FastTextParams

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_names_the_fasttext_default_backend_the_code_uses():
    said = re.findall(r"Backends: (?:the )?`?(\w+)`?(?: library)? \(default", README)
    assert said == [DEFAULT_BACKEND]
    assert f"{DEFAULT_BACKEND} is the default" in README  # the Benchmarks table says it too
    assert FastTextParams().resolved_backend() == DEFAULT_BACKEND
