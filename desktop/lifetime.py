"""Whether a Qt object is still there: ``alive(obj)`` is False once it is None or deleted.

A result that arrives for an object that is gone (a window closed before its thread-pool task
ended) must not call into the deleted C++ object; ``desktop.workers.background_task`` checks
``alive`` before it delivers.
"""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QObject


def alive(obj: object) -> bool:
    """False once ``obj`` is None or a deleted Qt object."""
    if obj is None:
        return False
    return not isinstance(obj, QObject) or shiboken6.isValid(obj)
