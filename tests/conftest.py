from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from embedsearch.config import Settings
from embedsearch.corpus import Document
from embedsearch.embedders import load_embedder
from embedsearch.store import Store

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def user_cache(tmp_path_factory) -> Path:
    """The session's per-user cache (``$EMBEDSEARCH_CACHE``): never the real ~/.cache."""
    return tmp_path_factory.mktemp("user-cache")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, user_cache):
    monkeypatch.delenv("EMBEDSEARCH_HOME", raising=False)
    monkeypatch.delenv("EMBEDSEARCH_DB", raising=False)
    monkeypatch.setenv("EMBEDSEARCH_CACHE", str(user_cache))


@pytest.fixture
def no_pickle(monkeypatch):
    """While the test runs, any pickle load fails it."""

    def boom(*args, **kwargs):
        raise AssertionError("pickle was used to load data")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir) -> Store:
    return Store(Settings.from_env(data_dir))


@pytest.fixture(scope="session")
def hashing():
    return load_embedder("hashing")


@pytest.fixture(scope="session")
def minilm():
    return load_embedder("minilm", device="cpu")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server process a test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 40, noise: float = 0.35) -> np.ndarray:
    """Seeded, normalised vectors drawn around cluster centres (IVF and PQ need structure)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def topic_docs(n: int, rare_every: int = 40) -> list[Document]:
    """Documents on four topics; every ``rare_every``-th one is tagged rare (2.5% by default)."""
    topics = [
        "bushfire smoke firefighters evacuate",
        "interest rates bank inflation",
        "cricket test wickets batsman",
        "election votes parliament minister",
    ]
    return [
        Document(
            f"doc-{i}",
            f"{topics[i % 4]} story {i} with words {i % 7} {i % 11}",
            {"source": "lee" if i % 2 else "bbc", "year": 1995 + i % 10, "rare": i % rare_every == 0, "topic": i % 4},
        )
        for i in range(n)
    ]


class Cli:
    """Runs the CLI in-process against a temporary data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | bytes | None = None):
        from embedsearch.cli import main

        return self.runner.invoke(main, ["--data-dir", str(self.data_dir), *args], input=input, catch_exceptions=False)


@pytest.fixture(scope="session")
def student(tmp_path_factory) -> Path:
    """A static student from `train distill` on the Lee corpus (the CLI, once per session)."""
    from embedsearch.datasets import gensim_data

    root = tmp_path_factory.mktemp("distill")
    out = root / "static"
    cli = Cli(root / "data")
    r = cli("train", "distill", str(gensim_data("lee_background.cor")), "--encoding", "latin-1", "--teacher", "minilm",
            "-o", str(out), "--dim", "64", "--epochs", "3", "--weighting", "corpus", "--device", "cpu", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def cli(data_dir) -> Cli:
    return Cli(data_dir)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def damage_sqlite_index_page(db: Path, index: str = "ix_documents_hash") -> None:
    """Scribble over the root page of one of the database's indexes (its cell pointers), so
    SQLite's own page check fails while the tables stay readable. The caller closes its
    connections first (``dispose_engines()``)."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)).fetchone()[0]
    raw = bytearray(db.read_bytes())
    start = (root - 1) * page_size
    raw[start + 8 : start + 200] = bytes(192)  # the root page's cell pointers: an index SQLite cannot walk
    db.write_bytes(bytes(raw))


def pg_url() -> str | None:
    return os.environ.get("EMBEDSEARCH_TEST_PG_URL")
