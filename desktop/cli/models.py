"""``llama-desk models ...``: the model manager on the command line.

The ``models`` command groups subcommands that live in their own modules: downloading,
listing and deleting (``cli_models_store``) and the memory fit (``cli_models_fit``).
"""

from __future__ import annotations

from desktop.cli import models_fit as cli_models_fit
from desktop.cli import models_store as cli_models_store


def add_parser(sub) -> None:
    parser = sub.add_parser("models", help="list, download, delete and size up models")
    models_sub = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)
    cli_models_store.add_subcommands(models_sub)
    cli_models_fit.add_subcommands(models_sub)
