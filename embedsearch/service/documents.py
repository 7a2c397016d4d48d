"""Routes for documents without a query and for collections by name (create, drop).

Each endpoint calls one function of :mod:`embedsearch.store.documents_api`, the module the CLI's
``index get / docs / count / create`` use; errors are the library's domain exceptions, turned into
JSON by the app's handlers (404 unknown collection or document, 409 exists, 422 bad filter,
cursor or model, 401/403 key).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from embedsearch.passages import MIN_TOKENS
from embedsearch.service.constraints import CURSOR, INDEX_FIELD, INDEX_SPEC
from embedsearch.service.middleware import HTTPError
from embedsearch.service.requests import WHERE_HELP, Where
from embedsearch.service.schemas import (
    MODEL_NAME_SCHEMA,
    READ,
    STRICT,
    WRITE,
    CollectionInfo,
    CollectionName,
    CountResponse,
    DocumentId,
    DocumentOut,
    DocumentsResponse,
    DropResponse,
    JsonInt,
    PageResponse,
    errors,
    json_int,
)
from embedsearch.service.state import State, Writer
from embedsearch.store.documents_api import DEFAULT_LIMIT, MAX_CURSOR_CHARS, MAX_IDS, MAX_LIMIT

router = APIRouter()

_WHERE = Field(None, description=WHERE_HELP + " All documents when null.")
#: a payload-index field (checked by payload.validate_field: 422 invalid_argument)
IndexField = Annotated[str, Field(json_schema_extra={"minLength": 1, "maxLength": 256, "pattern": INDEX_FIELD})]
#: passage settings: none of them with "chunking": false
NO_CHUNK_SETTINGS_WITHOUT_CHUNKING = {
    "anyOf": [
        {"properties": {"chunking": {"enum": [True, None]}}},
        {"properties": {"chunk_tokens": {"type": "null"}, "chunk_overlap": {"type": "null"}}},
    ]
}


class GetRequest(BaseModel):
    ids: list[str] = Field(..., min_length=1, max_length=MAX_IDS, description="Document ids.")

    model_config = {**STRICT, "json_schema_extra": {"examples": [{"ids": ["a1", "a2"]}]}}


class ListRequest(BaseModel):
    where: Where = _WHERE
    limit: JsonInt = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Documents per page.")
    cursor: Annotated[str, Field(max_length=MAX_CURSOR_CHARS, json_schema_extra={"pattern": CURSOR})] | None = Field(
        None,  # the pattern is checked by decode_cursor: 422 invalid_cursor
        description="The next_cursor of the previous page, unchanged; null (or empty) for the first. A cursor is the "
        "server's token for this collection and filter: one it did not hand out for them is a 422 invalid_cursor.",
    )

    model_config = {**STRICT, "json_schema_extra": {"examples": [{"where": {"source": "lee"}, "limit": 100, "cursor": None}]}}


class CountRequest(BaseModel):
    where: Where = _WHERE

    model_config = {**STRICT, "json_schema_extra": {"examples": [{"where": {"year": {"$gte": 2001}}}]}}


class CreateRequest(BaseModel):
    """What depends on the model, which no schema of this request can state (422 beyond): the model
    must exist; PQ{m} needs an m that divides the model's dimension; passages need a model with a
    tokenizer, at most its window of tokens each (default: the window, for models that have one);
    and chunk_overlap is at most half of chunk_tokens (a comparison of two fields)."""

    model: str = Field(
        "minilm",
        min_length=1,
        max_length=128,
        json_schema_extra=MODEL_NAME_SCHEMA,
        description="A built-in model (minilm, hashing) or the name of a model directory under --models-dir "
        "(422 unknown_model when there is none).",
    )
    index: str = Field(
        "auto",
        min_length=1,
        max_length=64,
        json_schema_extra={"pattern": INDEX_SPEC},  # checked by validate_spec: 422 invalid_index_spec
        description="FAISS index spec, any letter case: auto, Flat, HNSW{M: 4-256}, SQ8, IVF{nlist: 1-1048576} alone or "
        "with ,Flat / ,SQ8 / ,PQ{m}, the last two optionally with ,Refine (re-ranked from stored full vectors).",
    )
    metric: Literal["cosine", "ip"] = "cosine"
    pooling: Literal["mean", "sif"] | None = Field(None, description="Word-vector models: how word vectors are pooled.")
    oov: Literal["skip", "subword"] | None = Field(None, description="Word-vector models: what unknown words become.")
    index_fields: list[IndexField] = Field(
        default_factory=list,
        max_length=32,
        description="Metadata fields to build payload indexes on (filters on them read an index, not every document): "
        "dotted paths of 1-8 segments, none of them empty, starting with '$', all digits (an array position) or "
        "holding control characters.",
    )
    lexical: bool = Field(True, description="Build a lexical (full-text) index, for search modes lexical and hybrid.")
    chunk_tokens: json_int(MIN_TOKENS, 1_000_000) | None = Field(
        None,
        description="Split documents into passages of at most this many tokens of the model's tokenizer, one vector "
        "each (16 to the model's window). Default: the model's window for sentence models, none for others.",
    )
    chunk_overlap: json_int(0, 500_000) | None = Field(
        None, description="Tokens consecutive passages share, at most half of chunk_tokens (default 0)."
    )
    shards: JsonInt = Field(1, ge=1, le=256, description="Ray actors the collection's search fans out to (needs the ray extra).")
    chunking: bool | None = Field(
        None,
        description="false: one vector per document (text past the model's window is cut off). "
        "Default: as chunk_tokens says.",
    )

    model_config = {
        **STRICT,
        "json_schema_extra": {**NO_CHUNK_SETTINGS_WITHOUT_CHUNKING, "examples": [{"model": "minilm", "index": "auto"}]},
    }


@router.get("/collections/{name}/documents/{doc_id:path}", response_model=None,
            responses={200: {"model": DocumentOut}, **errors(*READ)})  # fmt: skip
def get_document(name: CollectionName, doc_id: DocumentId, state: State) -> dict[str, Any]:
    from embedsearch.store.documents_api import get_document

    return get_document(state.collection(name), doc_id)


@router.post("/collections/{name}/documents/get", response_model=None,
             responses={200: {"model": DocumentsResponse}, **errors(*READ)})  # fmt: skip
def get_documents(name: CollectionName, body: GetRequest, state: State) -> dict[str, Any]:
    from embedsearch.store.documents_api import get_documents

    docs, missing = get_documents(state.collection(name), body.ids)
    return {"collection": name, "documents": docs, "not_found": missing}


@router.post("/collections/{name}/documents/list", response_model=None,
             responses={200: {"model": PageResponse}, **errors(*READ)})  # fmt: skip
def list_documents(name: CollectionName, body: ListRequest, state: State) -> dict[str, Any]:
    from embedsearch.store.documents_api import list_documents

    return {"collection": name, **list_documents(state.collection(name), body.where, body.limit, body.cursor).to_dict()}


@router.post("/collections/{name}/count", response_model=None, responses={200: {"model": CountResponse}, **errors(*READ)})
def count_documents(name: CollectionName, body: CountRequest, state: State) -> dict[str, Any]:
    from embedsearch.store.documents_api import count_documents

    return {"collection": name, "count": count_documents(state.collection(name), body.where)}


@router.put("/collections/{name}", status_code=201, response_model=None,
            responses={201: {"model": CollectionInfo}, **errors(*WRITE)})  # fmt: skip
def create_collection(name: CollectionName, body: CreateRequest, state: Writer) -> dict[str, Any]:
    from embedsearch.errors import UnknownModel
    from embedsearch.store.documents_api import create_collection

    options = {"pooling": body.pooling, "oov": body.oov}
    spec = _model_spec(state, body.model)
    try:
        coll = create_collection(state.store, name, spec, body.index, body.metric,
                                 options=options, device=state.device, index_fields=body.index_fields,
                                 lexical=body.lexical, chunk_tokens=body.chunk_tokens,
                                 chunk_overlap=body.chunk_overlap, chunking=body.chunking,
                                 shards=body.shards, root=state.confinement(spec))  # fmt: skip
    except UnknownModel as exc:  # a model the body names: the body is wrong, not the URL
        raise HTTPError(422, "unknown_model", str(exc)) from None
    return coll.info()


@router.delete("/collections/{name}", response_model=None, responses={200: {"model": DropResponse}, **errors(*WRITE)})
def drop_collection(name: CollectionName, state: Writer) -> dict[str, Any]:
    from embedsearch.store.documents_api import drop_collection

    return drop_collection(state.store, name)


def _model_spec(state, model: str) -> str:
    """A built-in model, or a model directory under the service's models directory (never any
    other path on the server). An unknown one is a 422: the request's body is wrong."""
    from embedsearch.embedders import BUILTIN_MODELS
    from embedsearch.errors import InvalidName, UnknownModel

    if model in BUILTIN_MODELS:
        return model
    try:
        return str(state.model_path(model))
    except (UnknownModel, InvalidName) as exc:
        raise HTTPError(422, "unknown_model", f"{exc}; built-in models: {', '.join(BUILTIN_MODELS)}") from None
