"""Start-up cost (issue 28 item 4): `--version`, `-h` and a mistyped command import no library
code, and the command list `-h` prints without importing the commands matches their own help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from embedsearch.cli import COMMANDS, main

HEAVY = ("numpy", "sqlalchemy", "faiss", "torch", "sentence_transformers", "pandas", "scipy")


@pytest.mark.parametrize("args", [["--version"], ["-h"], ["serach", "news"], ["--progress", "-h"]])
def test_light_commands_import_no_library_code(args):
    cmd = [sys.executable, "-X", "importtime", "-m", "embedsearch", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in r.stderr.splitlines() if "import time:" in line}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    if args == ["--version"]:
        assert r.returncode == 0 and "embedsearch, version" in r.stdout
    if "-h" in args:
        assert r.returncode == 0 and "Commands:" in r.stdout and "search" in r.stdout
    if args == ["serach", "news"]:
        assert r.returncode == 2 and "No such command 'serach'" in r.stderr and "search" in r.stderr


def test_the_listed_help_is_each_commands_own():
    import click

    ctx = click.Context(main)
    for name, (_, _, _, listed) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name
        own = command.get_short_help_str(limit=1000)
        assert own.startswith(listed.removesuffix("...")), (name, own)
    assert sorted(main.list_commands(ctx)) == sorted(COMMANDS)
    # the index group gets its subcommands from the modules that add them
    assert {"add", "alter", "docs", "get"} <= set(main.get_command(ctx, "index").commands)
