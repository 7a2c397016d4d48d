"""Loading the models of the collections a service serves at start-up (``serve --preload``).

A MiniLM load takes seconds (minutes on a loaded machine); without a preload the first query
of each collection waits for it. :class:`Preloader` loads every collection's model in a
background thread while the server already answers, through the same per-process cache the
searches use (``Collection.load_embedder``), so the first query finds the model loaded, and a
query that arrives during the load waits for that one load instead of starting another. Each
load is logged with its time. ``/health`` answers 503 ``"loading"`` until every load has ended;
a load that fails (a missing or broken model directory) is logged with its reason and reported
by ``/health`` as ``"degraded"`` with a 200: the other collections serve, and waiting would not
mend the model.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedsearch.service.state import ServiceState

log = logging.getLogger("embedsearch.service")

#: seconds a client is told to wait (Retry-After) while the models load
RETRY_AFTER_S = 5


@dataclass
class ModelLoad:
    """One collection's model at start-up."""

    collection: str
    model: str
    state: str = "pending"  # pending, loading, loaded, failed, dropped (the collection went away meanwhile)
    seconds: float | None = None
    error: str | None = None


class Preloader:
    """Loads the collections' models in a thread of its own; says whether the service is ready."""

    def __init__(self, service: ServiceState) -> None:
        self.service = service
        self.enabled = False
        self.loads: list[ModelLoad] = []
        self.error: str | None = None  # the collections could not be listed
        self.done = threading.Event()
        self.done.set()  # without a preload the service is ready at once
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin loading in the background; ``/health`` says "loading" until it ends."""
        self.enabled = True
        self.done.clear()
        self.thread = threading.Thread(target=self.run, name="embedsearch-preload", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """The service is stopping: no load starts after the one running (a load cannot be cut short)."""
        self.stopping.set()

    def run(self) -> None:
        try:
            self.load_all()
        finally:  # whatever happened, readiness is not held up for ever
            self.done.set()

    def load_all(self) -> None:
        started = time.perf_counter()
        try:
            collections = self.service.store.list()
        except Exception as exc:  # the service stays up: /health says degraded, requests report the store's error
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("preload: cannot list the collections: %s", self.error)
            return
        with self.lock:
            self.loads = [ModelLoad(c["name"], c["model"]) for c in collections]
        log.info("preloading the models of %d collection(s): %s", len(self.loads),
                 ", ".join(f"{x.collection} ({x.model})" for x in self.loads) or "none")  # fmt: skip
        for load in self.loads:
            if self.stopping.is_set():
                return
            self.load(load)
        failed = [x for x in self.loads if x.state == "failed"]
        log.info("ready in %.1f s: %d model(s) loaded, %d failed%s", time.perf_counter() - started,
                 sum(x.state == "loaded" for x in self.loads), len(failed),
                 "".join(f"; {x.collection} ({x.model}): {x.error}" for x in failed))  # fmt: skip

    def load(self, load: ModelLoad) -> None:
        """Load one collection's model into the cache searches use, and log how long it took."""
        from embedsearch.errors import CollectionNotFound

        with self.lock:
            load.state = "loading"
        started = time.perf_counter()
        try:
            self.service.embedder(self.service.collection(load.collection))
            state, error = "loaded", None
        except CollectionNotFound:
            state, error = "dropped", None
        except Exception as exc:  # a broken model must not stop the service or the other loads
            state, error = "failed", f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        with self.lock:
            load.state, load.error, load.seconds = state, error, round(seconds, 3)
        if state == "loaded":
            log.info("loaded model %s for collection %s in %.1f s", load.model, load.collection, seconds)
        elif state == "failed":
            log.error("failed to load model %s for collection %s after %.1f s: %s", load.model, load.collection, seconds, error)
        else:
            log.info("collection %s was dropped before its model %s loaded", load.collection, load.model)

    @property
    def ready(self) -> bool:
        return self.done.is_set()

    def report(self) -> dict[str, Any]:
        """What ``/health`` says of the models: ``status`` (ok, loading or degraded),
        ``preload`` and one entry per collection."""
        ready = self.ready  # before the copy: "ok" comes with every load's final state
        with self.lock:
            models = [asdict(x) for x in self.loads]
        if not ready:
            status = "loading"
        elif self.error is not None or any(m["state"] == "failed" for m in models):
            status = "degraded"
        else:
            status = "ok"
        report: dict[str, Any] = {"status": status, "preload": self.enabled, "models": models}
        if self.error is not None:
            report["error"] = self.error
        return report

    def finished(self) -> list[ModelLoad]:
        """The loads that have ended (for /metrics)."""
        with self.lock:
            return [x for x in self.loads if x.seconds is not None]
