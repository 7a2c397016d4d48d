"""The HTTP server: uvicorn's h11 protocol with limits that hold against slow and silent clients.

uvicorn closes a connection that stays idle after a response (``--keep-alive``), but not one that
never finishes a request: a client that connects and sends nothing, half the headers or half a
body keeps its socket, its file descriptor and its memory for as long as it likes, and a few
hundred of them exhaust the process's open files (``accept`` then fails and every client waits).
uvicorn's ``limit_concurrency`` answers 503 only once a request has arrived, so it does not help.
This module adds, per connection:

* a **header timeout**: the request line and headers must arrive within ``header_timeout``
  seconds of the connection opening (or of the first byte of a later request on a kept-alive
  connection); otherwise the client gets ``408`` and the connection is closed;
* a **body timeout**: the body must arrive within ``body_timeout`` seconds of the headers;
* a **connection cap**: past ``max_connections`` open connections, the oldest connection with no
  request being served (idle between requests, or still sending its headers) is closed to make
  room; when every connection has a request in flight, the new one gets ``503`` with
  ``Retry-After`` at once instead of waiting in the queue. A client that is being served is
  never cut off by newcomers, and idle sockets can never lock the service out.

The default cap follows the open-file limit, which :func:`raise_open_file_limit` first raises to
its hard limit (as servers do), keeping :data:`RESERVED_FDS` for the database, FAISS files, models
and logs, and room for one burst of accepts (asyncio accepts up to the listen backlog at once,
before any of them is counted), so ``accept`` never runs out of descriptors.

The protocol subclasses uvicorn's ``H11Protocol`` (uvicorn is pinned in ``constraints.txt``);
what it adds is confined to the hooks ``connection_made``, ``data_received``,
``on_response_complete`` and ``connection_lost``.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass

RESERVED_FDS = 64  # kept for the database, segment files, models, logs
MAX_DEFAULT_CONNECTIONS = 4096


REASONS = ("header_timeout", "body_timeout", "evicted", "refused")


class ConnectionEvents:
    """What the limits did, for ``/metrics``: connections open now, and those closed by each
    reason of :data:`REASONS` (written on the event loop, read by a scrape)."""

    def __init__(self) -> None:
        self.open = 0
        self.closed = dict.fromkeys(REASONS, 0)

    def __call__(self, event: str) -> None:
        if event == "opened":
            self.open += 1
        elif event == "lost":
            self.open -= 1
        else:
            self.closed[event] += 1


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 1024
    # called with "opened", "lost" and each reason of REASONS (a ConnectionEvents)
    observe: Callable[[str], None] | None = None


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (at most 65,536); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    want = min(want, 65536)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return 65536 if soft == resource.RLIM_INFINITY else int(soft)


def accept_backlog(open_files: int) -> int:
    """The listen backlog, which is also how many connections asyncio accepts in one go before
    any of them is counted against the cap: a quarter of the open files beyond the reserve."""
    return max(8, min(2048, (open_files - RESERVED_FDS) // 4))


def default_max_connections(open_files: int) -> int:
    """The connection cap an open-file limit allows: the open files less :data:`RESERVED_FDS` and
    one accept burst (:func:`accept_backlog`), at most :data:`MAX_DEFAULT_CONNECTIONS`."""
    return max(8, min(MAX_DEFAULT_CONNECTIONS, open_files - RESERVED_FDS - accept_backlog(open_files)))


def _plain_response(status: int, reason: str, message: str, extra: str = "") -> bytes:
    body = message.encode("utf-8")
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            f"{extra}content-length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode("ascii") + body


def protocol_class(limits: Limits) -> type:
    """uvicorn's h11 protocol with ``limits`` (pass as ``uvicorn.run(..., http=...)``)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    def note(event: str) -> None:
        if limits.observe is not None:
            limits.observe(event)

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            note("opened")
            self.opened_at = self.loop.time()
            self.timer = None
            self.phase = ""
            if len(self.connections) > limits.max_connections and not self.make_room():
                note("refused")
                transport.write(_plain_response(503, "Service Unavailable", "too many connections; retry shortly",
                                                "retry-after: 1\r\n"))  # fmt: skip
                transport.close()
                return
            self.arm("headers", limits.header_timeout)

        def make_room(self) -> bool:
            """Close the oldest connection that has no request being served; False if none."""
            idle = [c for c in self.connections
                    if c is not self and isinstance(c, GuardedH11Protocol) and c.evictable()]  # fmt: skip
            if not idle:
                return False
            oldest = min(idle, key=lambda c: c.opened_at)
            oldest.disarm()
            oldest.transport.close()
            self.connections.discard(oldest)  # counted out now; its connection_lost follows
            note("evicted")
            return True

        def evictable(self) -> bool:
            if self.transport is None or self.transport.is_closing():
                return False
            serving = self.cycle is not None and not self.cycle.response_complete
            return not serving and self.conn.their_state is h11.IDLE

        def arm(self, phase: str, seconds: float) -> None:
            self.disarm()
            self.phase = phase
            self.timer = self.loop.call_later(seconds, self.expired, phase)

        def disarm(self) -> None:
            if self.timer is not None:
                self.timer.cancel()
            self.timer, self.phase = None, ""

        def expired(self, phase: str) -> None:
            self.timer, self.phase = None, ""
            if self.transport.is_closing():
                return
            note(f"{'header' if phase == 'headers' else 'body'}_timeout")
            if phase == "headers" or self.cycle is None or not self.cycle.response_started:  # (a kept-alive
                # connection's cycle is the previous request's until the new one's headers are in)
                what = "headers" if phase == "headers" else "body"
                seconds = limits.header_timeout if phase == "headers" else limits.body_timeout
                self.transport.write(_plain_response(408, "Request Timeout", f"the request {what} did not arrive within "
                                                     f"{seconds:g} s"))  # fmt: skip
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.transport.is_closing():
                self.disarm()
                return
            state = self.conn.their_state
            if state is h11.IDLE:  # headers under way (the first byte of a kept-alive request starts the clock)
                if self.phase != "headers":
                    self.arm("headers", limits.header_timeout)
            elif state is h11.SEND_BODY:
                if self.phase != "body":
                    self.arm("body", limits.body_timeout)
            else:  # the request is complete: the application has it
                self.disarm()

        def on_response_complete(self) -> None:
            self.disarm()  # from here uvicorn's keep-alive timeout applies
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self.disarm()
            note("lost")
            super().connection_lost(exc)

    return GuardedH11Protocol
