"""Domain exceptions.

The library raises these; only the CLI turns them into click exceptions and only the
service turns them into HTTP errors. ``usage`` marks errors caused by how the command was
called (exit code 2) rather than by the data or the state of a collection (exit code 1).
"""

from __future__ import annotations

import errno


class EmbedsearchError(Exception):
    """Base class for every error embedsearch raises on purpose."""

    usage: bool = False
    http_status: int = 400
    code: str = "error"


class InvalidArgument(EmbedsearchError):
    """A parameter out of its range (k, batch sizes...)."""

    usage = True
    http_status = 422
    code = "invalid_argument"


class InvalidName(EmbedsearchError):
    usage = True
    code = "invalid_name"


class CollectionNotFound(EmbedsearchError):
    http_status = 404
    code = "collection_not_found"


class CollectionExists(EmbedsearchError):
    http_status = 409
    code = "collection_exists"


class DocumentNotFound(EmbedsearchError):
    http_status = 404
    code = "document_not_found"


class DimensionMismatch(EmbedsearchError):
    http_status = 422
    code = "dimension_mismatch"


class FingerprintMismatch(EmbedsearchError):
    http_status = 409
    code = "fingerprint_mismatch"


class UnknownModel(EmbedsearchError):
    usage = True
    http_status = 404
    code = "unknown_model"


class DatabaseDriverMissing(EmbedsearchError):
    """The metadata store's URL needs a database driver that is not installed."""

    code = "database_driver_missing"


class InvalidFilter(EmbedsearchError):
    usage = True
    http_status = 422
    code = "invalid_filter"


class InvalidCursor(EmbedsearchError):
    """A listing cursor that is not one this collection and filter handed out."""

    usage = True
    http_status = 422
    code = "invalid_cursor"


class InvalidIndexSpec(EmbedsearchError):
    usage = True
    http_status = 422
    code = "invalid_index_spec"


class CorpusError(EmbedsearchError):
    code = "corpus_error"


class IndexCorrupted(EmbedsearchError):
    http_status = 500
    code = "index_corrupted"


class InconsistentCollection(EmbedsearchError):
    """The FAISS file and the SQL rows disagree; ``index verify``/``index repair`` explain and fix."""

    http_status = 500
    code = "inconsistent_collection"


class DatabaseDamaged(EmbedsearchError):
    """The metadata database itself is damaged (SQLite's page check fails): no repair of a
    collection can fix it; the message says what to do."""

    http_status = 500
    code = "database_damaged"


class RepairIncomplete(EmbedsearchError):
    """``index repair`` fixed what it could, and names the problems that remain."""

    http_status = 500
    code = "repair_incomplete"


class CollectionLocked(EmbedsearchError):
    http_status = 409
    code = "collection_locked"


class OutOfVocabulary(EmbedsearchError):
    """A word the model has no vector for (and no subwords to build one from)."""

    http_status = 404
    code = "out_of_vocabulary"


class ModelFormatError(EmbedsearchError):
    """A vectors or model file that cannot be read: wrong format, inconsistent dimensions..."""

    http_status = 422
    code = "model_format_error"


class OutputExists(EmbedsearchError):
    """An output path that exists and would be replaced without ``--overwrite``."""

    usage = True
    http_status = 409
    code = "output_exists"


class ResponseTooLarge(EmbedsearchError):
    """A result bigger than the service sends in one response."""

    usage = True
    http_status = 413
    code = "response_too_large"


class BrokenModel(ModelFormatError):
    """A model directory that cannot be loaded: damaged or missing files, or weights only in
    pickle format (which embedsearch never loads)."""

    usage = True
    http_status = 422
    code = "broken_model"


class ModelOutsideModelsDir(BrokenModel):
    """A model under the service's models directory with a file (or a module directory, or a
    configuration entry) that leads outside it: it is not loaded."""

    code = "model_outside_models_dir"


class ClusterUnavailable(EmbedsearchError):
    """Ray is not installed, cannot be reached, or a sharded collection's shard did not answer in
    time (a search never returns a subset of the shards' results)."""

    http_status = 503
    code = "cluster_unavailable"


class InsufficientStorage(EmbedsearchError):
    """The disk or the database is full (ENOSPC, EDQUOT, SQLite's SQLITE_FULL, PostgreSQL's
    disk_full); the write that met it was not committed."""

    http_status = 507
    code = "insufficient_storage"


#: the errors that say a disk (or a quota) is full
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def disk_full_reason(exc: BaseException) -> str | None:
    """What a full disk or database said, when ``exc`` is that (an OSError with ENOSPC or
    EDQUOT, SQLite's SQLITE_FULL or PostgreSQL's disk_full through SQLAlchemy); else None."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    orig = getattr(exc, "orig", None)  # a SQLAlchemy DBAPIError wraps the driver's exception
    if orig is None:
        return None
    if isinstance(orig, OSError) and orig.errno in DISK_FULL_ERRNOS:
        return disk_full_reason(orig)
    first = (str(orig).strip().splitlines() or [""])[0]
    if getattr(orig, "sqlite_errorname", None) == "SQLITE_FULL" or "database or disk is full" in first:
        return f"the database: {first}"
    if getattr(orig, "pgcode", None) == "53100":  # PostgreSQL's disk_full
        return f"the database: {first}"
    return None


def insufficient_storage(exc: BaseException) -> InsufficientStorage | None:
    """The :class:`InsufficientStorage` a disk-full ``exc`` means, or None."""
    reason = disk_full_reason(exc)
    if reason is None:
        return None
    return InsufficientStorage(
        f"insufficient storage: {reason}; the write in progress was not committed "
        "(free some space and run it again: documents already stored are recognised and skipped)"
    )
