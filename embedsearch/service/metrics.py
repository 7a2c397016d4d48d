"""``/metrics`` in the Prometheus text format, with prometheus_client.

Every app has its own registry (no module-level state: two apps in one process, as in the tests,
count apart). Requests are counted by method, route template (``/collections/{name}/search``, not
the path, so the number of series stays bounded; paths no route matches count as ``other``) and
status, with a latency histogram by method and route; the query-batching counters of the
service's batchers and the start-up model loads (``service/preload.py``) are read when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _BatchingCollector:
    """Query batching: whether it is on, model calls made and query texts embedded."""

    def __init__(self, enabled: bool, batchers: Callable[[], Iterable[Any]]) -> None:
        self.enabled = enabled
        self.batchers = batchers

    def collect(self):
        batchers = list(self.batchers())
        yield GaugeMetricFamily(
            "embedsearch_query_batching_enabled", "1 when concurrent queries are embedded together", value=int(self.enabled)
        )
        calls, texts = sum(b.calls for b in batchers), sum(b.texts for b in batchers)
        yield CounterMetricFamily("embedsearch_query_batching_model_calls", "Model calls made for query embeddings", value=calls)
        yield CounterMetricFamily("embedsearch_query_batching_queries", "Texts embedded through the batchers (queries and "
                                  "/v1/embeddings inputs)", value=texts)  # fmt: skip


class _ModelLoadCollector:
    """Readiness, and the seconds each collection's model took to load at start-up."""

    def __init__(self, loads: Callable[[], Iterable[Any]], ready: Callable[[], bool]) -> None:
        self.loads = loads
        self.ready = ready

    def collect(self):
        yield GaugeMetricFamily("embedsearch_ready", "1 once the models loaded at start-up are loaded (or failed)",
                                value=int(self.ready()))  # fmt: skip
        seconds = GaugeMetricFamily("embedsearch_model_load_seconds", "Seconds the start-up load of each collection's model took",
                                    labels=["collection", "model", "state"])  # fmt: skip
        for load in self.loads():
            seconds.add_metric([load.collection, load.model, load.state], load.seconds)
        yield seconds


class _ConnectionCollector:
    """The connection limits of ``serve`` (service/server.py): open connections, and those closed
    for a header or body timeout, evicted to make room, or refused at the cap."""

    def __init__(self, events: Any) -> None:
        self.events = events

    def collect(self):
        yield GaugeMetricFamily("embedsearch_http_connections_open", "HTTP connections open", value=self.events.open)
        closed = CounterMetricFamily("embedsearch_http_connections_closed", "HTTP connections the limits closed, by reason",
                                     labels=["reason"])  # fmt: skip
        for reason, n in self.events.closed.items():
            closed.add_metric([reason], n)
        yield closed


class ServiceMetrics:
    """The service's metrics, in a registry of its own."""

    def __init__(self, *, batching: bool = True, batchers: Callable[[], Iterable[Any]] = list,
                 loads: Callable[[], Iterable[Any]] = list, ready: Callable[[], bool] = lambda: True,
                 connections: Any = None) -> None:  # fmt: skip
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "embedsearch_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "embedsearch_http_request_duration_seconds",
            "Time from receiving a request to its response, by method and route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_BatchingCollector(batching, batchers))
        self.registry.register(_ModelLoadCollector(loads, ready))
        if connections is not None:  # served by `embedsearch serve` (an app in a test client has none)
            self.registry.register(_ConnectionCollector(connections))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        """The metrics in the Prometheus text exposition format."""
        return generate_latest(self.registry)
