"""Tokenizer calls that cannot end the app: a Rust panic becomes one line.

The tokenizers library is Rust; when it panics (a 50 MB prompt, a malformed tokenizer.json) the
panic arrives as ``pyo3_runtime.PanicException``, which derives from ``BaseException``, not
``Exception``: every ``except Exception`` in the engine, the server's engine thread and the
command line lets it through, and a traceback reaches the person (or the engine thread dies).
``tokenizer_call`` turns such a failure, inside its block, into ``TokenizerFailure`` (an
ordinary exception, one line); Ctrl-C, ``SystemExit`` and ``GeneratorExit`` pass unchanged.
Every tokenizer call of the engine runs inside one: loading, encoding, the chat template,
streaming detokenization.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)


class TokenizerFailure(RuntimeError):
    """The tokenizer library failed in a way it should not (a panic); the message is one line."""


def is_library_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is a library's panic: a ``BaseException`` that is neither an ordinary
    exception nor one of Python's control-flow exits."""
    return not isinstance(exc, (Exception, *_PASS_THROUGH))


def panic_line(exc: BaseException, doing: str) -> str:
    """One line saying the tokenizer failed while ``doing``, with the library's reason."""
    from models.inference.model_loading import one_line  # model_loading guards with this module

    return f"The model's tokenizer failed while {doing} ({one_line(exc, 200)})."


@contextlib.contextmanager
def tokenizer_call(doing: str) -> Iterator[None]:
    """Run the block; a library panic in it is raised as ``TokenizerFailure``."""
    try:
        yield
    except BaseException as exc:
        if not is_library_panic(exc):
            raise
        raise TokenizerFailure(panic_line(exc, doing)) from None
