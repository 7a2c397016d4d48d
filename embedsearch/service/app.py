"""The HTTP service: a FastAPI app over the same library functions the CLI uses.

``create_app`` builds an app for one data directory / database; everything it holds (the
store, opened collections, metrics (``service/metrics.py``), the API key) lives on ``app.state`` from the lifespan,
never in module globals. Endpoints are plain ``def`` functions, so FastAPI runs them in its
thread pool: searches run concurrently, and a collection's own reader/writer lock keeps a
search from seeing a half-applied write. Models are loaded once per process and shared; with
``preload`` they are loaded at start-up in the background (``service/preload.py``) while
``/health`` answers 503 "loading".
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedsearch import __version__
from embedsearch.config import Settings
from embedsearch.errors import EmbedsearchError, insufficient_storage
from embedsearch.service.constraints import install_filter_schema
from embedsearch.service.docs import install_docs
from embedsearch.service.metrics import CONTENT_TYPE
from embedsearch.service.middleware import (
    BodyLimit,
    HostCheck,
    HTTPError,
    OpenAIErrors,
    RequestId,
    allowed_methods,
    check_response_size,
    error_response,
    note_param,
    request_id_of,
)
from embedsearch.service.preload import RETRY_AFTER_S
from embedsearch.service.requests import (
    MAX_HITS,
    STATIC,
    BatchSearchRequest,
    DocumentsRequest,
    SearchRequest,
    SimilarRequest,
)
from embedsearch.service.schemas import (
    READ,
    SEARCH,
    WRITE,
    AddResponse,
    BatchSearchResponse,
    CollectionInfo,
    CollectionName,
    CollectionsResponse,
    DeleteResponse,
    DocumentId,
    HealthResponse,
    LiveResponse,
    ModelName,
    SearchResponse,
    SimilarResponse,
    errors,
)
from embedsearch.service.state import ServiceState, State, Writer
from embedsearch.store.space import low_space

log = logging.getLogger("embedsearch.service")


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
    preload: bool = False,
    connection_events: Any = None,
) -> FastAPI:
    """The service for one data directory and metadata database. ``batch_queries`` gathers
    the query embeddings of concurrent searches into one model call. ``allowed_hosts`` (names
    the Host header may carry; None: any) stops a web page from reaching a loopback service
    through DNS rebinding; ``open_writes`` off refuses writes when no API key is set.
    ``preload`` loads the models of the collections at start-up, in the background, with
    ``/health`` at 503 until they are loaded (``serve`` turns it on unless --no-preload; off
    here, an app built in-process is ready at once and loads each model on first use).
    ``connection_events``: the server's connection limits (service/server.py), for /metrics."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service = ServiceState(settings, api_key, read_only, device, batch_queries, ray_address=ray_address,
                                         connection_events=connection_events)  # fmt: skip
        app.state.service.open_writes = open_writes
        if models_dir is not None:
            app.state.service.models_dir = Path(models_dir).absolute()
        if preload:
            app.state.service.preloader.start()
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
    install_filter_schema(app)

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
        if response.status_code >= 400 and not (route == "/health" and response.status_code == 503):  # loading: logged once
            log.warning("%s %s -> %d in %.1f ms request_id=%s", request.method, request.url.path, response.status_code, ms,
                        request_id_of(request))  # fmt: skip
        return response

    if allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed=allowed_hosts)
    app.add_middleware(OpenAIErrors)  # /v1/: OpenAI's error shape, for every refusal above included
    app.add_middleware(RequestId)  # outermost: the id exists before anything can fail

    @app.exception_handler(EmbedsearchError)
    async def domain_error(request: Request, exc: EmbedsearchError):
        status = exc.http_status if not exc.usage or exc.http_status != 400 else 400
        return error_response(status, exc.code, str(exc), request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(request: Request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110: a 405 lists the methods the resource has
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path)) or headers.get("Allow", "")
        message = str(exc.detail)
        if exc.status_code == 405:
            message = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message, request_id_of(request), headers)

    @app.exception_handler(HTTPError)
    async def http_error(request: Request, exc: HTTPError):
        note_param(request, exc.param)
        return error_response(exc.status, exc.code, exc.message, request_id_of(request))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method in ("POST", "PUT", "PATCH") and kind != "application/json":
            message = f"send the body as JSON with Content-Type: application/json (got {kind or 'none'})"
            return error_response(422, "invalid_request", message, request_id_of(request))
        fields = [x for err in exc.errors()[:1] for x in err.get("loc", ())[1:2] if isinstance(x, str)]
        note_param(request, fields[0] if fields else None)  # OpenAI's "param" on /v1/
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{where or 'body'}: {err.get('msg')}")
        return error_response(422, "invalid_request", "; ".join(parts), request_id_of(request))

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
        return error_response(full.http_status, full.code, str(full), rid)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # never a traceback to the client
        rid = request_id_of(request)
        log.error("%s %s -> 500 request_id=%s", request.method, request.url.path, rid, exc_info=exc)
        message = f"internal error ({type(exc).__name__}); see the server log (request id {rid})"
        return error_response(500, "internal_error", message, rid, scope=request)  # outside OpenAIErrors: shaped here

    retry = {"Retry-After": {"description": "Seconds to wait before asking again.", "schema": {"type": "integer"}}}
    loading = {"model": HealthResponse, "headers": retry,
               "description": 'Still loading the models ("status": "loading", with Retry-After), or the disk of '
                              'the data directory is too full for writes ("status": "insufficient_storage").'}  # fmt: skip

    # /health and /health/live run on the event loop (async, no State dependency: sync ones run in the
    # thread pool), so they answer even while every worker thread is a query waiting for a model's load
    @app.get("/health", response_model=None, responses={200: {"model": HealthResponse}, 503: loading, **errors()})
    async def health(request: Request) -> Any:
        """Readiness: 503 "loading" while the collections' models load at start-up, then 200
        ("ok", or "degraded" naming the models that failed to load); 503 "insufficient_storage"
        with the reason while the data directory's disk is too full for writes."""
        state: ServiceState = request.app.state.service
        report = state.preloader.report()
        body = {"status": report.pop("status"), "version": __version__, "read_only": state.read_only,
                "auth": state.api_key is not None, **report}  # fmt: skip
        if body["status"] == "loading":
            return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
        storage = None if state.read_only else low_space(state.settings.data_dir)
        if storage is not None:  # searches still work; writes would fail (store/space.py)
            body.update(status="insufficient_storage", storage=storage)
            return JSONResponse(body, status_code=503)
        return body

    @app.get("/health/live", response_model=None, responses={200: {"model": LiveResponse}, **errors()})
    async def live() -> dict[str, Any]:
        """Liveness: 200 while the process serves, models loaded or not."""
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
             "description": "The Prometheus text format."}, **errors()})  # fmt: skip
    def metrics(state: State) -> Response:
        """Request counts by route and status, latency histograms (per request, and per stage of
        a search), query batching, the process (memory, CPU, open files, threads) and each
        collection's numbers, in the Prometheus text format."""
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
        available = [{**m, "name": Path(m["path"]).name} for m in model_dirs(state.models_dir, confined=True)]
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
        from embedsearch.search import plan, search
        from embedsearch.store.filters import parse_filter

        coll = state.collection(name)
        if (body.query is None) == (body.vector is None):
            raise InvalidArgument("give exactly one of 'query' (text) or 'vector'")
        started = time.perf_counter()
        timings: dict[str, float] = {}  # seconds by stage, for /metrics
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
            mode = plan(coll, "dense", body.fusion, body.alpha).mode
            hits = coll.search_vectors(vec, body.k, where=body.where, nprobe=body.nprobe, ef_search=body.ef_search,
                                       timings=timings)[0]  # fmt: skip
        else:
            if body.where is not None:
                parse_filter(body.where)  # a bad filter fails before the model runs
            how = plan(coll, body.mode, body.fusion, body.alpha)
            mode = how.mode
            vectors = None
            if mode != "lexical":  # embedded with the concurrent searches' queries (state.embed_queries)
                embedding = time.perf_counter()
                vectors = state.embed_queries(state.embedder(coll), [body.query])
                timings["embed"] = time.perf_counter() - embedding
            hits = search(coll, [body.query], body.k, where=body.where, vectors=vectors, nprobe=body.nprobe, timings=timings,
                          ef_search=body.ef_search, mode=mode, fusion=how.fusion, alpha=how.alpha)[0]  # fmt: skip
        state.metrics.observe_stages(timings)
        check_response_size([hits])
        return {"collection": name, "k": body.k, "mode": mode, "took_ms": round((time.perf_counter() - started) * 1000, 2),
                "hits": [h.to_dict() for h in hits]}  # fmt: skip

    @app.post("/collections/{name}/search/batch", response_model=None,
              responses={200: {"model": BatchSearchResponse}, **errors(*SEARCH)})  # fmt: skip
    def search_batch(name: CollectionName, body: BatchSearchRequest, state: State) -> dict[str, Any]:
        from embedsearch.errors import InvalidArgument
        from embedsearch.search import plan, search

        if len(body.queries) * body.k > MAX_HITS:
            raise InvalidArgument(
                f"{len(body.queries)} queries x k={body.k} asks for {len(body.queries) * body.k} hits; "
                f"one request returns at most {MAX_HITS} (split the batch or lower k)"
            )
        coll = state.collection(name)
        how = plan(coll, body.mode, body.fusion, body.alpha)
        mode = how.mode
        embedder = None if mode == "lexical" else state.embedder(coll)
        timings: dict[str, float] = {}  # seconds by stage, for /metrics
        results = search(coll, body.queries, body.k, where=body.where, embedder=embedder, mode=mode, fusion=how.fusion,
                         alpha=how.alpha, timings=timings)  # fmt: skip
        state.metrics.observe_stages(timings)
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
        embedder = state.embedder(coll)
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
    from embedsearch.service.openai_api import router as openai_router
    from embedsearch.service.snapshots import router as snapshots_router

    app.include_router(documents_router)
    app.include_router(openai_router)  # /v1/embeddings and /v1/models, in OpenAI's shapes
    app.include_router(snapshots_router)  # POST /collections/{name}/snapshot streams a hot snapshot

    @app.post("/similar", response_model=None, responses={200: {"model": SimilarResponse}, **errors(404, 422)})
    def similar(body: SimilarRequest, state: State) -> dict[str, Any]:
        wv = state.word_vectors(body.model)
        return {"model": body.model, "word": body.word, "results": [n.to_dict() for n in wv.similar(body.word.lower(), body.k)]}

    @app.get("/", include_in_schema=False)
    def index_page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
