"""``python -m embedsearch`` runs the CLI."""

from embedsearch.cli import main

main(prog_name="embedsearch")
