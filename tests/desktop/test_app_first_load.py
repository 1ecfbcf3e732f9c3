"""Start-up imports the model-loading libraries on a background thread, so the first model
load imports nothing on the UI thread (in a fresh interpreter: the test process has them)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys, threading, time
    from pathlib import Path

    HEAVY = ("mlx_lm", "mlx_vlm", "transformers", "tokenizers")
    on_main = set()

    class Watch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in HEAVY and threading.current_thread() is threading.main_thread():
                on_main.add(name)
            return None

    sys.meta_path.insert(0, Watch())
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication
    from desktop.app import show_window
    from desktop.main_window import MainWindow

    folder, checkpoint = Path(sys.argv[1]), sys.argv[2]
    app = QApplication([])
    window = MainWindow(settings=QSettings(str(folder / "s.ini"), QSettings.Format.IniFormat),
                        data_folder=folder / "data")

    def wait(done, what):
        end = time.monotonic() + 240  # only guards a hang
        while not done():
            assert time.monotonic() < end, what
            app.processEvents()
            time.sleep(0.005)

    idle = show_window(window)
    assert idle is not None, "start-up imports nothing in the background"
    wait(idle.is_set, "the start-up imports did not finish")
    imported_at_start = [m for m in HEAVY if m in sys.modules]
    ready = []
    window.model_ready.connect(lambda *args: ready.append(args))
    window.load_model(checkpoint)
    wait(lambda: ready, "the model did not load")
    print(json.dumps({"at_start": imported_at_start, "on_main": sorted(on_main)}))
    sys.stdout.flush()
    import os
    os._exit(0)
    """
)


def test_start_up_imports_the_loading_stack_off_the_ui_thread(checkpoints, tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(checkpoints["4bit"])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout.splitlines()[-1])
    assert seen["at_start"] == ["mlx_lm", "mlx_vlm", "transformers", "tokenizers"]
    assert seen["on_main"] == []
