"""Request bodies the service accepts, and its limits (the README's limits table names each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from embedsearch.service.constraints import WHERE_SCHEMA
from embedsearch.service.schemas import (
    MODEL_NAME_SCHEMA,
    STRICT,
    JsonInt,
    json_int,
)

STATIC = Path(__file__).resolve().parent / "static"
MAX_K = 1000
MAX_QUERY_CHARS = 10_000
MAX_BATCH = 256
MAX_HITS = 20_000  # queries x k in one request
MAX_RESPONSE_TEXT = 32 << 20  # bytes of hit text and metadata in one response
MAX_DOCUMENTS = 1000
MAX_BODY_BYTES = 8 * 2**20
MAX_ID_CHARS = 1024
MAX_TEXT_CHARS = 1_000_000
MAX_WORD_CHARS = 200
MAX_PROBE = 65536  # nprobe and ef_search
MAX_EMBED_DIMENSIONS = 65536  # the schema's bound on /v1/embeddings' `dimensions` (only the model's own is served)
MAX_EMBED_INPUTS = 2048  # texts per /v1/embeddings request (OpenAI's own limit); each up to MAX_TEXT_CHARS
FLOAT32_MAX = 3.4028234663852886e38  # a query vector's values are float32


# --- request and response models ---------------------------------------------------------------


SearchMode = Literal["dense", "lexical", "hybrid"]
MODE_HELP = (
    "dense (embeddings), lexical (the full-text index: BM25 on SQLite, ts_rank_cd on PostgreSQL) or hybrid "
    "(both, fused). Default: hybrid when the collection has a lexical index, else dense. A 'vector' query is dense only."
)
FUSION_HELP = (
    "Hybrid mode: relative (alpha x dense + (1 - alpha) x lexical, each side's scores divided by its best), rrf "
    "(reciprocal rank fusion, k=60) or weighted (the same sum, min-max normalised). Default: the collection's "
    "(index alter --fusion), else relative."
)
ALPHA_HELP = (
    "With fusion 'relative' or 'weighted': the dense side's weight, 0 to 1 (default: the collection's, else 0.85 "
    "relative, 0.5 weighted). Not with fusion 'rrf' (given here, or the collection's when none is given: 422)."
)
WHERE_HELP = 'Metadata filter, e.g. {"source": "lee", "year": {"$gte": 2000}}; null: no filter.'
#: a filter field: the grammar in the document's components (service/constraints.py)
Where = Annotated[dict[str, Any] | None, WithJsonSchema(WHERE_SCHEMA)]
#: alpha weighs the two sides of relative and weighted fusion; rrf has no weight
ALPHA_NOT_WITH_RRF = {
    "anyOf": [
        {"properties": {"fusion": {"enum": ["relative", "weighted", None]}}},
        {"properties": {"alpha": {"type": "null"}}},
    ]
}
#: exactly one of query (text, any mode) and vector (dense mode only)
QUERY_XOR_VECTOR = {
    "oneOf": [
        {"required": ["query"], "properties": {"query": {"type": "string"}, "vector": {"type": "null"}}},
        {
            "required": ["vector"],
            "properties": {"vector": {"type": "array"}, "query": {"type": "null"}, "mode": {"enum": ["dense", None]}},
        },
    ]
}


class SearchRequest(BaseModel):
    """Exactly one of ``query`` and ``vector``; ``alpha`` only with relative or weighted fusion.
    What no schema of this request can state, since it is the collection's: the vector's length
    is the collection's dimension (GET /collections/{name}: ``dim``; 422 dimension_mismatch),
    modes lexical and hybrid need its lexical index, and an ``alpha`` without ``fusion`` needs a
    collection whose own fusion is not rrf (422 invalid_argument)."""

    query: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS, description="Text to embed and search for.")
    vector: list[Annotated[float, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]] | None = Field(
        None, min_length=1, description="A raw query vector of the collection's dimension, instead of text (dense mode only)."
    )
    k: JsonInt = Field(10, ge=1, le=MAX_K)
    where: Where = Field(None, description=WHERE_HELP)
    nprobe: json_int(1, MAX_PROBE) | None = Field(None, description="IVF lists to visit (more: better recall, slower).")
    ef_search: json_int(1, MAX_PROBE) | None = Field(None, description="HNSW candidate list size (more: better recall, slower).")
    mode: SearchMode | None = Field(None, description=MODE_HELP)
    fusion: Literal["relative", "rrf", "weighted"] | None = Field(None, description=FUSION_HELP)
    alpha: Annotated[float, Field(ge=0, le=1)] | None = Field(None, description=ALPHA_HELP)

    model_config = {
        **STRICT,
        "json_schema_extra": {
            "allOf": [QUERY_XOR_VECTOR, ALPHA_NOT_WITH_RRF],
            "examples": [
                {"query": "interest rates", "k": 5, "where": {"source": "lee"}},
                {"query": "error E1234", "k": 5, "mode": "hybrid", "fusion": "weighted", "alpha": 0.7},
            ],
        },
    }


class BatchSearchRequest(BaseModel):
    """As a search, for up to 256 texts. ``len(queries) x k`` is at most 20,000: a product of two
    fields, which JSON Schema cannot state (422 invalid_argument beyond)."""

    queries: list[Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]] = Field(
        ..., min_length=1, max_length=MAX_BATCH, description=f"Query texts; len(queries) x k is at most {MAX_HITS}."
    )
    k: JsonInt = Field(10, ge=1, le=MAX_K, description=f"Hits per query; len(queries) x k is at most {MAX_HITS}.")
    where: Where = Field(None, description=WHERE_HELP)
    mode: SearchMode | None = Field(None, description=MODE_HELP)
    fusion: Literal["relative", "rrf", "weighted"] | None = Field(None, description=FUSION_HELP)
    alpha: Annotated[float, Field(ge=0, le=1)] | None = Field(None, description=ALPHA_HELP)

    model_config = {
        **STRICT,
        "json_schema_extra": {**ALPHA_NOT_WITH_RRF, "examples": [{"queries": ["bushfires", "cricket"], "k": 3}]},
    }


class DocumentIn(BaseModel):
    id: str = Field(..., min_length=1, max_length=MAX_ID_CHARS)
    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)

    model_config = STRICT


class DocumentsRequest(BaseModel):
    documents: list[DocumentIn] = Field(..., min_length=1, max_length=MAX_DOCUMENTS)

    model_config = {
        **STRICT,
        "json_schema_extra": {
            "examples": [{"documents": [{"id": "a1", "text": "Rates rise again", "metadata": {"source": "web"}}]}]
        },
    }


class SimilarRequest(BaseModel):
    model: str = Field(
        ...,
        json_schema_extra=MODEL_NAME_SCHEMA,
        description="Name of a word-vector model directory under the service's models directory (400 invalid_name "
        "outside the pattern, 404 when there is none).",
    )
    word: str = Field(..., min_length=1, max_length=MAX_WORD_CHARS)
    k: JsonInt = Field(10, ge=1, le=MAX_K)

    model_config = STRICT


# --- state -------------------------------------------------------------------------------------
