"""``/metrics`` in the Prometheus text format, with prometheus_client.

Every app has its own registry (no module-level state: two apps in one process, as in the tests,
count apart). Requests are counted by method, route template (``/collections/{name}/search``, not
the path, so the number of series stays bounded; paths no route matches count as ``other``) and
status, with a latency histogram by method and route, and the seconds each stage of a search
took (``embedsearch_search_stage_seconds{stage}``, from the library's ``timings``: the stages
of store/timings.py). Read when scraped: the query-batching counters of the service's batchers,
the start-up model loads (``service/preload.py``), the process (prometheus_client's process
collector: memory, CPU, open files; and the threads) and each collection's numbers
(``Store.stats()``: documents, vectors, segments, tombstones, bytes, generation; one SQL
statement, no model, none of the collections' locks, so a scrape never waits for a writer
nor holds one up).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from embedsearch.store.timings import STAGES

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: the per-collection gauges: (name suffix, help, the field of store.stats.CollectionStats)
COLLECTION_GAUGES = (
    ("documents", "Documents in the collection", "documents"),
    ("vectors", "Vectors searched (a chunked collection has one per passage): stored less tombstones", "vectors"),
    ("segments", "Segments: sealed ones and the growing one", "segments"),
    ("tombstones", "Vectors deleted or replaced but still in a segment, until a merge drops them", "tombstones"),
    ("bytes", "Bytes of the files in the collection's directory (segments, growing log, trained templates)", "bytes"),
    ("generation", "Commits so far (every write, seal and merge adds one)", "generation"),
)

log = logging.getLogger("embedsearch.service")


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


class _ThreadsCollector:
    """Threads of the process: the operating system's count (Linux: /proc/self/status) and the
    Python threads alive (threading.active_count)."""

    def collect(self):
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as f:
                os_threads = next((int(line.split()[1]) for line in f if line.startswith("Threads:")), None)
        except OSError:  # not Linux: the process collector has nothing to read there either
            os_threads = None
        if os_threads is not None:
            yield GaugeMetricFamily("process_threads", "Threads of the process (the operating system's count)", value=os_threads)
        yield GaugeMetricFamily("embedsearch_python_threads", "Python threads alive", value=threading.active_count())


class _CollectionCollector:
    """Each collection's documents, vectors, segments, tombstones, bytes and generation, one
    series per collection, read from the store when scraped (``Store.stats()``)."""

    def __init__(self, stats: Callable[[], Iterable[Any]]) -> None:
        self.stats = stats

    def collect(self):
        try:
            stats = list(self.stats())
        except Exception as exc:  # a scrape reports what it can; the log says why these are missing
            log.warning("/metrics: could not read the collections' numbers: %s", exc)
            stats = None
        yield GaugeMetricFamily("embedsearch_collection_stats_ok", "1 when the collections' numbers below could be read",
                                value=int(stats is not None))  # fmt: skip
        for suffix, help_text, field in COLLECTION_GAUGES:
            family = GaugeMetricFamily(f"embedsearch_collection_{suffix}", help_text, labels=["collection"])
            for s in stats or ():
                family.add_metric([s.name], getattr(s, field))
            yield family


class ServiceMetrics:
    """The service's metrics, in a registry of its own."""

    def __init__(self, *, batching: bool = True, batchers: Callable[[], Iterable[Any]] = list,
                 loads: Callable[[], Iterable[Any]] = list, ready: Callable[[], bool] = lambda: True,
                 connections: Any = None, collections: Callable[[], Iterable[Any]] | None = None) -> None:  # fmt: skip
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
        self.stages = Histogram(
            "embedsearch_search_stage_seconds",
            "Seconds each stage of a search request took (all the request's queries together), by stage",
            ["stage"],
            buckets=STAGE_BUCKETS_S,
            registry=self.registry,
        )
        for stage in STAGES:  # every stage's series from the start, at 0
            self.stages.labels(stage)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, _cpu_seconds_total, _open_fds...
        self.registry.register(_ThreadsCollector())
        if collections is not None:
            self.registry.register(_CollectionCollector(collections))
        self.registry.register(_BatchingCollector(batching, batchers))
        self.registry.register(_ModelLoadCollector(loads, ready))
        if connections is not None:  # served by `embedsearch serve` (an app in a test client has none)
            self.registry.register(_ConnectionCollector(connections))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_stages(self, timings: dict[str, float]) -> None:
        """One search request's stage timings (seconds by stage, from the library's ``timings``)."""
        for stage, seconds in timings.items():
            if stage in STAGES:  # the label stays bounded whatever a caller put in the dict
                self.stages.labels(stage).observe(seconds)

    def render(self) -> bytes:
        """The metrics in the Prometheus text exposition format."""
        return generate_latest(self.registry)
