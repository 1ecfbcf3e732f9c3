"""The window's API switch: the server answers on the window's own engine host, and a question
typed in the window while a request streams is answered at once, beside it."""

import threading
from dataclasses import replace

import openai
import pytest

from desktop.controllers.server_controller import ServerController
from desktop.workers.inference_worker import AnswerJob, InferenceWorker, WorkerThread
from models.inference.engine import GenerationSettings
from models.inference.prompt import ChatMessage

pytestmark = pytest.mark.slow


@pytest.fixture
def worker(qtbot, checkpoints):
    worker = InferenceWorker()
    thread = WorkerThread(worker)
    # Not qtbot.waitSignal: its timer would be stopped from the worker's thread (a Qt warning).
    worker.request_load.emit(str(checkpoints["4bit"]), threading.Event())
    qtbot.waitUntil(lambda: worker.engine is not None, timeout=60_000)
    yield worker
    thread.stop()


@pytest.fixture
def controller(worker, qtbot):
    controller = ServerController(worker)
    with qtbot.waitSignal(controller.running, timeout=10_000) as started:
        assert controller.start(port=0)
    assert started.args[0].startswith("http://127.0.0.1:")
    yield controller
    controller.stop()


def client_for(controller):
    return openai.OpenAI(base_url=controller.url, api_key="x", max_retries=0, timeout=120)


def test_the_server_answers_on_the_windows_model(controller):
    client = client_for(controller)
    assert [m.id for m in client.models.list().data] == ["tiny-llama4-4bit"]
    answer = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0
    )
    assert 1 <= answer.usage.completion_tokens <= 3


def test_requests_are_held_to_the_settings_context_length(controller):
    client = client_for(controller)
    assert client.models.list().data[0].context_length == 32768  # Settings' default, not 10M
    controller.set_context_length(16)  # Settings changed while serving: the next request uses it
    assert client.models.list().data[0].context_length == 16
    long_question = [{"role": "user", "content": "A question much longer than sixteen tokens, " * 3}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=long_question, max_tokens=3)
    assert info.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=10**12
        )
    assert info.value.body["param"] == "max_tokens"


def endless_stream(controller):
    """A streamed request that runs until it is stopped (greedy: the tiny model never says it is
    done; sampled, it may)."""
    return client_for(controller).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Go on"}],
        max_tokens=5000,
        temperature=0,
        stream=True,
    )


def test_the_window_answers_while_a_request_streams(controller, worker, qtbot):
    stream = endless_stream(controller)
    next(iter(stream))  # the request is running on the engine host
    running = []
    controller.job_running.connect(running.append)
    qtbot.waitUntil(lambda: controller.job_is_running, timeout=10_000)
    finished = []
    worker.finished.connect(finished.append)
    job = AnswerJob([ChatMessage("user", "Hello")], GenerationSettings(max_tokens=3, temperature=0))
    worker.request_generate.emit(job)
    qtbot.waitUntil(lambda: bool(finished), timeout=60_000)
    server_job = controller.app.state.jobs[-1]
    assert not server_job.done.is_set()  # the window did not wait for it, nor stop it
    assert finished[0].finish_reason in ("length", "stop") and finished[0].generation_tokens >= 1
    stream.close()  # the client goes away: its job ends within a token
    assert server_job.done.wait(60) and server_job.final.finish_reason == "cancelled"
    qtbot.waitUntil(lambda: not controller.job_is_running, timeout=10_000)
    assert running[-1] is False


def test_stop_in_the_window_ends_a_runaway_request(controller, worker, qtbot):
    stream = endless_stream(controller)
    next(iter(stream))
    server_job = controller.app.state.jobs[-1]
    worker.cancel()  # the window's Stop, with no answer of its own running
    assert server_job.done.wait(60) and server_job.final.finish_reason == "cancelled"
    stream.close()


def test_a_request_answered_in_the_window_keeps_no_decoded_image(controller, monkeypatch):
    """Four 1.4 KB requests left 5.1 GB resident in the window: every Pillow image made to
    answer one is gone once its job ended (issue 23)."""
    import base64
    import gc

    from tests.conftest import image_bytes
    from tests.support.image_bombs import images_made

    picture = "data:image/png;base64," + base64.b64encode(image_bytes(280, 190, "PNG", (4, 5, 6))).decode()
    content = [{"type": "image_url", "image_url": {"url": picture}}, {"type": "text", "text": "What?"}]
    with images_made(monkeypatch) as made:
        client_for(controller).chat.completions.create(
            model="m", messages=[{"role": "user", "content": content}], max_tokens=2, temperature=0
        )
        job = controller.app.state.jobs[-1]
        assert job.done.wait(60)
    gc.collect()
    assert made, "the image was decoded to answer"
    assert [ref for ref in made if ref() is not None] == []
    assert job.messages == []


def test_stopping_cancels_requests_and_frees_the_port(controller, qtbot):
    url = controller.url
    with qtbot.waitSignal(controller.running, timeout=10_000) as stopped:
        controller.stop()
    assert stopped.args[0] == "" and controller.url == ""
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=5).models.list()


def test_a_port_in_use_is_reported(worker, qtbot):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        controller = ServerController(worker)
        with qtbot.waitSignal(controller.failed, timeout=10_000) as failed:
            assert not controller.start(port=taken.getsockname()[1])
    assert "did not start" in failed.args[0] and controller.url == ""


def test_the_window_menu_switch_starts_and_stops_the_server(qtbot, checkpoints, tmp_path):
    from PySide6.QtCore import QSettings

    from desktop.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    settings.setValue("defaults/context_length", 4096)  # Settings ▸ Context length
    win = MainWindow(settings=settings)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.model_ready, timeout=60_000):
        win.load_model(checkpoints["4bit"])
    win.server_controller.port = 0  # any free port
    action = win.serve_api_action
    assert action.isCheckable() and not action.isChecked()
    action.trigger()
    assert action.isChecked() and win.server_controller.url in action.text()
    client = client_for(win.server_controller)
    models = client.models.list().data
    assert [m.id for m in models] == ["tiny-llama4-4bit"] and models[0].context_length == 4096
    win.set_defaults(replace(win.defaults, context_length=2048))
    assert client.models.list().data[0].context_length == 2048
    action.trigger()
    assert not action.isChecked() and action.text() == "Serve API"
    win.close()


def test_an_engine_that_answers_one_at_a_time_says_so_when_serving(qtbot, checkpoints):
    """A pipeline across a cluster does not batch (the fake engine stands for one here)."""
    from desktop.controllers.server_controller import ONE_AT_A_TIME
    from tests.support.fake_engine import FakeEngine

    worker = InferenceWorker(engine_factory=FakeEngine.load)
    thread = WorkerThread(worker)
    worker.request_load.emit(str(checkpoints["4bit"]), threading.Event())
    qtbot.waitUntil(lambda: worker.engine is not None, timeout=60_000)
    controller = ServerController(worker)
    notes = []
    controller.note.connect(notes.append)
    try:
        assert controller.start(port=0)
        assert notes == [ONE_AT_A_TIME]
    finally:
        controller.stop()
        thread.stop()
