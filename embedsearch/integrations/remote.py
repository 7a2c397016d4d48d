"""A collection in an embedsearch service, over its HTTP API (README: "HTTP service and search
page"): the same calls as :class:`~embedsearch.integrations.backends.LocalBackend`, and the same
exceptions, rebuilt from the service's JSON errors by their ``code``.

The service embeds with the collection's model, so nothing is embedded here. Writes send the API
key (``X-API-Key``). Deletes go one document per request (the API deletes by id), and
:meth:`HttpBackend.delete_where` lists the matching ids first, so unlike the local one it is
not one commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

import numpy as np

from embedsearch.corpus import Document
from embedsearch.errors import CollectionNotFound, EmbedsearchError, FingerprintMismatch, InvalidArgument
from embedsearch.integrations.backends import Found, Match

BATCH_DOCUMENTS = 500  # documents per POST (the service takes up to 1,000)
BATCH_BYTES = 4 << 20  # and JSON bytes per POST (it takes bodies up to 8 MiB)
MAX_IDS = 1000  # ids per documents/get
PAGE = 1000  # documents per documents/list page


class ServiceError(EmbedsearchError):
    """An error from the service that is not one of the library's (a wrong API key, a 5xx...), or
    a service that cannot be reached; ``status`` is the HTTP status (None: no answer)."""

    code = "service_error"

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        if code:
            self.code = code


def _domain_errors() -> dict[str, type[EmbedsearchError]]:
    """The library's exceptions by their ``code``, as the service reports them."""
    found: dict[str, type[EmbedsearchError]] = {}
    todo: list[type[EmbedsearchError]] = [EmbedsearchError]
    while todo:
        cls = todo.pop(0)
        found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found


def error_from(response) -> EmbedsearchError:
    """The exception an error answer of the service stands for."""
    try:
        body = response.json()["error"]
        code, message = str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        text = response.text[:200].strip() or response.reason_phrase
        return ServiceError(f"HTTP {response.status_code} from {response.request.url}: {text}", response.status_code)
    cls = InvalidArgument if code == "invalid_request" else _domain_errors().get(code)  # a body the service refused
    if cls is None or cls is EmbedsearchError:
        return ServiceError(f"{message} (HTTP {response.status_code} {code})", response.status_code, code)
    return cls(message)


def _segment(doc_id: str) -> str:
    """A document id as one URL path segment. Dots are escaped too: an HTTP client resolves a
    ``..`` segment, so a document named ``..`` would otherwise turn a document's DELETE into the
    collection's (the server decodes %2E back; it never resolves dot segments)."""
    return quote(doc_id, safe="").replace(".", "%2E")


class HttpBackend:
    """A collection of an embedsearch service at ``url``."""

    local = False

    def __init__(
        self,
        collection: str,
        url: str | None,
        *,
        api_key: str | None = None,
        model: str | None = None,
        lexical: bool = True,
        index: str = "auto",
        client: Any = None,
        timeout: float = 60.0,
    ) -> None:
        import httpx

        headers = {"X-API-Key": api_key} if api_key else {}
        if client is None:
            if not url:
                raise InvalidArgument("give the service's url, e.g. http://127.0.0.1:8000")
            client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        else:
            client.headers.update(headers)
        self.http = client
        self.url = str(client.base_url)
        self.collection = collection
        self.path = f"/collections/{quote(collection, safe='')}"
        try:
            self.info = self._call("GET", self.path)
        except CollectionNotFound:
            if model is None:
                raise CollectionNotFound(
                    f"no collection named {collection!r} at {self.url}; pass model= (e.g. 'minilm') to create it"
                ) from None
            self.info = self._call("PUT", self.path, json={"model": model, "index": index, "lexical": lexical})
        else:
            if model is not None and model not in (self.info["model"], self.info["model"].rstrip("/").rsplit("/", 1)[-1]):
                raise FingerprintMismatch(
                    f"collection {collection!r} at {self.url} was built with model {self.info['model']!r}, not {model!r}; "
                    "the service embeds with the collection's own model (leave model= out)"
                )
        self.model = str(self.info["model"])
        self.dim = int(self.info["dim"])
        self.metric = str(self.info.get("metric", "cosine"))

    def _call(self, method: str, path: str, **kwargs) -> Any:
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceError(f"cannot reach the embedsearch service at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise error_from(response)
        return response.json()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise InvalidArgument(
            f"collection {self.collection!r} is served at {self.url}, which embeds with the collection's model itself "
            "and returns no vectors; open the data directory (data_dir=) to embed here"
        )

    def search_settings(self) -> dict[str, Any]:
        return dict(self._call("GET", self.path).get("search") or {})

    # ---- writes -----------------------------------------------------------------------------
    def add(self, docs: Sequence[Document]) -> dict[str, int]:
        totals = {"added": 0, "updated": 0, "unchanged": 0}
        batch: list[dict[str, Any]] = []
        size = 0
        for d in [*docs, None]:
            item = None if d is None else {"id": d.id, "text": d.text, "metadata": d.metadata}
            n = 0 if item is None else len(json.dumps(item, ensure_ascii=False).encode()) + 2
            if batch and (item is None or len(batch) >= BATCH_DOCUMENTS or size + n > BATCH_BYTES):
                result = self._call("POST", f"{self.path}/documents", json={"documents": batch})
                for key in totals:
                    totals[key] += int(result.get(key, 0))
                batch, size = [], 0
            if item is not None:
                batch.append(item)
                size += n
        return totals

    def delete(self, ids: Iterable[str]) -> tuple[int, list[str]]:
        from embedsearch.errors import DocumentNotFound

        deleted, missing = 0, []
        for i in dict.fromkeys(str(i) for i in ids):
            try:
                deleted += int(self._call("DELETE", f"{self.path}/documents/{_segment(i)}")["deleted"])
            except DocumentNotFound:
                missing.append(i)
        return deleted, missing

    def delete_where(self, where: dict | None) -> int:
        ids: list[str] = []
        cursor = None
        while True:
            docs, cursor = self.list(where, PAGE, cursor)
            ids += [d["id"] for d in docs]
            if cursor is None:
                break
        return self.delete(ids)[0]

    # ---- reads ------------------------------------------------------------------------------
    def get(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        ids = list(dict.fromkeys(str(i) for i in ids))
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), MAX_IDS):
            out += self._call("POST", f"{self.path}/documents/get", json={"ids": ids[start : start + MAX_IDS]})["documents"]
        return out

    def list(self, where: dict | None = None, limit: int = 100, cursor: str | None = None) -> tuple[list[dict], str | None]:
        page = self._call("POST", f"{self.path}/documents/list", json={"where": where, "limit": limit, "cursor": cursor})
        return page["documents"], page["next_cursor"]

    def count(self, where: dict | None = None) -> int:
        return int(self._call("POST", f"{self.path}/count", json={"where": where})["count"])

    def search(
        self,
        query: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        k: int = 4,
        where: dict | None = None,
        mode: str | None = None,
        fusion: str | None = None,
        alpha: float | None = None,
    ) -> Found:
        if (query is None) == (vector is None):
            raise InvalidArgument("give exactly one of a query text or a query vector")
        body: dict[str, Any] = {"k": k, "where": where or None, "mode": mode, "fusion": fusion, "alpha": alpha}
        if vector is not None:
            body["vector"] = [float(x) for x in vector]
        else:
            body["query"] = query
        answer = self._call("POST", f"{self.path}/search", json={key: v for key, v in body.items() if v is not None})
        matches = [
            Match(h["id"], float(h["score"]), h["text"], h["metadata"], {x: v for x, v in h.items() if x not in Match.FIELDS})
            for h in answer["hits"]
        ]
        return Found(answer["mode"], matches)
