"""The HTTP service: a FastAPI app over the same library functions the CLI uses.

``create_app`` builds an app for one data directory / database; everything it holds (the
store, opened collections, metrics (``service/metrics.py``), the API key) lives on ``app.state`` from the lifespan,
never in module globals. Endpoints are plain ``def`` functions, so FastAPI runs them in its
thread pool: searches run concurrently, and a collection's own reader/writer lock keeps a
search from seeing a half-applied write. Models are loaded once per process and shared.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedsearch import __version__
from embedsearch.config import Settings
from embedsearch.errors import EmbedsearchError, insufficient_storage
from embedsearch.service.docs import install_docs
from embedsearch.service.metrics import CONTENT_TYPE, ServiceMetrics
from embedsearch.service.schemas import (
    MODEL_NAME,
    READ,
    SEARCH,
    STRICT,
    WRITE,
    AddResponse,
    BatchSearchResponse,
    CollectionInfo,
    CollectionName,
    CollectionsResponse,
    DeleteResponse,
    DocumentId,
    HealthResponse,
    JsonInt,
    ModelName,
    SearchResponse,
    SimilarResponse,
    errors,
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
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
log = logging.getLogger("embedsearch.service")


# --- request and response models ---------------------------------------------------------------


SearchMode = Literal["dense", "lexical", "hybrid"]
MODE_HELP = (
    "dense (embeddings), lexical (the full-text index: BM25 on SQLite, ts_rank_cd on PostgreSQL) or hybrid "
    "(both, fused). Default: hybrid when the collection has a lexical index, else dense. A 'vector' query is dense only."
)
FUSION_HELP = "Hybrid mode: rrf (reciprocal rank fusion, k=60) or weighted (alpha x dense + (1 - alpha) x lexical, normalised)."
ALPHA_HELP = "With fusion 'weighted': the dense side's weight, 0 to 1 (default 0.5)."


class SearchRequest(BaseModel):
    query: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS, description="Text to embed and search for.")
    vector: list[float] | None = Field(None, description="A raw query vector of the collection's dimension, instead of text.")
    k: JsonInt = Field(10, ge=1, le=MAX_K)
    where: dict[str, Any] | None = Field(None, description='Metadata filter, e.g. {"source": "lee", "year": {"$gte": 2000}}.')
    nprobe: json_int(1, MAX_PROBE) | None = Field(None, description="IVF lists to visit (more: better recall, slower).")
    ef_search: json_int(1, MAX_PROBE) | None = Field(None, description="HNSW candidate list size (more: better recall, slower).")
    mode: SearchMode | None = Field(None, description=MODE_HELP)
    fusion: Literal["rrf", "weighted"] = Field("rrf", description=FUSION_HELP)
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
    fusion: Literal["rrf", "weighted"] = Field("rrf", description=FUSION_HELP)
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


@dataclass
class ServiceState:
    settings: Settings
    api_key: str | None
    read_only: bool
    device: str | None
    batch_queries: bool = True
    models_dir: Path = field(default_factory=lambda: Path("models").absolute())
    open_writes: bool = True  # writes without a key: only when the service listens on loopback alone
    ray_address: str | None = "auto"  # the Ray cluster sharded collections are searched on
    metrics: ServiceMetrics = field(init=False)
    _word_models: dict[str, Any] = field(default_factory=dict)
    _batchers: dict[str, Any] = field(default_factory=dict)
    _store: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.metrics = ServiceMetrics(batching=self.batch_queries, batchers=lambda: list(self._batchers.values()))

    @property
    def store(self):
        with self._lock:
            if self._store is None:
                from embedsearch.cluster.shards import ShardSearchers
                from embedsearch.store import Store

                self._store = Store(self.settings, searchers=ShardSearchers(self.ray_address))
            return self._store

    def close(self) -> None:
        """Release the store's connections (the service is stopping)."""
        with self._lock:
            store, self._store = self._store, None
        searchers = getattr(store, "searchers", None)
        if searchers is not None:
            searchers.close()  # the shard actors of sharded collections

    def embed_queries(self, embedder, texts: list[str]):
        """Embed query texts, batched with concurrent requests unless batching is off."""
        if not self.batch_queries:
            return embedder.embed(texts)
        from embedsearch.service.batching import BatchingEmbedder

        key = f"{embedder.fingerprint}:{id(embedder)}"
        with self._lock:
            batcher = self._batchers.get(key)
            if batcher is None:
                batcher = self._batchers[key] = BatchingEmbedder(embedder)
        return batcher.embed(texts)

    def model_path(self, name: str) -> Path:
        """A model directory under ``models_dir``; names cannot climb out of it."""
        from embedsearch.errors import InvalidName, UnknownModel

        if not re.fullmatch(MODEL_NAME, name) or ".." in name:
            raise InvalidName(f"invalid model name {name!r}: a directory name under the models directory")
        path = self.models_dir / name
        if not (path / "manifest.json").is_file():
            raise UnknownModel(f"no model {name!r} under {self.models_dir}")
        root = self.models_dir.resolve()
        real = path.resolve()
        if real.parent != root or not (real / "manifest.json").resolve().is_relative_to(real):
            # a symlink pointing out of the models directory is not served
            raise UnknownModel(f"no model {name!r} under {self.models_dir} (it links outside the models directory)")
        return real

    def word_vectors(self, name: str):
        """A word model, loaded once and shared."""
        from embedsearch.models import load_word_vectors

        path = self.model_path(name)
        with self._lock:
            wv = self._word_models.get(name)
        if wv is None:
            wv = load_word_vectors(path)
            with self._lock:
                self._word_models[name] = wv
        return wv

    def collection(self, name: str):
        """The opened collection. The store caches it per name and reopens it when the
        collection was dropped and created again (by the CLI, say) since."""
        return self.store.open(name)


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


def require_write(
    state: Annotated[ServiceState, Depends(get_state)],
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> ServiceState:
    """Writes need the API key when one is set, and are refused in read-only mode."""
    if state.read_only:
        raise HTTPError(403, "read_only", "this service runs with --read-only; writes are disabled")
    if state.api_key is None and not state.open_writes:
        raise HTTPError(
            403,
            "writes_need_key",
            "this service listens beyond loopback without an API key, so writes are refused; start it with "
            "--api-key-file (or --allow-open-writes to accept writes from anyone who can reach it)",
        )
    if state.api_key is not None:
        given = x_api_key
        if given is None and authorization and authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        if given is None:
            raise HTTPError(401, "missing_api_key", "this endpoint needs an API key (X-API-Key or Authorization: Bearer)")
        if not hmac.compare_digest(given.encode(), state.api_key.encode()):
            raise HTTPError(403, "wrong_api_key", "the API key is not valid")
    return state


#: endpoint parameter types (module level: annotations are resolved in module globals)
State = Annotated[ServiceState, Depends(get_state)]
Writer = Annotated[ServiceState, Depends(require_write)]


class HTTPError(Exception):
    """An error response with its status and code, for conditions no domain exception names."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def check_response_size(results) -> None:
    """Refuse (413) a response whose hits carry more than MAX_RESPONSE_TEXT bytes of text and
    metadata, before serialising it."""
    from embedsearch.errors import ResponseTooLarge

    size = 0
    for hits in results:
        for h in hits:
            size += len(h.text.encode("utf-8", "replace")) + len(json.dumps(h.metadata, ensure_ascii=False)) + 64
    if size > MAX_RESPONSE_TEXT:
        raise ResponseTooLarge(
            f"the hits hold {size / 2**20:.1f} MiB of text and metadata; a response carries at most "
            f"{MAX_RESPONSE_TEXT >> 20} MiB (ask for fewer queries or a smaller k)"
        )


def _error(
    status: int, code: str, message: str, request_id: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"code": code, "message": message, "request_id": request_id}
    headers = {**(headers or {}), **({"X-Request-ID": request_id} if request_id else {})}
    return JSONResponse({"error": body}, status_code=status, headers=headers or None)


def request_id_of(scope_or_request) -> str | None:
    scope = getattr(scope_or_request, "scope", scope_or_request)
    return (scope.get("state") or {}).get("request_id")


class HostCheck:
    """Answer 400 to a request whose Host header names no allowed host: a page that rebinds
    its own DNS name to 127.0.0.1 reaches the service with its own name in Host."""

    def __init__(self, app, allowed: list[str]) -> None:
        self.app = app
        self.allowed = {h.lower().strip("[]") for h in allowed}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
            name = host[1 : host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
            if name not in self.allowed:
                from starlette.requests import Request as StarletteRequest

                allowed = ", ".join(sorted(self.allowed))
                message = f"Host {host!r} is not served here (allowed: {allowed}; see --allowed-host)"
                response = _error(400, "bad_host", message, request_id_of(StarletteRequest(scope)))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequestId:
    """ASGI middleware: every request gets an id (the client's X-Request-ID when it is a short
    token, else a new one), returned in the X-Request-ID header and in error bodies, and
    written in the server's log line for the error, so a user's report finds the log."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def allowed_methods(app, path: str) -> list[str]:
    """The methods of the route template that serves ``path``: as OpenAPI matches paths, a
    concrete template (``/collections/{name}/documents/get``) wins over a templated one
    (``/collections/{name}/documents/{doc_id}``) that also matches; the Allow header of a 405
    says the same as the schema. Static mounts answer GET and HEAD."""
    from starlette.routing import Mount, Route

    def flat(routes):
        for route in routes:
            included = getattr(getattr(route, "original_router", None), "routes", None)  # FastAPI's include_router
            yield from flat(included) if included is not None else (route,)

    by_template: dict[str, set[str]] = {}
    for route in flat(app.router.routes):
        if isinstance(route, Route) and route.path_regex.fullmatch(path):
            by_template.setdefault(route.path, set()).update(route.methods or ())
        elif isinstance(route, Mount) and route.path_regex.fullmatch(path):
            by_template.setdefault(route.path + "/{path}", set()).update({"GET", "HEAD"})
    if not by_template:
        return []
    # fewest parameters first, then the longest literal text
    best = min(by_template, key=lambda t: (t.count("{"), -len(re.sub(r"\{[^}]*\}", "", t))))
    return sorted(by_template[best])


# --- the app -----------------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: refuse bodies over ``limit`` bytes, by Content-Length when sent and by
    counting the received chunks when not (chunked uploads), before the JSON is parsed."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            response = _error(413, "body_too_large", f"request bodies are limited to {self.limit} bytes", request_id_of(scope))
            return await response(scope, receive, send)
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise StarletteHTTPException(413, f"request bodies are limited to {self.limit} bytes")
            return message

        await self.app(scope, counted_receive, send)


def create_app(
    settings: Settings,
    *,
    api_key: str | None = None,
    read_only: bool = False,
    device: str | None = None,
    batch_queries: bool = True,
    ray_address: str | None = "auto",
    models_dir: Path | None = None,
    allowed_hosts: list[str] | None = None,
    open_writes: bool = True,
) -> FastAPI:
    """The service for one data directory and metadata database. ``batch_queries`` gathers
    the query embeddings of concurrent searches into one model call. ``allowed_hosts`` (names
    the Host header may carry; None: any) stops a web page from reaching a loopback service
    through DNS rebinding; ``open_writes`` off refuses writes when no API key is set."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service = ServiceState(settings, api_key, read_only, device, batch_queries, ray_address=ray_address)
        app.state.service.open_writes = open_writes
        if models_dir is not None:
            app.state.service.models_dir = Path(models_dir).absolute()
        yield
        app.state.service.close()

    app = FastAPI(
        title="embedsearch",
        version=__version__,
        description="Semantic search over embedsearch collections (FAISS vectors + SQL metadata).",
        lifespan=lifespan,
        docs_url=None,  # served from the package by install_docs (FastAPI's loads a CDN)
        redoc_url=None,  # ReDoc has no packaged copy: /docs only
    )
    install_docs(app)

    app.add_middleware(BodyLimit)

    @app.middleware("http")
    async def metrics_middleware(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        seconds = time.perf_counter() - started
        ms = seconds * 1000
        route = getattr(request.scope.get("route"), "path", "other")  # the template: bounded label values
        service = getattr(request.app.state, "service", None)
        if service is not None:
            service.metrics.observe(request.method, route, response.status_code, seconds)
        if response.status_code >= 400:
            log.warning("%s %s -> %d in %.1f ms request_id=%s", request.method, request.url.path, response.status_code, ms,
                        request_id_of(request))  # fmt: skip
        return response

    if allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed=allowed_hosts)
    app.add_middleware(RequestId)  # outermost: the id exists before anything can fail

    @app.exception_handler(EmbedsearchError)
    async def domain_error(request: Request, exc: EmbedsearchError):
        status = exc.http_status if not exc.usage or exc.http_status != 400 else 400
        return _error(status, exc.code, str(exc), request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(request: Request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110: a 405 lists the methods the resource has
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path)) or headers.get("Allow", "")
        message = str(exc.detail)
        if exc.status_code == 405:
            message = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), message, request_id_of(request), headers)

    @app.exception_handler(HTTPError)
    async def http_error(request: Request, exc: HTTPError):
        return _error(exc.status, exc.code, exc.message, request_id_of(request))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method in ("POST", "PUT", "PATCH") and kind != "application/json":
            message = f"send the body as JSON with Content-Type: application/json (got {kind or 'none'})"
            return _error(422, "invalid_request", message, request_id_of(request))
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{where or 'body'}: {err.get('msg')}")
        return _error(422, "invalid_request", "; ".join(parts), request_id_of(request))

    from sqlalchemy.exc import SQLAlchemyError

    @app.exception_handler(OSError)
    @app.exception_handler(SQLAlchemyError)
    async def storage_error(request: Request, exc: Exception):
        """A full disk (ENOSPC, EDQUOT) or database is 507 with the reason; other such errors are 500s."""
        full = insufficient_storage(exc)
        if full is None:
            return await unexpected(request, exc)
        rid = request_id_of(request)
        log.error("%s %s -> 507 request_id=%s: %s", request.method, request.url.path, rid, full)
        return _error(full.http_status, full.code, str(full), rid)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # never a traceback to the client
        rid = request_id_of(request)
        log.error("%s %s -> 500 request_id=%s", request.method, request.url.path, rid, exc_info=exc)
        return _error(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log (request id {rid})", rid)

    @app.get("/health", response_model=None, responses={200: {"model": HealthResponse}, **errors()})
    def health(state: State) -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "read_only": state.read_only, "auth": state.api_key is not None}

    @app.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
             "description": "The Prometheus text format."}, **errors()})  # fmt: skip
    def metrics(state: State) -> Response:
        """Request counts by route and status, a latency histogram and query batching, in the
        Prometheus text format."""
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/collections", response_model=None, responses={200: {"model": CollectionsResponse}, **errors()})
    def list_collections(state: State) -> dict[str, Any]:
        return {"collections": state.store.list()}

    @app.get("/collections/{name}", response_model=None, responses={200: {"model": CollectionInfo}, **errors(*READ)})
    def describe_collection(name: CollectionName, state: State) -> dict[str, Any]:
        return state.collection(name).info()

    @app.get("/models", responses=errors())
    def list_models(state: State) -> dict[str, Any]:
        from embedsearch.embedders import BUILTIN_MODELS
        from embedsearch.models import list_models as model_dirs

        used = sorted({c["model"] for c in state.store.list()})
        available = [{**m, "name": Path(m["path"]).name} for m in model_dirs(state.models_dir)]
        return {"builtin": [{"name": k, "description": v} for k, v in BUILTIN_MODELS.items()], "in_use": used,
                "models_dir": str(state.models_dir), "available": available}  # fmt: skip

    @app.get("/models/{name}", responses=errors(404, 422))
    def describe_model(name: ModelName, state: State) -> dict[str, Any]:
        from embedsearch.models import read_manifest

        return {"name": name, **read_manifest(state.model_path(name))}

    @app.post("/collections/{name}/search", response_model=None, responses={200: {"model": SearchResponse}, **errors(*SEARCH)})
    def search_one(name: CollectionName, body: SearchRequest, state: State) -> dict[str, Any]:
        import numpy as np

        from embedsearch.errors import DimensionMismatch, InvalidArgument
        from embedsearch.search import resolve_mode, search
        from embedsearch.search_fusion import check as check_fusion
        from embedsearch.store.filters import parse_filter

        coll = state.collection(name)
        if (body.query is None) == (body.vector is None):
            raise InvalidArgument("give exactly one of 'query' (text) or 'vector'")
        started = time.perf_counter()
        if body.vector is not None:
            raw = np.asarray([body.vector], dtype=np.float64)
            if raw.shape[1] != coll.dim:
                raise DimensionMismatch(f"vector has {raw.shape[1]} values; collection {name!r} is {coll.dim}-d")
            if not (np.abs(raw) <= np.finfo(np.float32).max).all():  # NaN fails this too
                raise InvalidArgument("vector values must be finite numbers within float32's range")
            vec = raw.astype(np.float32)
            if coll.metric == "cosine":
                from embedsearch.embedders.base import normalize_rows

                normalize_rows(vec)
            if body.mode not in (None, "dense"):
                raise InvalidArgument("a 'vector' query can only be searched in dense mode")
            check_fusion(body.fusion, body.alpha)
            mode = "dense"
            hits = coll.search_vectors(vec, body.k, where=body.where, nprobe=body.nprobe, ef_search=body.ef_search)[0]
        else:
            if body.where is not None:
                parse_filter(body.where)  # a bad filter fails before the model runs
            check_fusion(body.fusion, body.alpha)
            mode = resolve_mode(coll, body.mode)
            vectors = None
            if mode != "lexical":  # embedded with the concurrent searches' queries (state.embed_queries)
                vectors = state.embed_queries(coll.load_embedder(device=state.device), [body.query])
            hits = search(coll, [body.query], body.k, where=body.where, vectors=vectors, nprobe=body.nprobe,
                          ef_search=body.ef_search, mode=mode, fusion=body.fusion, alpha=body.alpha)[0]  # fmt: skip
        check_response_size([hits])
        return {"collection": name, "k": body.k, "mode": mode, "took_ms": round((time.perf_counter() - started) * 1000, 2),
                "hits": [h.to_dict() for h in hits]}  # fmt: skip

    @app.post("/collections/{name}/search/batch", response_model=None,
              responses={200: {"model": BatchSearchResponse}, **errors(*SEARCH)})  # fmt: skip
    def search_batch(name: CollectionName, body: BatchSearchRequest, state: State) -> dict[str, Any]:
        from embedsearch.errors import InvalidArgument
        from embedsearch.search import resolve_mode, search
        from embedsearch.search_fusion import check as check_fusion

        if len(body.queries) * body.k > MAX_HITS:
            raise InvalidArgument(
                f"{len(body.queries)} queries x k={body.k} asks for {len(body.queries) * body.k} hits; "
                f"one request returns at most {MAX_HITS} (split the batch or lower k)"
            )
        coll = state.collection(name)
        check_fusion(body.fusion, body.alpha)
        mode = resolve_mode(coll, body.mode)
        embedder = None if mode == "lexical" else coll.load_embedder(device=state.device)
        results = search(coll, body.queries, body.k, where=body.where, embedder=embedder, mode=mode, fusion=body.fusion,
                         alpha=body.alpha)  # fmt: skip
        check_response_size(results)
        pairs = zip(body.queries, results, strict=True)
        return {
            "collection": name,
            "k": body.k,
            "mode": mode,
            "results": [{"query": q, "hits": [h.to_dict() for h in hits]} for q, hits in pairs],
        }

    @app.post("/collections/{name}/documents", response_model=None, responses={200: {"model": AddResponse}, **errors(*WRITE)})
    def add_documents(name: CollectionName, body: DocumentsRequest, state: Writer) -> dict[str, Any]:
        from embedsearch.corpus import Document

        coll = state.collection(name)
        embedder = coll.load_embedder(device=state.device)
        docs = [Document(d.id, d.text, d.metadata) for d in body.documents]
        result = coll.add_documents(docs, embedder)
        return {"collection": name, **result.to_dict()}

    @app.delete("/collections/{name}/documents/{doc_id:path}", response_model=None,
                responses={200: {"model": DeleteResponse}, **errors(*WRITE)})  # fmt: skip
    def delete_document(name: CollectionName, doc_id: DocumentId, state: Writer) -> dict[str, Any]:
        from embedsearch.errors import DocumentNotFound

        coll = state.collection(name)
        deleted, missing = coll.delete([doc_id])
        if missing:
            raise DocumentNotFound(f"no document {doc_id!r} in collection {name!r}")
        return {"collection": name, "deleted": deleted}

    from embedsearch.service.documents import router as documents_router

    app.include_router(documents_router)

    @app.post("/similar", response_model=None, responses={200: {"model": SimilarResponse}, **errors(404, 422)})
    def similar(body: SimilarRequest, state: State) -> dict[str, Any]:
        wv = state.word_vectors(body.model)
        return {"model": body.model, "word": body.word, "results": [n.to_dict() for n in wv.similar(body.word.lower(), body.k)]}

    @app.get("/", include_in_schema=False)
    def index_page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
