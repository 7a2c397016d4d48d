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
