"""What the command line reads of the window's settings: the model it opened last and
Settings ▸ Context length (``desktop.preferences``: ``settings.ini`` in the data folder, or the
platform's settings store). Never imports Qt's widgets."""

from __future__ import annotations

from desktop.cli.command_error import CommandError


def last_model() -> str:
    """The model the window opened last (what ``serve`` and ``ask`` use without ``--model``)."""
    from desktop.preferences import open_settings

    value = open_settings().value("last_model", None, type=str)
    if not value:
        raise CommandError("no model given and none opened before; use --model PATH|REPO.", 2)
    return str(value)


def settings_context_length() -> int:
    """Settings ▸ Context length, as the window keeps it (the app's default when unset or bad)."""
    from desktop.preferences import load_defaults, open_settings
    from models.chats.conversation_records import MAX_CONTEXT_LENGTH
    from models.inference.answer_defaults import CONTEXT_LENGTH

    value = load_defaults(open_settings()).context_length
    return value if 2 <= value <= MAX_CONTEXT_LENGTH else CONTEXT_LENGTH


def settings_parallel() -> int:
    """Settings ▸ Parallel requests: how many answers the engine runs at once (4 when unset)."""
    from desktop.preferences import load_defaults, open_settings

    return load_defaults(open_settings()).parallel
