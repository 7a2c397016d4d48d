"""CPU time of light CLI commands (issue 28 item 4), this checkout against another, ABBA.

    git worktree add /tmp/before <commit>
    python benchmarks/bench_startup.py --before /tmp/before [--rounds 10]

Each command runs as a fresh ``python -m embedsearch`` process with ``PYTHONPATH`` set to the
checkout (and the working directory outside both, so neither shadows the other); its CPU time
(user + system, from the children's rusage) is what it cost before doing anything useful. Medians
of ``--rounds`` runs per checkout, alternating A B B A, and the ratio after/before.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {"--version": ["--version"], "-h": ["-h"], "mistyped command": ["serach", "x"], "index list": ["index", "list"]}


def cpu_of(checkout: Path, args: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout), "EMBEDSEARCH_HOME": str(cwd / "data")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "embedsearch", *args], env=env, cwd=cwd, capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    cwd = Path(tempfile.mkdtemp(prefix="startup-"))
    sides = {"before": args.before.resolve(), "after": REPO}
    print(f"load average {os.getloadavg()}")
    for label, cmd in COMMANDS.items():
        times = {side: [] for side in sides}
        for r in range(args.rounds):
            order = ["before", "after"] if r % 4 in (0, 3) else ["after", "before"]
            for side in order:
                times[side].append(cpu_of(sides[side], cmd, cwd))
        b, a = statistics.median(times["before"]), statistics.median(times["after"])
        print(f"{label:18} before {b:.3f} s  after {a:.3f} s  after/before {a / b:.2f}")


if __name__ == "__main__":
    main()
