"""``embedsearch serve``: the HTTP API and the search page."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind (only loopback unless you say otherwise)."
)
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--api-key-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="File holding the API key that writes must send (X-API-Key or Authorization: Bearer).")  # fmt: skip
@click.option("--read-only", is_flag=True, help="Refuse every write (adding or deleting documents).")
@click.option("--models-dir", default="models", show_default=True, type=click.Path(file_okay=False),
              help="Where word models for /similar and /models/{name} live.")  # fmt: skip
@click.option("--no-batching", is_flag=True, help="Embed each query on its own instead of batching concurrent queries.")
@click.option("--device", default=None, help="Where models run: cpu, cuda… (default: CUDA when available).")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="A name the Host header may carry (repeatable). Default on loopback: 127.0.0.1, localhost, ::1 "
                   "(a page cannot reach the service by rebinding its own name); beyond loopback: any.")  # fmt: skip
@click.option("--allow-open-writes", is_flag=True,
              help="Accept writes without an API key even when listening beyond loopback.")  # fmt: skip
@click.option("--keep-alive", default=5, show_default=True, type=click.IntRange(1, 3600),
              help="Seconds an idle HTTP connection stays open.")  # fmt: skip
@click.option("--header-timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds a client has to send a request's line and headers (from connecting, or from the first byte "
                   "of a later request); then 408 and the connection closes.")  # fmt: skip
@click.option("--body-timeout", default=60.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds a client has to send a request's body after its headers; then 408 and the connection closes.")
@click.option("--max-connections", default=None, type=click.IntRange(1, 1_000_000),
              help="Open connections at most (default: what the open-file limit allows, at most 4096). Past it the oldest "
                   "connection with no request being served is closed; if every one is being served, 503 at once.")  # fmt: skip
@click.option("--ray", "ray_address", is_flag=False, flag_value="auto", default=None, metavar="[ADDRESS]",
              help="Join a Ray cluster at start-up for sharded collections (default: RAY_ADDRESS, a cluster "
                   "running here, or a local one); without it, the first search of one joins it.")  # fmt: skip
@click.option("--preload/--no-preload", default=True, show_default=True,
              help="Load the models of the collections at start-up, in the background, logging each load with its "
                   "time; /health answers 503 \"loading\" until they are loaded (/health/live: 200 meanwhile). "
                   "--no-preload: each model loads on its collection's first query.")  # fmt: skip
@click.pass_obj
def serve(
    app, host, port, api_key_file, read_only, models_dir, no_batching, device, allowed_hosts, allow_open_writes, keep_alive,
    header_timeout, body_timeout, max_connections, ray_address, preload,
):  # fmt: skip
    """Serve the collections of the data directory over HTTP, with a search page at /.

    \b
    Examples:
      embedsearch serve                                   # http://127.0.0.1:8765/
      embedsearch serve --port 9000 --api-key-file key.txt
      embedsearch serve --read-only --host 0.0.0.0        # visible on the network, no writes
      embedsearch serve --host 0.0.0.0 --api-key-file key.txt --allowed-host search.example.org
      embedsearch serve --ray auto                        # sharded collections on Ray
      embedsearch serve --no-preload                      # ready at once; models load on first use
      embedsearch serve --header-timeout 5 --max-connections 500
      curl -s -X POST localhost:8765/collections/news/search -H 'Content-Type: application/json' \\
           -d '{"query": "interest rates", "k": 5}'
    """
    import uvicorn

    from embedsearch.errors import InvalidArgument
    from embedsearch.service.app import create_app
    from embedsearch.service.server import (
        ConnectionEvents,
        Limits,
        accept_backlog,
        default_max_connections,
        protocol_class,
        raise_open_file_limit,
    )

    key = None
    if api_key_file:
        key = Path(api_key_file).read_text(encoding="utf-8").strip()
        if not key:
            raise InvalidArgument(f"{api_key_file} is empty; an API key must not be empty")
    if ray_address is not None:
        from embedsearch.cluster import connect

        connect(ray_address)
    open_files = raise_open_file_limit()
    events = ConnectionEvents()
    limits = Limits(header_timeout, body_timeout, max_connections or default_max_connections(open_files), observe=events)
    loopback = is_loopback(host)
    hosts = list(allowed_hosts) or (["127.0.0.1", "localhost", "::1"] if loopback else None)
    service = create_app(
        app.settings,
        api_key=key,
        read_only=read_only,
        device=device,
        batch_queries=not no_batching,
        models_dir=Path(models_dir),
        allowed_hosts=hosts,
        open_writes=loopback or allow_open_writes,
        ray_address=ray_address or "auto",
        preload=preload,
        connection_events=events,
    )
    log_to_stderr()
    click.echo(f"serving {app.settings.data_dir} on http://{host}:{port}/ (API docs at /docs)", err=True)
    if not loopback and key is None and not read_only and not allow_open_writes:
        click.echo("listening beyond loopback without --api-key-file: writes are refused", err=True)
    uvicorn.run(service, host=host, port=port, log_level="warning", timeout_keep_alive=keep_alive, http=protocol_class(limits),
                backlog=accept_backlog(open_files))  # fmt: skip


def log_to_stderr() -> None:
    """The service's log (model loads, errors with their request ids) on stderr, with the time."""
    import logging

    from embedsearch.service.middleware import RequestIdFilter

    logger = logging.getLogger("embedsearch")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RequestIdFilter())  # a line logged during a request ends with its request_id=
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds loopback addresses only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
