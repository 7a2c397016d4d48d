"""Files and directories written for the user get the mode the umask gives, not mkstemp's 0600/0700."""

from __future__ import annotations

import os
import stat

import pytest

from embedsearch.evaluation.render import write_outputs
from embedsearch.files import current_umask
from embedsearch.models import export_model, import_vectors


@pytest.fixture(params=[0o022, 0o027, 0o077], ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_current_umask_reads_without_changing(umask):
    assert current_umask() == umask
    assert current_umask() == umask


def test_imported_and_exported_models_honour_the_umask(tmp_path, umask):
    src = tmp_path / "v.txt"
    src.write_text("king 0.1 0.2 0.3\nqueen 0.2 0.1 0.3\nman 0.3 0.3 0.1\n", encoding="utf-8")
    model = tmp_path / "m"
    import_vectors(src, "glove", model)
    assert _mode(model) == 0o777 & ~umask
    assert all(_mode(p) == 0o666 & ~umask for p in model.iterdir())
    out = tmp_path / "out.w2v.txt"
    export_model(model, "word2vec", out)
    assert _mode(out) == 0o666 & ~umask


def test_reports_honour_the_umask(tmp_path, umask):
    (path,) = write_outputs({}, {"json": tmp_path / "r.json"})
    assert _mode(path) == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
