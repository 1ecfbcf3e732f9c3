"""The one exception the command line turns into a one-line message and an exit status."""


class CommandError(Exception):
    """A user-facing failure: printed as ``llama-desk: <message>``, exit ``status``."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status
