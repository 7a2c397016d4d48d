"""Scale-out on Ray: embedding across a cluster (ingest.py) and sharded collections (shards.py).

Ray is an optional dependency (``pip install -e '.[ray]'``). Where to run:

* an address (``ray://host:10001`` or ``host:6379``) or ``RAY_ADDRESS``: that cluster;
* ``auto`` (the default): ``RAY_ADDRESS`` when set, else a cluster already running on this
  machine (``ray start --head``), else a local one started for this process on 127.0.0.1 and
  stopped with it.

The data directory and the metadata database must be reachable by every node under the same
path and URL (shared storage; PostgreSQL for several nodes, SQLite on one machine).
"""

from __future__ import annotations

import os
import threading

from embedsearch.errors import ClusterUnavailable

_lock = threading.Lock()


def require_ray():
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable("Ray is not installed: pip install -e '.[ray]' (or pip install 'ray[data]')") from None
    return ray


def connect(address: str | None = "auto"):
    """Join (or start) a Ray cluster once per process; returns the ``ray`` module."""
    ray = require_ray()
    with _lock:
        if ray.is_initialized():
            _keep_stdout_clean(ray)
            return ray
        options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        # workers see this process's EMBEDSEARCH_* settings (data directory, database, test hooks)
        env = {k: v for k, v in os.environ.items() if k.startswith("EMBEDSEARCH_") or k == "HF_HUB_OFFLINE"}
        options["runtime_env"] = {"env_vars": env}
        target = address or "auto"
        if target == "auto":
            target = os.environ.get("RAY_ADDRESS") or None
        try:
            if target is not None:
                ray.init(address=target, **options)
            else:
                try:
                    ray.init(address="auto", **options)  # a cluster already running here
                except (ConnectionError, RuntimeError, ValueError):
                    ray.init(_node_ip_address="127.0.0.1", **options)  # a local one, loopback only
        except Exception as exc:  # Ray raises several types for an unreachable cluster
            raise ClusterUnavailable(f"cannot reach the Ray cluster at {target or 'this machine'}: {exc}") from None
        _keep_stdout_clean(ray)
        return ray


def _keep_stdout_clean(ray) -> None:
    """Ray prints the raylet's warnings ("N PYTHON worker processes have been started ...") on
    the driver's stdout, which is where ``--json`` output goes: send them to stderr."""
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "embedsearch_to_stderr", False):
        return

    def to_stderr(data, *args, **kwargs):
        return original({**data, "is_err": True}, *args, **kwargs)

    to_stderr.embedsearch_to_stderr = True
    worker.print_to_stdstream = to_stderr


def has_gpus(ray) -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0
