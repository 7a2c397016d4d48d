"""Write constraints.txt: the exact versions of everything ``pip install -e '.[dev]'`` installed
here (the project's dependency closure with every extra, torch aside: it is installed first,
from PyTorch's CPU index or the configured one). Run it in an environment whose tests pass.

    python scripts/lock.py            # rewrites constraints.txt at the repository root
"""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("dev", "onnx", "ray", "postgres")
SKIP = {"torch", "embedsearch"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str = "embedsearch", extras: tuple[str, ...] = EXTRAS) -> dict[str, tuple[str, str]]:
    """normalised name -> (name, installed version) for ``root`` and everything it requires."""
    env = default_environment()
    seen: dict[str, tuple[str, str]] = {}
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # an optional dependency for another platform
        seen.setdefault(_norm(name), (dist.metadata["Name"], dist.version))
        for text in dist.requires or []:
            req = Requirement(text)
            applies = req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in ("", *wanted))
            if applies and (_norm(req.name) not in seen or req.extras):
                todo.append((req.name, tuple(req.extras)))
    return seen


def main() -> None:
    pins = [f"{n}=={v}" for key, (n, v) in sorted(closure().items()) if key not in SKIP and "+" not in v]
    header = "# written by scripts/lock.py: pip install -e '.[dev]' -c constraints.txt installs exactly these\n"
    (ROOT / "constraints.txt").write_text(header + "\n".join(pins) + "\n", encoding="utf-8")
    print(f"constraints.txt: {len(pins)} packages")


if __name__ == "__main__":
    main()
