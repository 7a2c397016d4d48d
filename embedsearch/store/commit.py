"""The one commit protocol: the only code that changes which segments, tombstones and trained
templates of a collection are live.

Every writer (a batch, a seal, a merge, a retrain, the legacy migration, a repair) writes its
new files first (durable, named by nobody yet), then runs :func:`commit`:

1. one SQL transaction locks the collection row (``SELECT ... FOR UPDATE``) and checks that the
   generation is still the one the writer started from (otherwise another writer committed
   first and this one must not overwrite it);
2. the caller records its change through the open connection (segment list, tombstones,
   trainings, the documents' rows);
3. the collection row gets the new generation (exactly one more) and the values the caller set;
   the transaction commits;
4. after the commit, and only from what it recorded: the collection's row in memory is updated,
   the files the commit made obsolete are deleted (:mod:`embedsearch.store.deleter`), and the
   in-memory view is brought to the new generation by the one path every reader takes
   (``Collection.view()``). Nothing in memory is patched beside the transaction.

A failure before the commit leaves the committed state as it was (the writer's new files are
leftovers for the deleter) and drops the in-memory view, so the next read reopens the committed
state. Crash points ``<prefix>before-commit`` and ``<prefix>after-commit`` bracket step 3 for the
crash-consistency tests.

Callers hold the collection's writer locks (store/locks.py gives the order).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import select, update

from embedsearch.errors import InconsistentCollection
from embedsearch.store import deleter, manifest
from embedsearch.store.crashpoints import crash_point
from embedsearch.store.metadata import collections


@dataclass
class Commit:
    """One commit in progress: the open transaction, the generation it creates, the collection
    row's values it records, and the files it makes obsolete."""

    conn: Any
    generation: int
    values: dict[str, Any]
    obsolete: list[str] = field(default_factory=list)
    #: the tombstones the commit added, when the caller knows them all (then the view follows the
    #: commit from what it recorded, without reading SQL again; None: the view reads SQL)
    tombstones: Any = None


def check_generation(conn, collection_id: int, generation: int, name: str = "") -> None:
    """Lock the collection row and check that ``generation`` is still the committed one."""
    current = conn.execute(
        select(collections.c.generation).where(collections.c.id == collection_id).with_for_update()
    ).scalar_one_or_none()
    if current is None:
        from embedsearch.errors import CollectionNotFound

        raise CollectionNotFound(f"collection {name!r} no longer exists")
    if current != generation:
        raise InconsistentCollection(f"collection {name!r} changed underneath this writer")


@contextmanager
def commit(coll, *, crash: str = "", sync: bool = True) -> Iterator[Commit]:
    """Commit one change of ``coll`` as generation ``coll.generation + 1`` (see the module
    docstring). ``crash``: the crash points' prefix; ``sync``: bring the view to the new
    generation afterwards (off when the caller reopens it anyway)."""
    gen = coll.generation
    new = Commit(None, gen + 1, {"generation": gen + 1, "updated_at": datetime.now(timezone.utc)})
    try:
        with coll.store.engine.begin() as conn:
            check_generation(conn, coll.id, gen, coll.name)
            new.conn = conn
            yield new
            new.values["generation"] = gen + 1  # exactly one more, whatever the caller set
            conn.execute(update(collections).where(collections.c.id == coll.id).values(**new.values))
            known = None
            if sync and new.tombstones is not None:  # the state this transaction commits, as it commits it
                known = manifest.CommittedState(
                    gen + 1,
                    manifest.read_segments(conn, coll.id),
                    manifest.read_training(conn, coll.id),
                    np.sort(np.asarray(new.tombstones, dtype=np.int64)),
                )
            crash_point(f"{crash}before-commit")
    except BaseException:
        coll.forget_view()  # the next read opens the committed state
        raise
    crash_point(f"{crash}after-commit")
    coll.row.update(new.values)
    deleter.remove(coll.dir, new.obsolete)
    if sync:
        coll.view(known)
