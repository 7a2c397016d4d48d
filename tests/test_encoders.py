"""ONNX fp32 / int8 backends and the distilled static student, against the reference
implementation (``SentenceTransformer.encode``), with real models built offline from the
bundled MiniLM. No mocks of a model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedsearch.datasets import lee_documents
from embedsearch.embedders import load_embedder, model_fingerprint
from embedsearch.errors import FingerprintMismatch, InvalidArgument
from tests.conftest import Cli

pytestmark = pytest.mark.slow

#: stated tolerances: fp32 ONNX vs torch per-text cosine; int8 mean and worst cosine
FP32_MIN_COSINE = 0.99999
INT8_MEAN_COSINE = 0.99
INT8_MIN_COSINE = 0.97
TRICKY = ["", "   padded   ", "MiXeD CaSe 123", "café, naïve, 東京 🙂", "word " * 400]


def lee_texts(n: int = 60) -> list[str]:
    return [d.text for d in lee_documents()][:n] + TRICKY


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(axis=1)


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="session")
def minilm_onnx(exports):
    return load_embedder("minilm-onnx", device="cpu", cache=False, models_dir=exports)


@pytest.fixture(scope="session")
def minilm_int8(exports, minilm_onnx):
    return load_embedder("minilm-int8", device="cpu", cache=False, models_dir=exports)


def test_onnx_fp32_reproduces_sentence_transformers(minilm, minilm_onnx):
    texts = lee_texts()
    reference = minilm.model.encode(texts, normalize_embeddings=True)
    got = minilm_onnx.embed(texts)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    c = cosines(got, reference)
    assert c.min() >= FP32_MIN_COSINE, (c.min(), int(c.argmin()))
    # same vectors, so the same fingerprint: a collection built on torch accepts onnx
    assert minilm_onnx.fingerprint == minilm.fingerprint == model_fingerprint("minilm-onnx")


def test_int8_agrees_with_sentence_transformers_within_tolerance(minilm, minilm_int8):
    texts = lee_texts()
    c = cosines(minilm_int8.embed(texts), minilm.model.encode(texts, normalize_embeddings=True))
    assert c.mean() >= INT8_MEAN_COSINE and c.min() >= INT8_MIN_COSINE, (c.mean(), c.min())
    assert c.mean() < 0.99999  # it really is the quantised model, not the fp32 one
    assert minilm_int8.fingerprint != minilm.fingerprint
    assert minilm_int8.fingerprint == model_fingerprint("minilm-int8")
    meta = minilm_int8.meta
    assert meta["backend"] == "int8" and meta["bytes"] < 0.8 * minilm_int8_parent_bytes(minilm_int8)


def minilm_int8_parent_bytes(int8) -> int:
    return (int8.entry.parent / int8.entry.name.replace("int8-", "onnx-") / "model.onnx").stat().st_size


def test_collections_accept_onnx_and_refuse_int8(store, minilm, minilm_onnx, minilm_int8):
    coll = store.create("torch-built", minilm)
    coll.check_embedder(minilm_onnx)  # no error: ONNX fp32 computes the same vectors
    with pytest.raises(FingerprintMismatch):
        coll.check_embedder(minilm_int8)
    int8_coll = store.create("int8-built", minilm_int8)
    with pytest.raises(FingerprintMismatch):
        int8_coll.check_embedder(minilm)


def test_cache_is_reused_and_a_corrupted_file_is_rebuilt(exports, minilm_int8):
    entry = minilm_int8.entry
    model = entry / "model.onnx"
    stamp = model.stat().st_mtime_ns
    again = load_embedder("minilm-int8", device="cpu", cache=False, models_dir=exports)
    assert again.entry == entry and model.stat().st_mtime_ns == stamp  # reused, not rebuilt

    with open(model, "r+b") as f:  # flip bytes in the middle of the weights
        f.seek(model.stat().st_size // 2)
        f.write(b"\x00\xff" * 64)
    rebuilt = load_embedder("minilm-int8", device="cpu", cache=False, models_dir=exports)
    meta = json.loads((entry / "export.json").read_text())
    assert rebuilt.entry == entry and meta["files"]["model.onnx"] == _sha256(model)
    texts = lee_texts(10)
    np.testing.assert_allclose(rebuilt.embed(texts), minilm_int8.embed(texts), atol=1e-6)
    assert not [p for p in exports.iterdir() if p.name.endswith((".tmp",)) or ".stale-" in p.name]


def test_an_entry_built_from_other_weights_is_rebuilt(exports, minilm_int8):
    entry = minilm_int8.entry
    meta_path = entry / "export.json"
    meta = json.loads(meta_path.read_text())
    meta["source_fingerprint"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    rebuilt = load_embedder("minilm-int8", device="cpu", cache=False, models_dir=exports)
    assert json.loads(meta_path.read_text())["source_fingerprint"] == model_fingerprint("minilm")
    assert rebuilt.fingerprint == minilm_int8.fingerprint


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_concurrent_first_uses_build_once_and_agree(tmp_path, minilm_onnx):
    """Two processes load minilm-onnx into one empty cache at once: one builds, the other
    waits on the lock and uses the result; no temporary directory is left behind."""
    cache = tmp_path / "cache"
    code = (
        "import sys, numpy as np; from embedsearch.embedders import load_embedder; "
        "e = load_embedder('minilm-onnx', device='cpu', models_dir=sys.argv[1]); "
        "np.save(sys.argv[2], e.embed(['bushfires near Sydney', 'interest rates rise']), allow_pickle=False)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(cache), str(tmp_path / f"out{i}.npy")], env=env,
                         stderr=subprocess.PIPE)  # fmt: skip
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    entries = sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))
    assert entries == [minilm_onnx.entry.name]
    a, b = (np.load(tmp_path / f"out{i}.npy", allow_pickle=False) for i in range(2))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, minilm_onnx.embed(["bushfires near Sydney", "interest rates rise"]), atol=1e-5)


def test_missing_onnxruntime_is_a_clear_error(monkeypatch):
    from embedsearch.embedders.onnx_export import require_onnxruntime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(InvalidArgument, match=r"onnxruntime package: pip install 'embedsearch\[onnx\]'"):
        require_onnxruntime()


# --- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_with_exports(cli, exports, minilm_int8) -> Cli:
    """A data directory whose _models cache already holds the session's builds."""
    shutil.copytree(exports, cli.data_dir / "_models", ignore=shutil.ignore_patterns("*.lock"))
    return cli


def test_cli_int8_collection_end_to_end(cli_with_exports, tmp_path):
    cli = cli_with_exports
    r = cli("index", "create", "news8", "--model", "minilm-int8", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["model"] == "minilm-int8"
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in list(lee_documents())[:40]))
    assert cli("index", "add", "news8", str(docs)).exit_code == 0
    r = cli("search", "news8", "bushfires threaten homes", "-k", "3", "--json")
    assert r.exit_code == 0, r.output
    assert "fire" in json.dumps(json.loads(r.output)).lower()
    r = cli("index", "verify", "news8", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["ok"], r.output
    # a torch collection is searched with minilm-onnx (same fingerprint) but refuses int8 queries
    assert cli("index", "create", "news", "--model", "minilm").exit_code == 0
    assert cli("index", "add", "news", str(docs)).exit_code == 0
    assert cli("search", "news", "cricket", "--model", "minilm-onnx", "--json").exit_code == 0
    r = cli("search", "news", "cricket", "--model", "minilm-int8")
    assert r.exit_code == 1 and "fingerprint" in r.output and "Traceback" not in r.output


def test_exports_are_shared_by_every_data_directory(tmp_path, exports, minilm_int8):
    """One cache per user ($EMBEDSEARCH_CACHE): a second data directory reuses the build (issue 28:
    `compare` run elsewhere rebuilt the int8 export for 443 s); an entry an earlier version left in
    a data directory's _models/ is copied into the cache, not rebuilt. Each command is a process of
    its own, as a user runs them."""
    env = {**os.environ, "EMBEDSEARCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}

    def cli(data: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "embedsearch", "--data-dir", str(tmp_path / data), *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)

    entry = minilm_int8.entry.name
    legacy = tmp_path / "old-data" / "_models"
    shutil.copytree(exports, legacy, ignore=shutil.ignore_patterns("*.lock"))
    r = cli("old-data", "index", "create", "a", "--model", "minilm-int8")
    assert r.returncode == 0, r.stderr
    cached = tmp_path / "cache" / "exports" / entry
    # adopted, not rebuilt: export.json records when and from what the entry was built
    assert (cached / "export.json").read_bytes() == (legacy / entry / "export.json").read_bytes()
    built_at = (cached / "export.json").stat().st_mtime_ns
    for other in ("data-b", "data-c"):  # other data directories: the same entry, not rebuilt
        r = cli(other, "index", "create", "b", "--model", "minilm-int8")
        assert r.returncode == 0, r.stderr
        assert not (tmp_path / other / "_models").exists()
    assert (cached / "export.json").stat().st_mtime_ns == built_at
    assert sorted(p.name for p in (tmp_path / "cache" / "exports").iterdir() if not p.name.startswith(".")) == [entry]


def test_cli_backend_for_a_sentence_transformers_directory(cli_with_exports):
    from embedsearch.embedders.sentence import bundled_minilm_path

    cli = cli_with_exports
    r = cli("index", "create", "st8", "--model", str(bundled_minilm_path()), "--backend", "int8", "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["model_fingerprint"] == model_fingerprint("minilm-int8")  # the same weights share the build
    assert cli("index", "verify", "st8").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "hashing", "--backend", "int8"], "no weights"),
        (["--model", "minilm-int8", "--backend", "onnx"], "names its backend"),
        (["--model", "minilm", "--backend", "fp16"], "Invalid value for '--backend'"),
    ],
)
def test_cli_backend_errors(cli, args, message):
    r = cli("index", "create", "x", *args)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
