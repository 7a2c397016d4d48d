"""The ``embedsearch`` command: a click group; each command group lives in its own module.

Commands are thin: they parse options, call a library function and print. Domain errors
become one-line messages (exit 1, or 2 for usage errors); no traceback reaches the user.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click

from embedsearch import __version__
from embedsearch.config import Settings
from embedsearch.errors import EmbedsearchError, insufficient_storage


@dataclass
class AppContext:
    """What every command gets through ``ctx.obj``: settings and a lazily opened store."""

    settings: Settings
    _store: Any = field(default=None, repr=False)
    ray_address: str | None = "auto"  # the Ray cluster sharded collections are searched on (--ray)

    @property
    def store(self):
        if self._store is None:
            from embedsearch.store import Store

            self._check_data_exists()
            from embedsearch.cluster.shards import ShardSearchers

            self._store = Store(self.settings, searchers=ShardSearchers(self.ray_address))
        return self._store

    def db_display(self) -> str:
        """The metadata store's URL with its password (if any) shown as ***."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.settings.db_url).render_as_string(hide_password=True)
        except Exception:  # not a URL SQLAlchemy parses: say nothing of it but its scheme
            return self.settings.db_url.split("://", 1)[0] + "://..."

    def where(self) -> str:
        """Where the data lives, in absolute terms: the data directory and the metadata store."""
        return f"data: {self.settings.data_dir} (metadata: {self.db_display()})"

    def command(self, *args: str) -> str:
        """An embedsearch command line that finds this data from any directory (the data
        directory, and the database when it is not the default one; a password shows as ***)."""
        import shlex

        from embedsearch.config import DB_FILENAME

        words = ["embedsearch", "--data-dir", str(self.settings.data_dir)]
        if self.settings.db_url != f"sqlite:///{self.settings.data_dir / DB_FILENAME}":
            words += ["--db", self.db_display()]
        return " ".join(shlex.quote(w) for w in [*words, *args])

    def has_data(self) -> bool:
        """False when the metadata store is a SQLite file that does not exist yet."""
        url = self.settings.db_url
        if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
            return True
        from pathlib import Path

        return Path(url[len("sqlite:///") :]).exists()

    def _check_data_exists(self) -> None:
        """Only commands that create collections may create the database (and the data
        directory): a read-only command on a mistyped --data-dir must not leave one behind."""
        if self.has_data():
            return
        ctx = click.get_current_context(silent=True)
        path = ctx.command_path.split(" ", 1)[-1] if ctx is not None else ""
        if path in CREATING_COMMANDS:
            return
        raise click.ClickException(
            f"no embedsearch data in {self.settings.data_dir} (no {self.settings.db_url.rsplit('/', 1)[-1]}): "
            "check --data-dir / EMBEDSEARCH_HOME, or create a collection with `embedsearch index create`"
        )


# commands that may create the metadata database where there is none yet
CREATING_COMMANDS = {"index create", "index restore", "index import", "demo", "serve", "compare"}


#: the top-level commands: name -> (module, attribute, modules that add to it, one-line help).
#: They are imported when run, so `--version`, `-h` and a mistyped command import no library
#: code (numpy, SQLAlchemy, FAISS, torch); tests/test_cli_startup.py checks each help line
#: against the command's own.
COMMANDS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "analogy": ("embedsearch.cli.words", "analogy", (), 'Words D with A - B + C ~ D: "king man woman" asks king - man...'),
    "compare": ("embedsearch.cli.compare", "compare", (), "Compare MODELS (built-in names or model directories;..."),
    "demo": ("embedsearch.cli.demo", "demo", (), "Index the Lee news corpus (350 stories, bundled with gensim)..."),
    "evaluate": ("embedsearch.cli.evaluate", "evaluate", (), "Word benchmarks and Lee document similarity for MODEL (a..."),
    "index": ("embedsearch.cli.index", "index",
              ("embedsearch.cli.documents", "embedsearch.cli.index_fields", "embedsearch.cli.snapshots"),
              "Create and maintain collections (FAISS vectors + SQL metadata)."),  # fmt: skip
    "models": ("embedsearch.cli.models", "models", (), "List, inspect, import and export models."),
    "search": ("embedsearch.cli.search", "search", (), "Search collection NAME for QUERY."),
    "serve": ("embedsearch.cli.serve", "serve", (), "Serve the collections of the data directory over HTTP, with a..."),
    "similar": ("embedsearch.cli.words", "similar", (), "The K words nearest to WORD in MODEL (cosine)."),
    "train": ("embedsearch.cli.train", "train", (), "Train word embeddings on your own text."),
}


class EmbedsearchGroup(click.Group):
    """Turns library exceptions into click errors for the whole command tree; loads each
    top-level command's module when the command is used (:data:`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            import importlib

            module, attribute, extras, _ = COMMANDS[name]
            for extra in extras:  # modules that add subcommands to the group
                importlib.import_module(extra)
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from :data:`COMMANDS`, without importing the commands."""
        rows = [(name, COMMANDS[name][3]) for name in sorted(COMMANDS)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EmbedsearchError as exc:
            if exc.usage:
                raise click.UsageError(str(exc)) from None
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            full = insufficient_storage(exc)
            if full is not None:
                raise click.ClickException(str(full)) from None
            raise click.ClickException(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None
        except Exception as exc:
            if not type(exc).__module__.startswith("sqlalchemy") or not isinstance(exc, _sqlalchemy_errors()):
                raise  # click's own errors (usage, abort) among them: no SQLAlchemy import for those
            full = insufficient_storage(exc)
            if full is not None:
                raise click.ClickException(str(full)) from None
            first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise click.ClickException(f"database error: {first}") from None


def _sqlalchemy_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    return (SQLAlchemyError, ArgumentError)


def pass_app(f):
    return click.pass_obj(f)


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@click.group(cls=EmbedsearchGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--data-dir",
    envvar="EMBEDSEARCH_HOME",
    type=click.Path(file_okay=False),
    default=None,
    help="Where collections live (default ./indexes; env EMBEDSEARCH_HOME).",
)
@click.option(
    "--db",
    "db_url",
    envvar="EMBEDSEARCH_DB",
    default=None,
    help="SQLAlchemy URL of the metadata store (default: sqlite file embedsearch.db in the data dir; env EMBEDSEARCH_DB).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show progress of long runs on stderr: a bar on a terminal, else a line every 10 s "
    "(default: on, except beside --json output).",
)
@click.option(
    "--json-progress", is_flag=True, help="Progress as JSON lines on stderr (start, progress, end events), for programs."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr (warnings and errors still show).")
@click.version_option(__version__, "-V", "--version", prog_name="embedsearch")
@click.pass_context
def main(
    ctx: click.Context, data_dir: str | None, db_url: str | None, progress: bool | None, json_progress: bool, quiet: bool
) -> None:
    """Train, index, search and compare text embeddings.

    \b
    Quick start:
      embedsearch demo                                  # index a bundled news corpus, run queries
      embedsearch index create news --model minilm
      embedsearch index add news docs/ --format txt
      embedsearch search news "central bank raises interest rates" -k 5
      embedsearch search news "bushfires" --where '{"source": "lee"}' --json
    """
    from embedsearch import progress as progress_settings
    from embedsearch.config import EXPORTS_DIRNAME, add_legacy_export_dir

    if json_progress and (quiet or progress is False):
        raise click.UsageError("--json-progress cannot be combined with --quiet or --no-progress")
    if json_progress:
        progress_settings.configure("json", explicit=True)
    elif quiet or progress is False:
        progress_settings.configure("off")
    else:
        progress_settings.configure("bar" if progress else "auto", explicit=bool(progress))

    ctx.obj = AppContext(Settings.from_env(data_dir, db_url))
    # exported ONNX models live in the user's cache; one an earlier version left here is reused
    add_legacy_export_dir(ctx.obj.settings.data_dir / EXPORTS_DIRNAME)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
