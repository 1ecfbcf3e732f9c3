"""Callbacks that do not keep a Qt object alive, and do nothing once it is gone.

A lambda or closure that captures a window and is connected to a signal of an object that
outlives it (the model library, a thread-pool task) would call into a deleted C++ object.
``weak_callback(obj.method)`` holds the method weakly and checks that the object still exists.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject


def alive(obj: object) -> bool:
    """False once ``obj`` is None or a deleted Qt object."""
    if obj is None:
        return False
    return not isinstance(obj, QObject) or shiboken6.isValid(obj)


def weak_callback(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` (bound) as a callable that does not keep its object alive and returns None
    without calling it once the object is gone."""
    ref = weakref.WeakMethod(method)  # type: ignore[arg-type]

    def call(*args: Any) -> Any:
        bound = ref()
        if bound is None or not alive(bound.__self__):
            return None
        return bound(*args)

    return call
