"""Named points where the crash-consistency tests kill a process (``EMBEDSEARCH_TEST_CRASH_AT``)."""

from __future__ import annotations

import os


def crash_point(name: str) -> None:
    """Crash-consistency tests kill the process here (``EMBEDSEARCH_TEST_CRASH_AT=name``)."""
    if os.environ.get("EMBEDSEARCH_TEST_CRASH_AT") == name:
        os._exit(17)
