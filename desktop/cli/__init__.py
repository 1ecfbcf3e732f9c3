"""The ``llama-desk`` command line: no Qt is imported here except to open the window."""
