"""--db URLs that name no driver, or a driver that is not installed."""

from __future__ import annotations

import importlib.util
import uuid

import pytest
from click.testing import CliRunner

from embedsearch.cli import main
from embedsearch.config import Settings, resolve_db_url
from embedsearch.errors import DatabaseDriverMissing
from tests.conftest import pg_url

MODULES = {"psycopg2": "psycopg2", "psycopg": "psycopg", "pg8000": "pg8000"}


@pytest.fixture
def no_pg_driver(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith(("psycopg", "pg8000")) else real(name, *a)
    )


@pytest.mark.parametrize("url", ["postgresql://u:p@h/db", "postgres://u:p@h/db"])
def test_a_bare_postgres_url_gets_an_installed_driver(url):
    resolved = resolve_db_url(url)
    scheme, rest = resolved.split("://")
    assert rest == "u:p@h/db"
    assert importlib.util.find_spec(MODULES[scheme.split("+")[1]]) is not None


def test_other_urls_are_left_alone(tmp_path):
    for url in ["sqlite:///x.db", "postgresql+psycopg2://u@h/db", "mysql://u@h/db"]:
        assert resolve_db_url(url) == url
    assert Settings.from_env(tmp_path).db_url == f"sqlite:///{tmp_path.absolute() / 'embedsearch.db'}"


def test_a_missing_driver_names_the_package(no_pg_driver):
    with pytest.raises(DatabaseDriverMissing, match=r"pip install -e '\.\[postgres\]'"):
        resolve_db_url("postgresql://u@h/db")
    with pytest.raises(DatabaseDriverMissing, match=r"pip install 'psycopg\[binary\]'"):
        resolve_db_url("postgresql+psycopg://u@h/db")


def test_cli_says_which_package_to_install_without_a_traceback(no_pg_driver):
    r = CliRunner().invoke(main, ["--db", "postgresql://u@127.0.0.1/x", "index", "list"])
    assert r.exit_code == 1, r.output
    assert "pip install -e '.[postgres]'" in r.output and "Traceback" not in r.output


@pytest.mark.skipif(not pg_url(), reason="no EMBEDSEARCH_TEST_PG_URL")
def test_cli_works_with_a_driverless_url_on_a_real_server(tmp_path):
    bare = "postgresql://" + pg_url().split("://", 1)[1]
    name = f"f12_{uuid.uuid4().hex[:8]}"
    run = CliRunner().invoke
    base = ["--data-dir", str(tmp_path), "--db", bare]
    r = run(main, [*base, "index", "create", name, "--model", "hashing"])
    try:
        assert r.exit_code == 0, r.output
        assert name in run(main, [*base, "index", "list"]).output
    finally:
        run(main, [*base, "index", "drop", name, "--yes"])


def test_switching_a_new_database_to_wal_retries_the_immediate_busy_of_two_openers(monkeypatch):
    """Two processes opening a new SQLite database at once: SQLite answers the loser's
    journal_mode=WAL with SQLITE_BUSY at once, without its busy handler (CI saw `database is locked`
    from a concurrent `index create`). The switch is retried; other errors are not."""
    import sqlite3

    from embedsearch.store import metadata

    class Cursor:
        def __init__(self, failures, message="database is locked"):
            self.failures, self.message, self.calls = failures, message, 0

        def execute(self, sql):
            assert sql == "PRAGMA journal_mode=WAL"
            self.calls += 1
            if self.calls <= self.failures:
                raise sqlite3.OperationalError(self.message)

    cur = Cursor(3)
    metadata._switch_to_wal(cur)
    assert cur.calls == 4
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        metadata._switch_to_wal(Cursor(1, "disk I/O error"))
    monkeypatch.setattr(metadata, "_BUSY_TIMEOUT_MS", 50)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        metadata._switch_to_wal(Cursor(10**6))


def test_schema_creation_retries_each_table_another_opener_created_first(monkeypatch, tmp_path):
    """CI failed once with "table payload_values already exists" after five retries: under load one
    opener can lose the race for every table in turn. Each loss is another opener's progress, so
    the retries are bounded by the schema's size, not by a small constant."""
    import sqlite3

    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    from embedsearch.store import metadata

    objects = sum(1 + len(t.indexes) for t in metadata.metadata_obj.sorted_tables)
    real = metadata.metadata_obj.create_all
    calls = []

    def losing(engine):
        calls.append(1)
        if len(calls) <= objects:
            raise OperationalError("CREATE TABLE t", {}, sqlite3.OperationalError(f"table t{len(calls)} already exists"))
        real(engine)

    monkeypatch.setattr(metadata.metadata_obj, "create_all", losing)
    engine = create_engine(f"sqlite:///{tmp_path / 's.sqlite'}")
    metadata._create_schema(engine)
    assert len(calls) == objects + 1
    calls.clear()
    monkeypatch.setattr(
        metadata.metadata_obj,
        "create_all",
        lambda e: (_ for _ in ()).throw(OperationalError("x", {}, sqlite3.OperationalError("disk I/O error"))),
    )
    with pytest.raises(OperationalError, match="disk I/O"):
        metadata._create_schema(engine)


def test_processes_opening_one_new_database_at_the_same_instant_all_succeed(tmp_path):
    """The real race, released by a barrier file: every process gets a working engine."""
    import subprocess
    import sys
    import time

    code = (
        "import os, sys, time\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.0005)\n"
        "from embedsearch.store.metadata import get_engine\n"
        "get_engine('sqlite:///' + sys.argv[1]); print('ok')\n"
    )
    for round_ in range(3):
        db, go = tmp_path / f"r{round_}.sqlite", tmp_path / f"go{round_}"
        procs = [
            subprocess.Popen([sys.executable, "-c", code, str(db), str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(6)
        ]
        time.sleep(1.5)  # let them import and reach the barrier
        go.touch()
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert out.decode().strip() == "ok", err.decode()[-500:]
