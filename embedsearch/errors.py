"""Domain exceptions.

The library raises these; only the CLI turns them into click exceptions and only the
service turns them into HTTP errors. ``usage`` marks errors caused by how the command was
called (exit code 2) rather than by the data or the state of a collection (exit code 1).
"""

from __future__ import annotations


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
