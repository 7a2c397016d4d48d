"""Progress of long runs, for people at a terminal, for logs and for programs.

Every long loop (adding documents, embedding, training, comparing) reports through :func:`bar`,
which gives a tqdm-like object (``update``, ``update_to``, ``set_postfix``, ``close``). How it
shows is chosen once per process (:func:`configure`; the CLI's ``--progress``, ``--no-progress``,
``--quiet`` and ``--json-progress``):

* ``bar``: tqdm's bar on a terminal;
* ``lines``: one plain line on stderr every ``interval`` seconds (default 10) while the run lasts,
  ``adding to news: 4,000/150,000 docs (2.7%), 812 docs/s, ETA 3m00s``, and a last line when a run
  that printed any ends, so a run under ``nohup``, in CI or a notebook is not silent;
* ``json``: the same as JSON lines on stderr, ``{"event": "progress", "task", "done", "total",
  "unit", "rate", "eta_s", "elapsed_s"}``, plus ``start`` and ``end`` events, for programs;
* ``off``.

``auto`` (the default) is ``bar`` when stderr is a terminal and ``lines`` otherwise. A command
that writes ``--json`` to stdout shows progress only when asked (:func:`wanted`): its stderr
usually goes to the same place.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import IO, Any

MODES = ("auto", "bar", "lines", "json", "off")
DEFAULT_INTERVAL_S = 10.0
_settings: dict[str, Any] = {"mode": "auto", "explicit": False, "interval": None}


def configure(mode: str = "auto", *, explicit: bool = False, interval: float | None = None) -> None:
    """Choose how progress shows in this process; ``explicit``: the user asked for it (so commands
    writing ``--json`` show it too)."""
    if mode not in MODES:
        raise ValueError(f"progress mode {mode!r} is not one of {', '.join(MODES)}")
    _settings.update(mode=mode, explicit=explicit, interval=interval)


def mode(file: IO[str] | None = None) -> str:
    """The mode in effect: ``auto`` resolved against ``file`` (default stderr)."""
    m = _settings["mode"]
    if m == "auto":
        return "bar" if _isatty(file) else "lines"
    if m == "bar" and not _isatty(file):
        return "lines"  # a bar drawn into a file is a wall of carriage returns
    return m


def wanted(as_json: bool = False) -> bool:
    """Whether a command shows progress: not when off; with ``--json`` output only when asked."""
    if _settings["mode"] == "off":
        return False
    return not as_json or _settings["explicit"]


def interval() -> float:
    value = _settings["interval"] or os.environ.get("EMBEDSEARCH_PROGRESS_INTERVAL") or DEFAULT_INTERVAL_S
    return max(0.0, float(value))


def _isatty(file: IO[str] | None = None) -> bool:
    try:
        return (file or sys.stderr).isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class _Off:
    n = 0

    def update(self, n: float = 1) -> None:
        pass

    def update_to(self, done: float, **postfix: Any) -> None:
        """Absolute progress: move to ``done`` (never back), the postfix first (the update is
        what redraws the line)."""
        postfix = {k: v for k, v in postfix.items() if v is not None}
        if postfix:
            self.set_postfix(postfix, refresh=False)
        if done > self.n:
            self.update(done - self.n)

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Tqdm(_Off):
    """tqdm's bar, with ``update_to`` (absolute progress) added."""

    def __init__(self, total: float | None, desc: str, unit: str, leave: bool, bar_format: str | None, file: IO[str]) -> None:
        from tqdm import tqdm

        kwargs = {"bar_format": bar_format} if bar_format else {}
        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, file=file, **kwargs)
        self.n = 0.0

    def update(self, n: float = 1) -> None:
        self.n += n
        self.bar.update(n)

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        self.bar.set_postfix(*args, **kwargs)

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        self.bar.set_postfix_str(*args, **kwargs)

    def close(self) -> None:
        self.bar.close()


class _Records(_Off):
    """Periodic records on stderr: plain lines or JSON lines."""

    def __init__(self, total: float | None, desc: str, unit: str, as_json: bool, file: IO[str]) -> None:
        self.total, self.desc, self.unit, self.as_json, self.file = total, desc, unit, as_json, file
        self.n = 0.0
        self.started = time.monotonic()
        self.every = interval()
        self.next_at = self.started + self.every
        self.printed = False
        self.closed = False
        self.postfix: dict[str, Any] = {}
        if as_json:
            self._emit("start")

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now >= self.next_at:
            self.next_at = now + self.every
            self._emit("progress", now)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix.update({**(ordered_dict or {}), **kwargs})

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix["status"] = s

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.as_json or self.printed:  # a run that stayed quiet (shorter than the interval) ends quietly
            self._emit("end")

    def _emit(self, event: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        elapsed = now - self.started
        rate = self.n / elapsed if elapsed > 0 else None
        left = None if not self.total or not rate else max(0.0, (self.total - self.n) / rate)
        self.printed = True
        if self.as_json:
            record = {"event": event, "task": self.desc, "done": _number(self.n), "total": _number(self.total),
                      "unit": self.unit, "rate": None if rate is None else round(rate, 3),
                      "eta_s": None if left is None else round(left, 1), "elapsed_s": round(elapsed, 3)}  # fmt: skip
            record.update({k: _plain(v) for k, v in self.postfix.items()})
            line = json.dumps(record, ensure_ascii=False)
        elif event == "end":
            line = f"{self.desc}: done, {_count(self.n)} {_plural(self.unit)} in {_duration(elapsed)}"
        else:
            of = f"/{_count(self.total)}" if self.total else ""
            pct = f" ({100 * self.n / self.total:.1f}%)" if self.total else ""
            speed = "" if rate is None else f", {_rate(rate)} {_plural(self.unit)}/s"
            eta = "" if left is None else f", ETA {_duration(left)}"
            extra = "".join(f", {k} {_plain(v)}" for k, v in self.postfix.items())
            line = f"{self.desc}: {_count(self.n)}{of} {_plural(self.unit)}{pct}{speed}{eta}{extra}"
        print(line, file=self.file, flush=True)


def _rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}" if rate >= 1 else f"{rate:.2g}"


def _plural(unit: str) -> str:
    return unit + "s" if unit.isalpha() else unit


def _count(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"


def _number(x: float | None) -> float | int | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return int(x) if float(x).is_integer() else round(float(x), 3)


def _plain(v: Any) -> Any:
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


def bar(
    total: float | None,
    desc: str,
    unit: str = "doc",
    *,
    enabled: bool = True,
    leave: bool = False,
    bar_format: str | None = None,
    file: IO[str] | None = None,
) -> _Off:
    """A progress reporter for ``total`` units (None: unknown), shown as :func:`mode` says, on
    ``file`` (default stderr); silent when not ``enabled`` or when progress is off."""
    if not enabled:
        return _Off()
    m = mode(file)
    if m == "off":
        return _Off()
    if m == "bar":
        return _Tqdm(total, desc, unit, leave, bar_format, file or sys.stderr)
    return _Records(total, desc, unit, m == "json", file or sys.stderr)
