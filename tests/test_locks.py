"""The collection reader/writer lock: a writer gets in while readers keep arriving (issue 12: a
writer used to wait behind a stream of searches for the whole stream)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from embedsearch.store.locks import RWLock

HOLD = 0.02  # each read holds the lock this long, like a search
READERS = 4
STREAM = 3.0  # readers keep arriving for this long unless the writer is done


class ReaderPreferringLock:
    """A reader/writer lock without writer preference: what the harness must catch starving."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self):
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self):
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def writer_wait_under_a_stream_of_readers(lock) -> tuple[float, int, int]:
    """Seconds a writer waits while readers overlap continuously; reads before and after it."""
    stop = threading.Event()
    writer_done = threading.Event()
    reads_before = reads_after = 0
    count_lock = threading.Lock()

    def reader(offset: float) -> None:
        nonlocal reads_before, reads_after
        time.sleep(offset)  # staggered, so some reader always holds the lock
        deadline = time.monotonic() + STREAM
        while not stop.is_set() and time.monotonic() < deadline:
            with lock.read():
                time.sleep(HOLD)
            with count_lock:
                if writer_done.is_set():
                    reads_after += 1
                else:
                    reads_before += 1

    threads = [threading.Thread(target=reader, args=(i * HOLD / READERS,)) for i in range(READERS)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # the stream is flowing
    started = time.monotonic()
    with lock.write():
        waited = time.monotonic() - started
    writer_done.set()
    time.sleep(0.2)  # readers carry on after the writer
    stop.set()
    for t in threads:
        t.join()
    return waited, reads_before, reads_after


def test_a_writer_gets_in_while_readers_keep_arriving():
    waited, before, after = writer_wait_under_a_stream_of_readers(RWLock())
    assert before > READERS  # the readers were running when the writer came
    assert waited < 0.5, f"the writer waited {waited:.2f} s behind readers"  # about one HOLD, not the stream
    assert after > 0  # and readers go on afterwards


@pytest.mark.slow
def test_the_harness_catches_a_starving_writer():
    waited, _, after = writer_wait_under_a_stream_of_readers(ReaderPreferringLock())
    assert waited > 2.0  # it waited for (nearly) the whole stream
    assert after == 0
