"""OpenAI-compatible embeddings: ``POST /v1/embeddings``, ``GET /v1/models`` and
``GET /v1/models/{model}``, in the shapes OpenAI's API uses, so OpenAI's clients (and the
frameworks built on them) embed text with the service's models by changing their base URL.

A model is named as everywhere in the service: a built-in (``minilm``, ``hashing`` ...), a model
directory directly under ``--models-dir`` (confined there, as ``/models/{name}``), or
``collection:NAME``, the model a collection was built with (with its options, and checked
against its fingerprint), which reaches a collection's model wherever it lives. Texts go
through the query batcher of their model (``service/batching.py``), so concurrent requests
share model calls. Embedding is a read: like searches it needs no API key, and it is served
with ``--read-only``. Errors are in OpenAI's shape (``middleware.OpenAIErrors``).
"""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from embedsearch.service.middleware import HTTPError
from embedsearch.service.requests import MAX_EMBED_DIMENSIONS, MAX_EMBED_INPUTS, MAX_TEXT_CHARS
from embedsearch.service.schemas import ERRORS, MODEL_NAME, STRICT, json_int
from embedsearch.service.state import ServiceState, State

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

#: a model id naming the model of a collection: ``collection:news``
COLLECTION = "collection:"
#: model directories whose kind embeds text (a /v1 request may name them)
EMBEDDING_KINDS = ("sentence-transformers", "static", "word-vectors", "fasttext")
MAX_MODEL_CHARS = 200
MODEL_ID = r"^(collection:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}|[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$"
MODEL_HELP = (
    "A built-in model (minilm, minilm-onnx, minilm-int8, hashing), a model directory under the service's "
    "--models-dir, or collection:NAME for the model a collection was built with. GET /v1/models lists them."
)


# --- the request --------------------------------------------------------------------------------


def _texts(value: Any) -> list[str]:
    """OpenAI's ``input``, text only: a string or an array of 1 to MAX_EMBED_INPUTS strings of
    1 to MAX_TEXT_CHARS characters each. Token-id arrays (OpenAI's other form) are refused by
    name: ids of OpenAI's tokenizer mean nothing to these models."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise PydanticCustomError("input_type", "must be a string or an array of strings")
    if items and all(_token_ids(x) or (isinstance(x, list) and x and all(_token_ids(y) for y in x)) for x in items):
        raise PydanticCustomError(
            "token_input",
            "token-id arrays are not accepted: this service embeds text (each model reads it with its own "
            "tokenizer); send the text itself, a string or an array of strings (LangChain's OpenAIEmbeddings "
            "sends token ids unless given check_embedding_ctx_length=False)",
        )
    if not 1 <= len(items) <= MAX_EMBED_INPUTS:
        raise PydanticCustomError("input_count", f"must hold 1 to {MAX_EMBED_INPUTS} texts (got {len(items)})")
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise PydanticCustomError("input_type", f"input[{i}] is not a string: send an array of strings")
        if not 1 <= len(text) <= MAX_TEXT_CHARS:
            raise PydanticCustomError("input_length", f"input[{i}] has {len(text)} characters; a text has 1 to {MAX_TEXT_CHARS}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise PydanticCustomError("input_text", f"input[{i}] holds a lone surrogate (not valid Unicode text)") from None
    return list(items)


def _token_ids(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}
TextInput = Annotated[
    list[str],
    PlainValidator(_texts),
    WithJsonSchema({"anyOf": [_TEXT, {"type": "array", "items": _TEXT, "minItems": 1, "maxItems": MAX_EMBED_INPUTS}]}),
]


class EmbeddingsRequest(BaseModel):
    input: TextInput = Field(
        ...,
        description=f"A text or an array of 1 to {MAX_EMBED_INPUTS} texts (1 to {MAX_TEXT_CHARS:,} characters each). "
        "OpenAI's token-id arrays are refused (422): send text. Text past a model's window (MiniLM: 256 word "
        "pieces) is cut off, as in searches.",
    )
    model: str = Field(..., min_length=1, max_length=MAX_MODEL_CHARS, description=MODEL_HELP)
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: arrays of numbers; base64: each vector's little-endian float32 bytes, base64-encoded."
    )
    dimensions: json_int(1, MAX_EMBED_DIMENSIONS) | None = Field(
        None,
        description="Only the model's own dimension is served: none of these models was trained for its vectors to "
        "be cut shorter (Matryoshka-style), so any other value is a 422.",
    )
    user: str | None = Field(None, description="Accepted and ignored (OpenAI uses it for abuse monitoring).")

    model_config = {**STRICT, "json_schema_extra": {"examples": [{"model": "hashing", "input": ["interest rates rise"]}]}}


# --- the answers (documentation: the endpoints return JSON they build) ------------------------


class EmbeddingOut(BaseModel):
    object: Literal["embedding"]
    index: int = Field(..., description="The text's position in the request's input.")
    embedding: list[float] | str = Field(..., description="The vector (L2-normalised), or its float32 bytes in base64.")


class Usage(BaseModel):
    prompt_tokens: int = Field(
        ...,
        description="Tokens of the input in the model's own tokenizer (word pieces for MiniLM, no special tokens, "
        "text past the window included); words for models without one (hashing, word vectors).",
    )
    total_tokens: int = Field(..., description="The same as prompt_tokens.")


class EmbeddingsResponse(BaseModel):
    object: Literal["list"]
    data: list[EmbeddingOut]
    model: str = Field(..., description="The model as the request named it.")
    usage: Usage


class ModelOut(BaseModel):
    id: str = Field(..., description="The name a request gives as its model.")
    object: Literal["model"]
    created: int = Field(..., description="Unix time the model directory or collection was made; 0 for built-ins.")
    owned_by: Literal["embedsearch", "models_dir", "collection"] = Field(
        ..., description="embedsearch (a built-in), models_dir (a directory under --models-dir) or collection."
    )


class ModelsResponse(BaseModel):
    object: Literal["list"]
    data: list[ModelOut]


class OpenAIErrorBody(BaseModel):
    message: str = Field(..., description="One line for a person: what is wrong and what to do.")
    type: Literal["invalid_request_error", "authentication_error", "permission_error", "server_error"]
    param: str | None = Field(..., description="The request field at fault, when one is.")
    code: str = Field(..., description="Machine-readable reason, e.g. model_not_found, invalid_request.")
    request_id: str | None = Field(..., description="Also in the X-Request-ID header and the server's log line.")


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody


def openai_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error ``responses`` of a /v1 endpoint: the service's statuses, OpenAI's body."""
    codes = sorted({400, 413, 500, *statuses})
    return {code: {"model": OpenAIErrorResponse, "description": ERRORS[code]} for code in codes}


ModelId = Annotated[str, Path(description=MODEL_HELP, json_schema_extra={"pattern": MODEL_ID})]


# --- the routes ---------------------------------------------------------------------------------


@router.post("/embeddings", response_model=None, responses={200: {"model": EmbeddingsResponse}, **openai_errors(404, 409, 422)})
def create_embeddings(body: EmbeddingsRequest, state: State) -> JSONResponse:
    """Embed texts with a model the service serves, as OpenAI's embeddings endpoint does."""
    embedder = load_model(state, body.model)
    if body.dimensions is not None and body.dimensions != embedder.dim:
        raise HTTPError(
            422,
            "dimensions_not_supported",
            f"model {body.model!r} makes {embedder.dim}-d vectors and was not trained for shorter ones (Matryoshka-style), "
            f"which lose quality when cut; leave dimensions out or give {embedder.dim}",
            param="dimensions",
        )
    vectors = state.embed_queries(embedder, body.input)  # batched with concurrent requests and searches
    tokens = count_tokens(embedder, body.input)
    if body.encoding_format == "base64":
        rows: list[Any] = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
    else:
        rows = vectors.tolist()
    data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    # a JSONResponse, not a dict: FastAPI's encoder would walk every float in Python first
    return JSONResponse({"object": "list", "data": data, "model": body.model, "usage": usage})


@router.get("/models", response_model=None, responses={200: {"model": ModelsResponse}, **openai_errors()})
def list_models(state: State) -> dict[str, Any]:
    """The models a request can name: the built-ins, the embedding models under --models-dir
    and the model of each collection."""
    return {"object": "list", "data": served_models(state)}


@router.get("/models/{model}", response_model=None, responses={200: {"model": ModelOut}, **openai_errors(404, 422)})
def describe_model(model: ModelId, state: State) -> dict[str, Any]:
    """One model, as the list describes it (nothing is loaded)."""
    found = served_models(state, only=model)
    if not found:
        raise not_found(model)
    return found[0]


# --- models -------------------------------------------------------------------------------------


def not_found(name: str) -> HTTPError:
    return HTTPError(404, "model_not_found", f"the model {name!r} does not exist here; GET /v1/models lists the models "
                     "served", param="model")  # fmt: skip


def _entry(name: str, created: int, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": owner}


def _unix(stamp: str | None) -> int:
    """An ISO time (naive ones are UTC, as the store writes them) as Unix seconds; 0 when unknown."""
    try:
        when = datetime.fromisoformat(str(stamp))
    except ValueError:
        return 0
    return int((when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp())


def served_models(state: ServiceState, only: str | None = None) -> list[dict[str, Any]]:
    """OpenAI model objects for the models a request can name (``only``: just that one, if served)."""
    from embedsearch.embedders import BUILTIN_MODELS
    from embedsearch.models import list_models as model_dirs

    out = [_entry(name, 0, "embedsearch") for name in BUILTIN_MODELS if only in (None, name)]
    if only is None or (only not in BUILTIN_MODELS and not only.startswith(COLLECTION)):
        for m in model_dirs(state.models_dir):
            name = FilePath(m["path"]).name
            if only not in (None, name) or name in BUILTIN_MODELS or m["kind"] not in EMBEDDING_KINDS:
                continue
            if model_dir(state, name) is not None:
                out.append(_entry(name, _unix(m.get("created_at")), "models_dir"))
    if only is None or only.startswith(COLLECTION):
        for c in state.store.list():
            if only in (None, COLLECTION + c["name"]):
                out.append(_entry(COLLECTION + c["name"], _unix(c.get("created_at")), "collection"))
    return out


def model_dir(state: ServiceState, name: str) -> FilePath | None:
    """The model directory ``name`` names under --models-dir, confined there as ``/models/{name}``
    is (names cannot climb out, symlinks out are not served); None when there is none."""
    from embedsearch.errors import EmbedsearchError

    if not re.fullmatch(MODEL_NAME, name):
        return None
    try:
        return state.model_path(name)
    except EmbedsearchError:
        return None


def load_model(state: ServiceState, name: str):
    """The embedder a request's ``model`` names, from the process's model cache (the one the
    collections' searches use, so a model serves both from one load). Unknown: 404."""
    from embedsearch.embedders import BUILTIN_MODELS, load_embedder
    from embedsearch.errors import CollectionNotFound, InvalidName

    if name in BUILTIN_MODELS:
        return load_embedder(name, device=state.device)
    if name.startswith(COLLECTION):
        try:
            coll = state.collection(name[len(COLLECTION) :])
        except (CollectionNotFound, InvalidName):
            raise not_found(name) from None
        return coll.load_embedder(device=state.device)
    path = model_dir(state, name)
    if path is None:
        raise not_found(name)
    from embedsearch.models import read_manifest

    kind = read_manifest(path)["kind"]
    if kind not in EMBEDDING_KINDS:
        raise HTTPError(404, "model_not_found", f"the model {name!r} is a {kind} model, which does not embed text",
                        param="model")  # fmt: skip
    return load_embedder(str(path), device=state.device)


def count_tokens(embedder, texts: list[str]) -> int:
    """Tokens in ``texts``: the model's own tokenizer where it has one (no special tokens, the
    whole text, also past the model's window), else embedsearch's words (what hashing and word
    vectors read)."""
    tokenizer = embedder.chunk_tokenizer()
    if tokenizer is not None:
        from embedsearch.passages import token_counts

        return sum(token_counts(tokenizer, texts))
    from embedsearch.corpus import tokenize

    return sum(len(tokenize(t)) for t in texts)
