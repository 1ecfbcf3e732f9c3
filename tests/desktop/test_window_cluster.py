"""The window across a cluster (``llama-desk --ranks 2``): it answers a question with an image
token for token as one machine does.

This process becomes rank 0 of a 2-rank ring over 127.0.0.1 (a process joins one MLX ring, so no
other in-process test may start a cluster; the pipeline tests run theirs in subprocesses)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from desktop.app import _factory_for
from models.distributed.hosts import local_hosts
from tests.support.window_helpers import make_window

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LOAD_TIMEOUT = 180_000  # the second rank imports MLX in its own process
ANSWER_TIMEOUT = 120_000


def _answer(qtbot, window, model, picture) -> object:
    with qtbot.waitSignal(window.model_ready, timeout=LOAD_TIMEOUT):
        window.load_model(model)
    window.composer.add_files([str(picture)])
    qtbot.waitUntil(
        lambda: len(window.composer.images()) == 1 and not window.composer.loader.pending, timeout=10_000
    )
    qtbot.keyClicks(window.composer.edit, "What is in this picture?")
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    return blocker.args[0]


def test_the_window_on_two_ranks_answers_as_one_machine(qtbot, tmp_path, checkpoints, png_file):
    picture = png_file()
    one = make_window(qtbot, tmp_path / "one", max_tokens=8)
    alone = _answer(qtbot, one, checkpoints["4bit"], picture)
    one.close()

    two = make_window(qtbot, tmp_path / "two", max_tokens=8, engine_factory=_factory_for(local_hosts(2)))
    across = _answer(qtbot, two, checkpoints["4bit"], picture)
    engine = two.worker.engine
    assert engine.ranks == 2 and engine.split == ((0, 2), (2, 4))
    assert across.error is None and across.finish_reason == alone.finish_reason == "length"
    assert list(across.token_ids) == list(alone.token_ids) and len(across.token_ids) == 8
    assert two.transcript_model.entry(1).text == one.transcript_model.entry(1).text
    # Across a cluster the pipeline answers one request at a time, and the API says so.
    from desktop.controllers.server_controller import ONE_AT_A_TIME

    assert not engine.batched and two.worker.host.parallel > 1
    notes = []
    two.server_controller.note.connect(notes.append)
    assert two.server_controller.start(port=0)
    assert notes == [ONE_AT_A_TIME]
    two.server_controller.stop()
    processes = list(engine.pipeline.cluster.processes.values())
    two.close()  # unloading the model ends the other rank
    qtbot.waitUntil(lambda: all(p.poll() is not None for p in processes), timeout=30_000)
    assert [p.returncode for p in processes] == [0]
