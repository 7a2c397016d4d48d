"""Files a user asked for, written whole: a temp file beside the target, then a rename.

``tempfile.mkstemp`` creates its file with mode 0600 whatever the umask, which is right for a
secret and wrong for an exported model or a report: :func:`atomic_temp` gives the temp file the
mode ``open()`` would have given the target (0666 less the umask) before it is renamed.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

_umask_lock = threading.Lock()


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a directory's entries (after a create or a rename), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc), else by setting it back."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_temp(target: Path) -> tuple[int, str]:
    """(fd, path) of a new temp file beside ``target``, with ``target``'s usual permissions."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def atomic_temp_dir(target: Path) -> Path:
    """A new temp directory beside ``target``, with ``target``'s usual permissions (mkdtemp: 0700)."""
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp
