"""The libraries a model load needs (mlx, mlx-lm, mlx-vlm, transformers), imported once, off
the UI thread and without Python's full garbage collections.

They take seconds to import, so the window imports them on a background thread as soon as it
is shown (``desktop.app.show_window``), and a load imports them here too (waiting for that
thread if it is still at it). The UI thread keeps ticking while another thread imports, since
pure-Python import code hands the GIL over every few milliseconds. What did not was Python's
automatic full collection, which the import's millions of allocations trigger: it walks every
object alive, holding the GIL throughout (75–140 ms measured during this import, seen by the
window as one stall). So automatic collection pauses for the import, and what the import made
(modules, classes, functions: alive as long as the app) is frozen afterwards, as
``desktop.app.freeze_startup_objects`` freezes the start-up objects, so later full collections
(a model unload's) do not walk it either. A few UI objects made meanwhile are frozen with it;
model objects never are, since models load after.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_imported = False


def import_loading_stack() -> None:
    """Import what ``models.inference.model_loading`` needs, once (thread-safe: a second
    caller waits for the first). An import error propagates and the next call tries again."""
    global _imported
    with _lock:
        if _imported:
            return
        collecting = gc.isenabled()
        gc.disable()
        try:
            import mlx.core  # noqa: F401
            import mlx.nn  # noqa: F401
            import mlx_lm.tokenizer_utils  # noqa: F401
            import mlx_vlm.models.llama4  # noqa: F401
            import mlx_vlm.utils  # noqa: F401
            import transformers  # noqa: F401
        finally:
            gc.freeze()
            if collecting:
                gc.enable()
        _imported = True
