"""The libraries a model load needs are imported off the UI thread without a full collection.

Run in a fresh interpreter: in the test process they are already imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import gc, json, sys, threading
    import numpy, PIL.Image  # imported by the window before any model loads
    gc.freeze()  # as desktop.app.freeze_startup_objects
    full = []
    gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and full.append(1))
    frozen = gc.get_freeze_count()
    from models.inference.loading_imports import import_loading_stack

    thread = threading.Thread(target=import_loading_stack)
    thread.start()
    thread.join()
    import_loading_stack()  # a second call imports nothing and freezes nothing more
    print(json.dumps({
        "full_collections": len(full),
        "gc_enabled": gc.isenabled(),
        "frozen_more": gc.get_freeze_count() - frozen,
        "imported": [m for m in ("mlx.core", "mlx_lm.tokenizer_utils", "mlx_vlm.utils", "transformers")
                     if m in sys.modules],
    }))
    """
)


def test_the_loading_stack_imports_with_no_full_collection_and_is_frozen_after():
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout.splitlines()[-1])
    assert seen["imported"] == ["mlx.core", "mlx_lm.tokenizer_utils", "mlx_vlm.utils", "transformers"]
    # A full collection walks every object alive, holding the GIL (the UI thread's) throughout.
    assert seen["full_collections"] == 0
    assert seen["gc_enabled"]
    assert seen["frozen_more"] > 10_000  # the modules' objects: later collections skip them
