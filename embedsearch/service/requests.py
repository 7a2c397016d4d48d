"""Request bodies the service accepts, and its limits (the README's limits table names each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from embedsearch.service.schemas import (
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
    "relative, 0.5 weighted)."
)


class SearchRequest(BaseModel):
    query: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS, description="Text to embed and search for.")
    vector: list[float] | None = Field(None, description="A raw query vector of the collection's dimension, instead of text.")
    k: JsonInt = Field(10, ge=1, le=MAX_K)
    where: dict[str, Any] | None = Field(None, description='Metadata filter, e.g. {"source": "lee", "year": {"$gte": 2000}}.')
    nprobe: json_int(1, MAX_PROBE) | None = Field(None, description="IVF lists to visit (more: better recall, slower).")
    ef_search: json_int(1, MAX_PROBE) | None = Field(None, description="HNSW candidate list size (more: better recall, slower).")
    mode: SearchMode | None = Field(None, description=MODE_HELP)
    fusion: Literal["relative", "rrf", "weighted"] | None = Field(None, description=FUSION_HELP)
    alpha: Annotated[float, Field(ge=0, le=1)] | None = Field(None, description=ALPHA_HELP)

    model_config = {
        **STRICT,
        "json_schema_extra": {
            "examples": [
                {"query": "interest rates", "k": 5, "where": {"source": "lee"}},
                {"query": "error E1234", "k": 5, "mode": "hybrid", "fusion": "weighted", "alpha": 0.7},
            ]
        },
    }


class BatchSearchRequest(BaseModel):
    queries: list[Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]] = Field(
        ..., min_length=1, max_length=MAX_BATCH
    )
    k: JsonInt = Field(10, ge=1, le=MAX_K, description=f"Hits per query; queries x k is at most {MAX_HITS}.")
    where: dict[str, Any] | None = None
    mode: SearchMode | None = Field(None, description=MODE_HELP)
    fusion: Literal["relative", "rrf", "weighted"] | None = Field(None, description=FUSION_HELP)
    alpha: Annotated[float, Field(ge=0, le=1)] | None = Field(None, description=ALPHA_HELP)

    model_config = {**STRICT, "json_schema_extra": {"examples": [{"queries": ["bushfires", "cricket"], "k": 3}]}}


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
    model: str = Field(..., description="Name of a word-vector model directory under the service's models directory.")
    word: str = Field(..., min_length=1, max_length=MAX_WORD_CHARS)
    k: JsonInt = Field(10, ge=1, le=MAX_K)

    model_config = STRICT


# --- state -------------------------------------------------------------------------------------
