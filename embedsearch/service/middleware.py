"""ASGI middleware and error plumbing: the Host check, request ids (and the log filter that
writes them in every log line of a request), the body limit, the 405 Allow header, error
responses (in OpenAI's shape on the OpenAI-compatible routes) and the response-size check."""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedsearch.service.requests import MAX_BODY_BYTES, MAX_RESPONSE_TEXT

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: the id of the request this code runs for (None outside one): set by :class:`RequestId`, seen
#: by the endpoint's thread (the thread pool runs it in a copy of the request's context)
CURRENT_REQUEST_ID: ContextVar[str | None] = ContextVar("embedsearch_request_id", default=None)


class HTTPError(Exception):
    """An error response with its status and code, for conditions no domain exception names.
    ``param`` names the request field at fault (OpenAI's error shape carries it)."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


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


def error_response(
    status: int, code: str, message: str, request_id: str | None = None, headers: dict[str, str] | None = None,
    *, scope=None,
) -> JSONResponse:  # fmt: skip
    """The error body; in OpenAI's shape when ``scope`` (a scope or a Request) is for a
    ``/v1/`` route (answers that pass through :class:`OpenAIErrors` are reshaped there)."""
    body = {"code": code, "message": message, "request_id": request_id}
    if scope is not None and is_openai_path(scope):
        body = openai_error(body, status)
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
                response = error_response(400, "bad_host", message, request_id_of(StarletteRequest(scope)))
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

        token = CURRENT_REQUEST_ID.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            CURRENT_REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    """A log filter for handlers: a record logged while a request is handled (by the service or
    by the library under it: ``embedsearch.store``, ``embedsearch.embedders``...) gets the
    request's id as ``record.request_id`` and ` request_id=ID` at the end of its message, unless
    the message names it already; other records get ``record.request_id = None``. ``serve``
    puts it on its log handler; an app served another way adds it to its own handlers
    (``handler.addFilter(RequestIdFilter())``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = CURRENT_REQUEST_ID.get()
        if getattr(record, "request_id", None) is None:
            record.request_id = rid
        if rid is not None and "request_id=" not in str(record.msg):
            # the id holds no "%", so the message's own %-formatting is unchanged
            record.msg = f"{record.msg} request_id={rid}"
        return True


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
            message = f"request bodies are limited to {self.limit} bytes"
            response = error_response(413, "body_too_large", message, request_id_of(scope))
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


# --- OpenAI's error shape on the OpenAI-compatible routes ---------------------------------------

#: the routes of service/openai_api.py; their errors are in OpenAI's shape
OPENAI_PREFIX = "/v1/"


def is_openai_path(scope) -> bool:
    """Whether the request (a scope or a Request) is for an OpenAI-compatible route."""
    scope = getattr(scope, "scope", scope)
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.startswith(OPENAI_PREFIX)


def note_param(scope_or_request, param: str | None) -> None:
    """Remember which request field an error is about, for OpenAI's ``param`` (the request's
    state dict is shared by every layer of the app)."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    if param is not None:
        scope.setdefault("state", {})["error_param"] = param


def openai_error(error: dict, status: int, param: str | None = None) -> dict:
    """The service's error body ``{"code", "message", "request_id"}`` in OpenAI's shape,
    ``{"message", "type", "param", "code"}`` (the request id kept): the ``type`` OpenAI gives
    the status (invalid_request_error for 4xx, authentication_error, permission_error,
    server_error for 5xx)."""
    if status == 401:
        kind = "authentication_error"
    elif status == 403:
        kind = "permission_error"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    return {"message": error.get("message"), "type": kind, "param": param, "code": error.get("code"),
            "request_id": error.get("request_id")}  # fmt: skip


class OpenAIErrors:
    """ASGI middleware: on the OpenAI-compatible routes (``/v1/...``), every error body the
    service writes (from a handler, the Host check, the body limit, an unknown path or method)
    is rewritten in OpenAI's shape, so OpenAI's clients raise their typed exceptions with the
    message; statuses and headers stay as they are. Other routes pass untouched."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not is_openai_path(scope):
            return await self.app(scope, receive, send)
        start: dict | None = None
        chunks: list[bytes] = []

        async def reshape(message):
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None  # not the service's error body: sent as it is
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict) and "type" not in error:  # "type": in OpenAI's shape already
                param = (scope.get("state") or {}).get("error_param")
                body = json.dumps({"error": openai_error(error, start["status"], param)}).encode()
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshape)
