"""What the OpenAPI document says about the service: strict request types, the shapes of the
answers, and every error status each endpoint can give.

Request models validate strictly (:data:`STRICT`): ``"k": true`` or ``"k": "5"`` is a 422, never 1
or 5; a JSON number with an integral value (``5.0``) is an integer, as JSON Schema says. Response
models are documentation only (endpoints return plain dicts with ``response_model=None``, so a
20,000-hit answer is not validated again); the schemathesis run in ``tests/test_openapi.py``
checks that the answers match them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from embedsearch.config import _NAME_RE

#: request models: no coercion between JSON types (true is not 1, "5" is not 5)
STRICT = ConfigDict(strict=True)


def _integral(value: Any) -> Any:
    """5.0 is the integer 5 in JSON; 5.5, true and "5" are left for the strict check to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: an integer field that takes 5 and 5.0 but refuses true and "5"
JsonInt = Annotated[int, BeforeValidator(_integral)]


def json_int(ge: int, le: int) -> Any:
    """:data:`JsonInt` within [ge, le], for optional fields (the bounds must come before the
    validator for the JSON schema to show them as minimum and maximum)."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_integral)]


# --- path parameters: the pattern is documented; a name outside it is refused with 400 invalid_name ---

#: names never hold '..' (a pattern with a lookahead would say it too, but not every tool reads one)
NOT_TWO_DOTS = {"not": {"pattern": r"\.\."}}
CollectionName = Annotated[
    str,
    Path(
        description="A collection: 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit, no '..'.",
        json_schema_extra={"pattern": _NAME_RE.pattern, **NOT_TWO_DOTS},
    ),  # fmt: skip
]
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
MODEL_NAME_SCHEMA = {"pattern": MODEL_NAME, "maxLength": 128, **NOT_TWO_DOTS}
ModelName = Annotated[
    str,
    Path(description="A model directory directly under the service's --models-dir.", json_schema_extra=MODEL_NAME_SCHEMA),
]
DocumentId = Annotated[str, Path(description="A document id; it may contain '/'.")]


# --- errors -------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    code: str = Field(..., description="Machine-readable reason, e.g. collection_not_found, invalid_filter.")
    message: str = Field(..., description="One line for a person: what is wrong and what to do.")
    request_id: str | None = Field(..., description="Also in the X-Request-ID header and the server's log line.")


class ErrorResponse(BaseModel):
    error: ErrorBody

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "error": {
                        "code": "collection_not_found",
                        "message": "collection 'x' does not exist",
                        "request_id": "5f1c0e7a9b2d4c11",
                    }
                }
            ]  # fmt: skip
        }
    }


ERRORS = {
    400: "A Host header this service does not answer (see --allowed-host), or an invalid collection or model name.",
    401: "A write without the API key (send X-API-Key or Authorization: Bearer).",
    403: "A wrong API key, a service started with --read-only, or writes beyond loopback without a key.",
    404: "No such collection, document, model or word.",
    409: "The collection exists already, is locked by another writer, or its model changed since it was built.",
    413: "A request body over 8 MiB, or hits carrying over 32 MiB of text and metadata.",
    422: "A request that is not valid: malformed JSON or body, wrong types, a value out of range, a bad filter, "
    "cursor, model, index spec or vector dimension, or a batch asking for more than 20,000 hits.",
    500: "An internal error: a damaged collection (see index verify / index repair) or a bug; the message "
    "names the request id to look up in the server log.",
    503: "A sharded collection's Ray cluster cannot be reached, or a shard did not answer in time (no partial result).",
    507: "Insufficient storage: the disk (or the database) is full; nothing was written. The message names the reason.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of an endpoint that can answer these error statuses (with the ones
    every endpoint can give: 400 for a foreign Host header, 413 for an oversized body, 500)."""
    codes = sorted({400, 413, 500, *statuses})
    return {code: {"model": ErrorResponse, "description": ERRORS[code]} for code in codes}


#: what a read of a collection can answer; writes add the key, storage and lock statuses
READ = (404, 409, 422)
SEARCH = (*READ, 503)  # searches of a sharded collection run on Ray
WRITE = (401, 403, 404, 409, 422, 507)


# --- answers ------------------------------------------------------------------------------------

Metadata = dict[str, Any]


class Highlight(BaseModel):
    term: str = Field(..., description="The query word (lower-cased) found in the text.")
    start: int = Field(..., description="Character offset of the occurrence in the hit's text.")
    end: int = Field(..., description="End offset (exclusive): text[start:end] is the word as written.")


class Ranks(BaseModel):
    dense: int | None = Field(..., description="Rank (from 1) among the dense candidates; null when not among them.")
    lexical: int | None = Field(..., description="Rank (from 1) among the lexical matches; null when not among them.")


class HitOut(BaseModel):
    id: str
    score: float = Field(
        ...,
        description="dense: cosine or inner product; lexical: BM25 (SQLite) or ts_rank_cd (PostgreSQL); "
        "hybrid: the fused score (relative or weighted: a weighted sum of normalised scores in [0, 1]; rrf: "
        "reciprocal rank fusion). Higher is better in every mode.",
    )
    text: str
    metadata: Metadata
    mode: Literal["dense", "lexical", "hybrid"] | None = Field(None, description="The mode that found it (text queries).")
    ranks: Ranks | None = Field(None, description="Hybrid mode: its rank on each side before fusion.")
    highlights: list[Highlight] | None = Field(None, description="The query's words in the text, with offsets.")
    passage: str | None = Field(
        None, description="Collections split into passages: the passage that matched (dense and hybrid modes), text[start:end]."
    )
    start: int | None = Field(None, description="Character offset of the passage in the text.")
    end: int | None = Field(None, description="End offset (exclusive) of the passage in the text.")


class SearchResponse(BaseModel):
    collection: str
    k: int
    mode: Literal["dense", "lexical", "hybrid"]
    took_ms: float
    hits: list[HitOut]


class QueryHits(BaseModel):
    query: str
    hits: list[HitOut]


class BatchSearchResponse(BaseModel):
    collection: str
    k: int
    mode: Literal["dense", "lexical", "hybrid"]
    results: list[QueryHits]


class AddResponse(BaseModel):
    collection: str
    added: int
    updated: int
    unchanged: int
    commits: int
    generation: int
    passages: int = Field(0, description="Vectors written: one per passage in a collection split into passages.")
    truncated: int = Field(
        0, description="Documents longer than the model's window, embedded cut short (collections without chunking)."
    )


class DeleteResponse(BaseModel):
    collection: str
    deleted: int


class DocumentOut(BaseModel):
    id: str
    text: str
    metadata: Metadata


class DocumentsResponse(BaseModel):
    collection: str
    documents: list[DocumentOut]
    not_found: list[str]


class PageResponse(BaseModel):
    collection: str
    documents: list[DocumentOut]
    next_cursor: str | None


class CountResponse(BaseModel):
    collection: str
    count: int


class DropResponse(BaseModel):
    dropped: str
    documents: int


class CollectionInfo(BaseModel):
    """A collection as ``index info --json`` describes it (more fields than listed here)."""

    name: str
    model: str
    dim: int

    model_config = ConfigDict(extra="allow")


class CollectionsResponse(BaseModel):
    collections: list[dict[str, Any]]


class ModelLoadOut(BaseModel):
    collection: str
    model: str
    state: Literal["pending", "loading", "loaded", "failed", "dropped"] = Field(
        ..., description="dropped: the collection was dropped before its model loaded."
    )
    seconds: float | None = Field(..., description="How long the load took (or took to fail); null until it ends.")
    error: str | None = Field(..., description="Why the load failed.")


class HealthResponse(BaseModel):
    """Readiness. 503 with status "loading" (and Retry-After) while the models of the served
    collections load at start-up (serve --preload); 200 once every load has ended: "ok", or
    "degraded" when a model failed to load (its collection's searches fail; the others serve).
    503 "insufficient_storage" while the data directory's disk is too full for writes."""

    status: Literal["ok", "loading", "degraded", "insufficient_storage"]
    version: str
    read_only: bool
    auth: bool
    preload: bool = Field(..., description="Whether the models of the collections were loaded at start-up.")
    models: list[ModelLoadOut] = Field(..., description="The start-up load of each collection's model (empty without a preload).")
    error: str | None = Field(None, description="Degraded: why the collections could not be listed at start-up.")
    storage: str | None = Field(None, description="Insufficient storage (503): why writes would fail for lack of space.")


class LiveResponse(BaseModel):
    """Liveness: the process answers (200 while it serves, models loaded or not)."""

    status: Literal["ok"]
    version: str


class Neighbour(BaseModel):
    word: str
    score: float


class SimilarResponse(BaseModel):
    model: str
    word: str
    results: list[Neighbour]
