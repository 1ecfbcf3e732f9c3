"""The ``llama-desk`` command: opens the window, or runs a subcommand on the same engine.

``llama-desk [--model PATH]`` starts the app. Subcommands live in their own modules, each
with ``add_parser(subparsers)`` that registers a parser whose ``run`` default handles it.
Bad input ends with a one-line message on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from desktop.cli import ask as cli_ask
from desktop.cli import chats as cli_chats
from desktop.cli import models as cli_models
from desktop.cli import serve as cli_serve
from desktop.cli.command_error import CommandError

_SUBCOMMANDS = [cli_ask, cli_chats, cli_models, cli_serve]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llama-desk",
        description="Offline chat with multimodal Llama 4 through MLX.",
    )
    parser.add_argument("--model", help="checkpoint folder (or downloaded repo id) to open")
    parser.add_argument("--hosts", metavar="HOSTS.json", help="run models across a cluster of Macs")
    parser.add_argument("--ranks", type=int, metavar="N", help="run models across N ranks on this machine")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def quiet_libraries() -> None:
    """Keep transformers' import-time advice (no PyTorch, rope checks) off the terminal."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            from desktop.app import run_app

            return run_app(model=args.model, hosts=args.hosts, ranks=args.ranks)
        return args.run(args) or 0
    except CommandError as exc:
        print(f"llama-desk: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("llama-desk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
