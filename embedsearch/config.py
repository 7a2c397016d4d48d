"""Settings shared by the CLI, the service and the library: where data lives."""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from embedsearch.errors import DatabaseDriverMissing, InvalidName

DEFAULT_DATA_DIR = "indexes"
DB_FILENAME = "embedsearch.db"

# A collection name becomes a directory name under the data directory, so it is held to a
# conservative alphabet: no separators, no leading dot, no "..", bounded length.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_collection_name(name: str) -> str:
    """Return ``name`` if it is a safe collection name, else raise :class:`InvalidName`."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:  # fullmatch: '$' lets a newline through
        raise InvalidName(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (no '/', '..' or other path characters)"
        )
    return name


# PostgreSQL drivers SQLAlchemy knows, in the order a bare postgresql:// URL tries them:
# driver name in the URL -> (module to import, package to install)
PG_DRIVERS = {
    "psycopg2": ("psycopg2", "psycopg2-binary"),
    "psycopg": ("psycopg", "psycopg[binary]"),
    "pg8000": ("pg8000", "pg8000"),
}


def resolve_db_url(url: str) -> str:
    """``url`` with a PostgreSQL driver that is installed.

    ``postgresql://`` (and Heroku-style ``postgres://``) name no driver, and SQLAlchemy's default
    (psycopg 3 since 2.1) may not be the one installed: use the first installed one. A URL naming
    a driver that is missing raises :class:`DatabaseDriverMissing` naming the package to install.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    dialect, _, driver = scheme.partition("+")
    if dialect not in ("postgresql", "postgres"):
        return url
    if driver:
        module, package = PG_DRIVERS.get(driver, (driver, driver))
        if importlib.util.find_spec(module) is None:
            raise DatabaseDriverMissing(
                f"the database URL asks for the {driver} driver, which is not installed: pip install '{package}'"
            )
        return f"postgresql+{driver}://{rest}"
    for name, (module, _package) in PG_DRIVERS.items():
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{name}://{rest}"
    raise DatabaseDriverMissing(
        "a PostgreSQL database needs a driver and none is installed: pip install -e '.[postgres]' (psycopg2-binary)"
    )


@dataclass(frozen=True)
class Settings:
    """Where collections live: FAISS files under ``data_dir``, metadata at ``db_url``."""

    data_dir: Path
    db_url: str

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike | None = None, db_url: str | None = None) -> Settings:
        d = Path(data_dir or os.environ.get("EMBEDSEARCH_HOME") or DEFAULT_DATA_DIR).expanduser()
        d = d.absolute()
        url = db_url or os.environ.get("EMBEDSEARCH_DB") or f"sqlite:///{d / DB_FILENAME}"
        return cls(data_dir=d, db_url=resolve_db_url(url))

    def collection_dir(self, name: str) -> Path:
        """The directory holding a collection's vector files; never outside ``data_dir``."""
        validate_collection_name(name)
        root = self.data_dir.resolve()
        path = (root / name).resolve()
        if path.parent != root:
            raise InvalidName(f"collection name {name!r} escapes the data directory")
        return path


#: a data directory's old export cache (before the per-user cache): ``<data dir>/_models``
EXPORTS_DIRNAME = "_models"
#: directories where an ONNX export may already exist (embedsearch/embedders/onnx_export.py
#: copies a usable one into the user's cache instead of building it again); the CLI adds its
#: data directory's ``_models``
LEGACY_EXPORT_DIRS: list[Path] = []


def add_legacy_export_dir(path: Path) -> None:
    if Path(path) not in LEGACY_EXPORT_DIRS:
        LEGACY_EXPORT_DIRS.append(Path(path))

