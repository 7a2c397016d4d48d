"""Embedding calls from concurrent requests, gathered into one model call.

A request that finds no batch in progress becomes the leader: it waits ``max_wait_ms`` for
others to join, embeds every waiting text in one call, hands each request its rows, and goes
on while more wait. The others just wait for their rows. One forward pass over 16 short
queries costs far less than 16 passes, so under load throughput rises; an idle service
adds at most ``max_wait_ms`` to a lone query.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from embedsearch.embedders.base import Embedder


@dataclass
class _Job:
    texts: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class BatchingEmbedder:
    """Wraps an :class:`Embedder`; ``embed`` has the same contract, batched across threads."""

    def __init__(self, embedder: Embedder, *, max_batch: int = 64, max_wait_ms: float = 2.0) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._lock = threading.Lock()
        self._pending: list[_Job] = []
        self._leader = False
        self.calls = 0  # model calls made, for tests and metrics
        self.texts = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        job = _Job(list(texts))
        with self._lock:
            self._pending.append(job)
            lead = not self._leader
            if lead:
                self._leader = True
        if lead:
            self._run()
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _run(self) -> None:
        time.sleep(self.max_wait)  # let concurrent requests join the first batch
        while True:
            with self._lock:
                if not self._pending:
                    self._leader = False
                    return
                batch, size = [], 0
                while self._pending and (not batch or size + len(self._pending[0].texts) <= self.max_batch):
                    job = self._pending.pop(0)
                    batch.append(job)
                    size += len(job.texts)
            try:
                vectors = self.embedder.embed([t for job in batch for t in job.texts])
                self.calls += 1
                self.texts += size
                start = 0
                for job in batch:
                    job.result = vectors[start : start + len(job.texts)]
                    start += len(job.texts)
            except BaseException as exc:  # every waiting request gets the error, none hangs
                for job in batch:
                    job.error = exc
            finally:
                for job in batch:
                    job.done.set()
