"""Progress for training: one tqdm bar over all epochs' words, with words/s, loss and
learning rate as the libraries report them.

gensim reports through its logger (``EPOCH n - PROGRESS: at x% examples, y words/s``) and
the fastText binary writes a ``Progress: x% words/sec/thread: ... lr: ... avg.loss: ...``
line to file descriptor 2; :class:`GensimProgress` and :func:`capture_fd2` turn both into
bar updates and loss-curve points without touching the libraries' training loops.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any


class Bar:
    """A percentage bar (0-100 over the whole run), silent when disabled or not a TTY."""

    def __init__(self, desc: str, enabled: bool, file: IO[str] | None = None) -> None:
        from embedsearch.progress import bar as progress_bar

        fmt = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}"
        self._bar = progress_bar(100.0, desc, "%", enabled=enabled, bar_format=fmt, file=file)

    def update_to(self, percent: float, **postfix: Any) -> None:
        self._bar.update_to(min(100.0, percent), **postfix)  # it never moves back

    def close(self) -> None:
        self._bar.close()


class GensimProgress(logging.Handler):
    """Reads gensim's per-second progress records while a model trains."""

    _LOGGER = "gensim.models.word2vec"

    def __init__(self, bar: Bar, epochs: int) -> None:
        super().__init__(logging.INFO)
        self.bar = bar
        self.epochs = epochs
        self.words_per_sec: list[float] = []
        self.loss: str | None = None  # set by the epoch callback: gensim reports loss per epoch only
        self.lr: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg if isinstance(record.msg, str) else ""
        try:
            if msg.startswith("EPOCH %i - PROGRESS"):
                epoch, pct, wps = record.args[0], record.args[1], record.args[2]
                self.bar.update_to((epoch + pct / 100.0) * 100.0 / self.epochs, words_s=f"{wps:,.0f}", lr=self.lr, loss=self.loss)
            elif msg.startswith("EPOCH %i: training on"):
                epoch, wps = record.args[0], record.args[4]
                self.words_per_sec.append(float(wps))
                self.bar.update_to((epoch + 1) * 100.0 / self.epochs, words_s=f"{wps:,.0f}", lr=self.lr, loss=self.loss)
        except (IndexError, TypeError):  # a record of another shape: ignore it, never break training
            pass

    @contextmanager
    def attached(self) -> Iterator[GensimProgress]:
        logger = logging.getLogger(self._LOGGER)
        old_level, old_propagate = logger.level, logger.propagate
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # the records feed the bar; they are not the user's log
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(old_level)
            logger.propagate = old_propagate


_FASTTEXT_PROGRESS = re.compile(
    r"Progress:\s*([\d.]+)%\s*words/sec/thread:\s*(\d+)\s*lr:\s*([-+\d.eE]+)\s*avg\.loss:\s*([-+\d.eEnaif]+)"
)


def parse_fasttext_progress(text: str) -> list[tuple[float, int, float, float]]:
    """(percent, words/s/thread, lr, avg loss) for every progress line in ``text``."""
    return [(float(p), int(w), float(lr), float(loss)) for p, w, lr, loss in _FASTTEXT_PROGRESS.findall(text)]


@contextmanager
def capture_fd2(on_text: Callable[[str], None]) -> Iterator[IO[str]]:
    """Route file descriptor 2 (where C++ code writes) through a pipe to ``on_text`` while the
    block runs; yields a text stream on the real stderr for the caller's own output."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump() -> None:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    return
                on_text(chunk.decode("utf-8", errors="replace"))

    reader = threading.Thread(target=pump, name="fd2-reader", daemon=True)
    reader.start()
    real = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield real
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        reader.join()
        real.close()
