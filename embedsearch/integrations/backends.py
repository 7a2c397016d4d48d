"""One collection behind the framework adapters: in this process (:class:`LocalBackend`, the
library over a data directory) or in an embedsearch service (:class:`~embedsearch.integrations.remote.HttpBackend`,
over HTTP). Both answer the same calls with the same results and raise the same domain
exceptions (``CollectionNotFound``, ``InvalidFilter``, ``UnknownModel``...), so the LangChain and
LlamaIndex adapters never ask which one they hold.

:func:`open_backend` opens an existing collection with its own model, or creates one when a
``model`` is given; an unknown collection without a model is :class:`CollectionNotFound`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from embedsearch.corpus import Document
from embedsearch.errors import (
    CollectionNotFound,
    DimensionMismatch,
    FingerprintMismatch,
    InvalidArgument,
    ModelFormatError,
    UnknownModel,
)

__all__ = ["Backend", "Found", "LocalBackend", "Match", "check_mode", "open_backend"]

#: the search modes a query may name (None: the collection's default; see embedsearch/search.py)
MODES = ("dense", "lexical", "hybrid")


@dataclass
class Match:
    """One hit: the document and how it matched (``extras``: mode, ranks, highlights, passage)."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)

    FIELDS: ClassVar[tuple[str, ...]] = ("id", "score", "text", "metadata")  # the rest of a hit is extras


@dataclass
class Found:
    """The hits of one query, best first, and the mode that ran."""

    mode: str
    matches: list[Match]


class Backend(Protocol):
    """What the adapters need of a collection. ``model``, ``dim``, ``metric`` describe it."""

    collection: str
    model: str
    dim: int
    metric: str
    local: bool  # whether texts can be embedded here (:meth:`embed`)

    def add(self, docs: Sequence[Document]) -> dict[str, int]: ...
    def delete(self, ids: Iterable[str]) -> tuple[int, list[str]]: ...
    def delete_where(self, where: dict | None) -> int: ...
    def get(self, ids: Iterable[str]) -> list[dict[str, Any]]: ...
    def list(self, where: dict | None = None, limit: int = 100, cursor: str | None = None) -> tuple[list[dict], str | None]: ...
    def count(self, where: dict | None = None) -> int: ...
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
    ) -> Found: ...
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...
    def search_settings(self) -> dict[str, Any]: ...


def check_mode(mode: str | None) -> str | None:
    """A search mode an adapter is given as its default, checked before any search runs."""
    if mode is not None and mode not in MODES:
        raise InvalidArgument(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def open_backend(
    collection: str,
    *,
    data_dir: str | Path | None = None,
    db_url: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    model: str | None = None,
    lexical: bool = True,
    index: str = "auto",
    device: str | None = None,
    client: Any = None,
    timeout: float = 60.0,
) -> Backend:
    """The collection ``collection`` in the data directory ``data_dir`` (None: ``$EMBEDSEARCH_HOME``,
    else ``./indexes``), or, given a ``url``, in the service there (``api_key`` for writes;
    ``client``: an ``httpx.Client`` to use instead of a new one).

    An existing collection is opened with its own model; ``model`` then names a copy of that model
    (locally; it must have the same fingerprint). A collection that does not exist is created
    with ``model`` (a built-in name such as ``minilm`` or ``hashing``, or a model directory), a
    lexical index unless ``lexical`` is False (hybrid search needs it) and the ``index`` spec."""
    if url is not None or client is not None:
        if data_dir is not None or db_url is not None:
            raise InvalidArgument("give either url= (a service) or data_dir= / db_url= (a local data directory), not both")
        from embedsearch.integrations.remote import HttpBackend

        return HttpBackend(
            collection, url, api_key=api_key, model=model, lexical=lexical, index=index, client=client, timeout=timeout
        )
    if api_key is not None:
        raise InvalidArgument("api_key= goes with url= (a service); a local data directory needs none")
    return LocalBackend(collection, data_dir=data_dir, db_url=db_url, model=model, lexical=lexical, index=index, device=device)


class LocalBackend:
    """A collection of a data directory, through the library (embedsearch.store, embedsearch.search)."""

    local = True

    def __init__(
        self,
        collection: str,
        *,
        data_dir: str | Path | None = None,
        db_url: str | None = None,
        model: str | None = None,
        lexical: bool = True,
        index: str = "auto",
        device: str | None = None,
        store: Any = None,
    ) -> None:
        from embedsearch.config import Settings
        from embedsearch.store import Store
        from embedsearch.store.documents_api import create_collection

        self.store = store or Store(Settings.from_env(data_dir, db_url))
        self.collection = collection
        self.device = device
        self._embedder = None
        if self.store.exists(collection):
            self.coll = self.store.open(collection)
            self.model_spec = model  # a copy of the collection's model, where its recorded path is not here
        elif model is None:
            raise CollectionNotFound(
                f"no collection named {collection!r} in {self.store.settings.data_dir}; pass model= (e.g. 'minilm') to create it"
            )
        else:
            self.coll = create_collection(self.store, collection, model, index, lexical=lexical, device=device)
            self.model_spec = None
        self._check_model()
        if self.model_spec is not None:
            self.embedder  # noqa: B018  (a model named for an existing collection must be that model: checked now)

    # ---- the collection ---------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self.coll.model

    @property
    def dim(self) -> int:
        return self.coll.dim

    @property
    def metric(self) -> str:
        return self.coll.metric

    def _check_model(self) -> None:
        """Refuse at once (without loading it) a model that cannot be loaded here, naming the collection."""
        from embedsearch.embedders import check_model

        try:
            check_model(self.model_spec or self.coll.model, self.coll.embedder_options)
        except (UnknownModel, ModelFormatError) as exc:
            raise type(exc)(self._model_problem(exc)) from None

    def _model_problem(self, exc: Exception) -> str:
        return (
            f"collection {self.collection!r} was built with model {self.coll.model!r}, which cannot be loaded here: "
            f"{exc}; pass model= the path of a copy of that model"
        )

    @property
    def embedder(self):
        """The collection's model, loaded once (and checked against the collection's fingerprint)."""
        if self._embedder is None:
            try:
                self._embedder = self.coll.load_embedder(device=self.device, spec=self.model_spec)
            except (UnknownModel, ModelFormatError) as exc:
                raise type(exc)(self._model_problem(exc)) from None
            except (DimensionMismatch, FingerprintMismatch) as exc:  # model= named another model
                raise type(exc)(
                    f"{exc} (collection {self.collection!r} was built with {self.coll.model!r}: leave model= out)"
                ) from None
        return self._embedder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed(list(texts))

    def search_settings(self) -> dict[str, Any]:
        return self.coll.search_settings()

    # ---- writes -----------------------------------------------------------------------------
    def add(self, docs: Sequence[Document]) -> dict[str, int]:
        docs = list(docs)
        if not docs:
            return {"added": 0, "updated": 0, "unchanged": 0}
        return self.coll.add_documents(docs, self.embedder).to_dict()

    def delete(self, ids: Iterable[str]) -> tuple[int, list[str]]:
        ids = [str(i) for i in ids]
        return self.coll.delete(ids) if ids else (0, [])

    def delete_where(self, where: dict | None) -> int:
        return self.coll.delete_where(where or {})

    # ---- reads ------------------------------------------------------------------------------
    def get(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        from embedsearch.store.documents_api import MAX_IDS, get_documents

        ids = list(dict.fromkeys(str(i) for i in ids))
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), MAX_IDS):
            out += get_documents(self.coll, ids[start : start + MAX_IDS])[0]
        return out

    def list(self, where: dict | None = None, limit: int = 100, cursor: str | None = None) -> tuple[list[dict], str | None]:
        from embedsearch.store.documents_api import list_documents

        page = list_documents(self.coll, where, limit, cursor)
        return page.documents, page.next_cursor

    def count(self, where: dict | None = None) -> int:
        from embedsearch.store.documents_api import count_documents

        return count_documents(self.coll, where)

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
        from embedsearch.search import plan, search

        if (query is None) == (vector is None):
            raise InvalidArgument("give exactly one of a query text or a query vector")
        if vector is not None:
            if mode not in (None, "dense"):
                raise InvalidArgument(f"a query vector is searched in dense mode only, not {mode}")
            vec = np.asarray([vector], dtype=np.float32)
            if self.coll.metric == "cosine":
                from embedsearch.embedders.base import normalize_rows

                normalize_rows(vec)
            hits = self.coll.search_vectors(vec, k, where=where)[0]
            return Found("dense", [Match(h.id, float(h.score), h.text, h.metadata, {"mode": "dense"}) for h in hits])
        how = plan(self.coll, mode, fusion, alpha)
        embedder = None if how.mode == "lexical" else self.embedder
        hits = search(self.coll, [query], k, where=where, embedder=embedder, mode=how.mode, fusion=how.fusion, alpha=how.alpha)[0]
        return Found(how.mode, [Match(h.id, float(h.score), h.text, h.metadata, dict(h.extras or {})) for h in hits])
