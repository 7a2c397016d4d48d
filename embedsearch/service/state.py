"""The service's state (one per app): settings, the store, models, batchers, metrics; and the
endpoint dependencies that hand it to a request (``State``) or to a write (``Writer``: the API
key and read-only checks)."""

from __future__ import annotations

import hmac
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from embedsearch.config import Settings
from embedsearch.service.metrics import ServiceMetrics
from embedsearch.service.middleware import HTTPError
from embedsearch.service.preload import Preloader
from embedsearch.service.schemas import (
    MODEL_NAME,
)


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
    connection_events: Any = None  # serve's connection limits (service/server.py), counted in /metrics
    metrics: ServiceMetrics = field(init=False)
    preloader: Preloader = field(init=False)  # the models loaded at start-up (serve --preload), and readiness
    _word_models: dict[str, Any] = field(default_factory=dict)
    _batchers: dict[str, Any] = field(default_factory=dict)
    _store: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.preloader = Preloader(self)
        self.metrics = ServiceMetrics(batching=self.batch_queries, batchers=lambda: list(self._batchers.values()),
                                      loads=self.preloader.finished, ready=lambda: self.preloader.ready,
                                      connections=self.connection_events, collections=lambda: self.store.stats())  # fmt: skip

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
        self.preloader.stop()
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
        """A model directory under ``models_dir``; names cannot climb out of it, and neither can
        any file the model loads (:func:`embedsearch.model_files.confine_model_dir`)."""
        from embedsearch.errors import InvalidName, UnknownModel
        from embedsearch.model_files import confine_model_dir

        if not re.fullmatch(MODEL_NAME, name) or ".." in name:
            raise InvalidName(f"invalid model name {name!r}: a directory name under the models directory")
        path = self.models_dir / name
        if not (path / "manifest.json").is_file():
            raise UnknownModel(f"no model {name!r} under {self.models_dir}")
        real = path.resolve()
        if real.parent != self.models_dir.resolve():  # the name is a link to a directory elsewhere
            raise UnknownModel(f"no model {name!r} under {self.models_dir} (it links outside the models directory)")
        confine_model_dir(path, self.models_dir)
        return real

    def confinement(self, spec: str) -> Path | None:
        """The models directory when the model ``spec`` (a collection's) lies in it, so that none
        of its files may lead out; None for built-in models and directories the CLI named elsewhere."""
        from embedsearch.embedders import BUILTIN_MODELS

        if spec in BUILTIN_MODELS:
            return None
        path = Path(spec).expanduser().absolute()
        inside = path.is_relative_to(self.models_dir.absolute()) or path.is_relative_to(self.models_dir.resolve())
        return self.models_dir if inside else None

    def embedder(self, coll):
        """The collection's model, loaded once per process; one under the models directory loads
        only when none of its files leads out of it."""
        return coll.load_embedder(device=self.device, root=self.confinement(coll.model))

    def word_vectors(self, name: str):
        """A word model, loaded once and shared."""
        from embedsearch.models import load_word_vectors

        path = self.model_path(name)
        with self._lock:
            wv = self._word_models.get(name)
        if wv is None:
            wv = load_word_vectors(path, root=self.models_dir)
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
