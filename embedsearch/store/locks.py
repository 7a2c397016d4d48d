"""Locks: a reader/writer lock for threads, and lock files for processes.

Lock files live in ``<data dir>/.locks/``, outside the collection directories, so dropping a
collection (which removes its directory) never removes a lock another process is waiting on.

The lock order. Every path that holds more than one of a collection's locks takes them in this
order, outermost first, and releases them in reverse:

1. the **merge** lock file (``<name>.merge.lock``): a merge or optimize run, and drop;
2. the collection's **writer** lock (``Collection.writer_lock()``, threads of one process);
3. the **write** lock file (``<name>.write.lock``): one writer across processes;
4. the view's **sync** lock (threads bringing the in-memory view to the committed state);
5. the view's **read/write** lock (:class:`RWLock`: searches read, a sync writes).

A lock may be *tried* out of order without waiting (``file_lock(..., blocking=False)``): the
writer's leftover clean-up tries the merge lock while it holds the write lock, and skips its
scan when a merge runs, so it can never wait in a cycle. A read that gave up being optimistic
(``Collection.at_one_generation``) takes 2 and 3 in order. tests/test_concurrency.py forces
the interleavings that deadlocked when drop took 5 before 1 and 3.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class RWLock:
    """Many readers or one writer (threads). A waiting writer stops new readers from entering,
    so a stream of searches cannot starve a commit."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@contextmanager
def file_lock(path: Path, *, blocking: bool = True) -> Iterator[bool]:  # see the lock order above
    """An exclusive lock on ``path`` across processes; yields False (without the lock) when
    ``blocking`` is off and someone else holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_locked(path: Path) -> bool:
    """Whether another process holds ``path`` right now."""
    with file_lock(path, blocking=False) as got:
        return not got
