"""Subcommands of ``llama-desk models`` (being written; registers none yet)."""


def add_subcommands(models_sub) -> None:
    return None
