"""Sharded collections: one collection's segments spread over N Ray actors, searched as one.

A sharded collection is an ordinary collection (one segment list and one set of rows in the
metadata database, written by ``index add`` as usual) whose ``shards`` setting says how many
actors search it. Shard ``s`` of ``N`` opens, memory-mapped from the shared data directory, only
the segments :func:`embedsearch.store.view.owner_of` deals it (sealed segments in row-id order,
round-robin, then the growing one), and follows commits as any reader does.

A search (:class:`ShardRouter`):

1. the filter is evaluated once, in the metadata database, by the caller (the selection's ids
   go to the shards through Ray's object store);
2. every shard searches its segments for the top k and answers with the generation it searched;
3. when all generations agree the answers are merged exactly (:func:`sort_topk`: best score,
   ties by row id), which is the unsharded collection's answer, segment by segment the same;
   when a commit landed between two shards' reads, the fan-out is repeated.

A shard actor that dies is restarted by Ray (``max_restarts=-1``) and reopens its segments; a
search waits for it (its call is retried on the restarted actor) up to ``EMBEDSEARCH_SHARD_TIMEOUT``
seconds (default 60), then fails with :class:`ClusterUnavailable`. A search never returns the
answers of some shards only.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from embedsearch.cluster import connect
from embedsearch.errors import ClusterUnavailable
from embedsearch.store.searcher import MAX_SHARDS, check_shards, partitioned_search

__all__ = ["MAX_SHARDS", "Shard", "ShardRouter", "ShardSearchers", "check_shards"]

_ATTEMPTS = 5


def _timeout() -> float:
    return float(os.environ.get("EMBEDSEARCH_SHARD_TIMEOUT") or 60)


class Shard:
    """The actor body: one shard's view of one collection (only the segments it owns)."""

    def __init__(self, data_dir: str, db_url: str, name: str, collection_id: int, shard: int, shards: int) -> None:
        from pathlib import Path

        import faiss

        from embedsearch.config import Settings
        from embedsearch.store import Store
        from embedsearch.store.view import SegmentSet

        faiss.omp_set_num_threads(1)  # shards search side by side; one thread each
        self.coll = Store(Settings.from_env(Path(data_dir), db_url)).open(name)
        if self.coll.id != collection_id:
            raise ClusterUnavailable(f"collection {name!r} was dropped and created again")
        self.view = SegmentSet(self.coll.dir, self.coll.dim, self.coll.metric)
        self.view.shard = (shard, shards)
        self._sync()  # open the segments now, not on the first search

    def _sync(self):
        return self.view.sync(self.coll.store.engine, self.coll.id)  # reads only what changed

    def search(self, queries, k, sel_ids, sel_generation, nprobe, ef_search):
        from embedsearch.store.selection import Selection

        view = self._sync()
        selection = None if sel_ids is None else Selection(sel_ids, sel_generation)
        scores, ids = view.search(queries, k, selection=selection, nprobe=nprobe, ef_search=ef_search)
        return scores, ids, view.generation

    def describe(self) -> dict[str, Any]:
        view = self._sync()
        return {
            "generation": view.generation,
            "segments": [s.meta.seg_id for s in view.segments()],
            "vectors": sum(s.meta.count for s in view.segments()),
            "pid": os.getpid(),
            "rss_mb": _rss_mb(),
        }


def _rss_mb() -> float | None:
    """This process's resident memory (Linux), mapped segment pages included."""
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


class ShardRouter:
    """The actors of one sharded collection, and the exact merged search over them."""

    def __init__(self, coll, address: str | None = "auto") -> None:
        self.ray = connect(address)
        self.coll = coll
        self.shards = coll.shards
        actor = self.ray.remote(Shard).options(max_restarts=-1, max_task_retries=-1, num_cpus=0)
        settings = coll.store.settings
        self.actors = [
            actor.remote(str(settings.data_dir.resolve()), settings.db_url, coll.name, coll.id, s, self.shards)
            for s in range(self.shards)
        ]

    def alive(self) -> bool:
        return self.ray.is_initialized()

    def generation(self) -> int:
        return self.coll.committed_generation()

    def live(self) -> int:
        """Live vectors of the collection, from the metadata database."""
        from sqlalchemy import func, select

        from embedsearch.store.metadata import segments, tombstones

        cid = self.coll.id
        with self.coll.store.engine.connect() as conn:
            stored = conn.execute(select(func.coalesce(func.sum(segments.c.count), 0)).where(segments.c.collection_id == cid))
            dead = conn.execute(select(func.count()).select_from(tombstones).where(tombstones.c.collection_id == cid))
            return int(stored.scalar_one()) - int(dead.scalar_one())

    def _gather(self, refs):
        ray = self.ray
        try:
            return ray.get(refs, timeout=_timeout())
        except ray.exceptions.GetTimeoutError:
            for r in refs:
                ray.cancel(r, force=False)
            raise ClusterUnavailable(
                f"collection {self.coll.name!r}: a shard did not answer within {_timeout():g} s (a shard restarting "
                "after a failure reopens its segments first); no partial result was returned"
            ) from None
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
            raise ClusterUnavailable(f"collection {self.coll.name!r}: a shard failed: {str(exc).splitlines()[0]}") from None

    def describe(self) -> list[dict[str, Any]]:
        return self._gather([a.describe.remote() for a in self.actors])

    def search(self, queries: np.ndarray, k: int, *, selection=None, nprobe=None, ef_search=None):
        """Top k of the whole collection: every shard's top k, merged exactly (the store's
        partition rule, store/searcher.py); returns scores, ids and the generation every shard
        searched."""
        sel_ids = None if selection is None else self.ray.put(selection.ids)
        sel_gen = None if selection is None else selection.generation
        q = self.ray.put(np.ascontiguousarray(queries, dtype=np.float32))
        for _ in range(_ATTEMPTS):
            answers = self._gather([a.search.remote(q, k, sel_ids, sel_gen, nprobe, ef_search) for a in self.actors])
            try:
                return partitioned_search([lambda *_a, answer=answer, **_k: answer for answer in answers], queries, k)
            except ValueError:
                continue  # a commit landed between two shards' reads: ask again
        raise ClusterUnavailable(f"collection {self.coll.name!r} changed during each of {_ATTEMPTS} searches of its shards")

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone with its cluster
                pass
        self.actors = []


class ShardSearchers:
    """The searcher factory of a store wired to Ray (``Store(settings, searchers=ShardSearchers())``):
    one router, and so one set of shard actors, per sharded collection, started on first use.
    ``address``: the Ray cluster (``--ray ADDRESS``; "auto" finds a running one or starts one)."""

    def __init__(self, address: str | None = "auto") -> None:
        self.address = address
        self.routers: dict[int, ShardRouter] = {}

    def __call__(self, coll) -> ShardRouter:
        router = self.routers.get(coll.id)
        if router is None or not router.alive() or router.shards != coll.shards:
            if router is not None and router.alive():
                router.close()  # the shard count changed: the old actors go
            router = self.routers[coll.id] = ShardRouter(coll, self.address)
        return router

    def forget(self, coll) -> None:
        """Drop a collection's router (the next search starts new actors)."""
        self.routers.pop(coll.id, None)

    def close(self) -> None:
        for router in self.routers.values():
            router.close()
        self.routers.clear()
