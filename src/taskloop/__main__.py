"""``python -m taskloop`` runs the CLI."""

from taskloop.cli import main

main()
