"""ASGI middleware and error plumbing: the Host check, request ids, the body limit, the 405
Allow header, error responses and the response-size check."""

from __future__ import annotations

import json
import re
import uuid

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedsearch.service.requests import MAX_BODY_BYTES, MAX_RESPONSE_TEXT

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


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


def error_response(
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
