"""The answer flow without a window: ``AnswerController`` with a real session, store and worker
(the fake engine), and stand-ins for the model controller and the memory check.

The worker lives on the test's thread unless a test moves it to its own, so a request runs as it
is emitted and each answer has ended when ``ask`` returns."""

from __future__ import annotations

import threading
from dataclasses import replace
from types import SimpleNamespace

import pytest

from desktop import notices
from desktop.controllers.answer_controller import AnswerController, Draft
from desktop.controllers.conversation_controller import ConversationController
from desktop.workers.inference_worker import InferenceWorker, WorkerThread
from models.chats.answer_run import AnswerEnded, EndReason
from models.chats.conversation_session import ConversationSession
from models.chats.store import ConversationStore
from models.inference.engine import GenerationSettings
from tests.support.fake_engine import FakeScript

TIMEOUT = 60_000
GREEDY = GenerationSettings(max_tokens=6, temperature=0.0)
PREFILL_STEP = 64


class StubTurnMemory:
    """``TurnMemory``'s surface: each turn fits (with a chosen prefill step) unless ``too_big``."""

    def __init__(self):
        self.too_big: str | None = None
        self.checked: list[tuple[str, int, int]] = []  # (text, images, turns so far)
        self.peaks: list = []

    def turn_settings(self, settings, new_text, images, entries, documents=()):
        self.checked.append((new_text, len(images), len(entries)))
        if self.too_big is not None:
            return settings, self.too_big
        return replace(settings, prefill_step_size=PREFILL_STEP), None

    def fit_documents(self, settings, new_text, images, documents, entries):
        return tuple(documents), None

    def record_peak(self, step) -> None:
        self.peaks.append(step)


class Flow:
    """A controller and what it talks to, with every signal it emitted recorded in order."""

    def __init__(self, tmp_path, engines, checkpoint):
        self.store = ConversationStore(tmp_path / "data")
        self.conversations = ConversationController(self.store)
        self.session = ConversationSession()
        self.worker = InferenceWorker(engines, data_folder=self.store.folder)
        self.worker.request_load.emit(str(checkpoint), threading.Event())
        self.models = SimpleNamespace(name="tiny", loading=False)
        self.memory = StubTurnMemory()
        self.offered: list[str] = []
        self.accept_fresh_start = False
        self.controller = AnswerController(
            self.session,
            self.worker,
            self.models,
            self.conversations,
            self.memory,
            generation_settings=GREEDY,
            confirm_fresh_start=self._confirm,
        )
        self.signals: list[tuple[str, object]] = []
        for name in (
            "question_taken",
            "answer_started",
            "answer_ended",
            "draft_returned",
            "current_changed",
            "storage_failed",
            "notice",
            "answer_finished",
        ):
            getattr(self.controller, name).connect(lambda *args, name=name: self.signals.append((name, args)))

    def _confirm(self, reason: str) -> bool:
        self.offered.append(reason)
        return self.accept_fresh_start

    def names(self) -> list[str]:
        return [name for name, _args in self.signals]

    def notices(self) -> list[str]:
        return [args[0] for name, args in self.signals if name == "notice"]

    def notice_sources(self) -> list[str]:
        return [args[1] for name, args in self.signals if name == "notice"]

    def texts(self) -> list[str]:
        return [turn.text for turn in self.session.turns]

    def close(self) -> None:
        self.worker._on_thread_finished()  # the model and the worker's store connection go
        self.store.close()


@pytest.fixture
def flow(tmp_path, fake_engines, checkpoints):
    made = Flow(tmp_path, fake_engines, checkpoints["4bit"])
    yield made
    made.close()


def test_a_question_is_answered_stored_and_reported_in_order(flow, fake_engines):
    draft = Draft("Tell me about the sea.")
    assert flow.controller.ask(draft)
    assert flow.names() == [
        "question_taken",
        "answer_started",
        "current_changed",
        "answer_ended",
        "answer_finished",
    ]
    assert flow.signals[0][1] == (draft,)
    ended = flow.signals[3][1][0]
    assert isinstance(ended, AnswerEnded) and ended.reason is EndReason.TOKEN_LIMIT
    assert flow.signals[-1][1] == (ended.final,)
    conversation_id = flow.conversations.current_id
    assert conversation_id is not None and flow.signals[2][1] == (conversation_id,)
    assert flow.texts()[0] == "Tell me about the sea." and flow.texts()[1]
    assert [m.role for m in flow.store.messages(conversation_id)] == ["user", "assistant"]
    assert fake_engines.last.calls[-1].settings.prefill_step_size == PREFILL_STEP
    assert flow.memory.checked == [("Tell me about the sea.", 0, 0)]
    assert flow.memory.peaks == [ended.final]
    assert not flow.controller.generating and not flow.controller.busy


def test_nothing_is_sent_without_a_model_or_while_images_are_read(flow, fake_engines):
    flow.models.name = None
    assert not flow.controller.ask(Draft("Hello"))
    flow.models.loading = True
    assert not flow.controller.ask(Draft("Hello"))
    flow.models.name, flow.models.loading = "tiny", False
    assert not flow.controller.ask(Draft("Hello", images_pending=1))
    assert not flow.controller.ask(Draft("   "))  # nothing to ask
    assert flow.names() == ["notice"] * 3
    assert flow.notices()[0].startswith("No model is loaded")
    assert flow.notices()[1] == "Still loading the model; your question is kept."
    assert flow.notices()[2] == "An image is still being read; try again in a moment."
    assert flow.notice_sources() == [notices.SEND] * 3  # one notice: the latest refusal
    assert fake_engines.last.calls == [] and len(flow.session) == 0


def test_a_turn_too_big_is_refused_unless_a_fresh_start_is_accepted(flow):
    flow.controller.ask(Draft("First"))
    first_id = flow.conversations.current_id
    flow.signals.clear()
    flow.memory.too_big = "This conversation has outgrown memory."

    assert not flow.controller.ask(Draft("Second"))
    assert flow.offered == ["This conversation has outgrown memory."]
    assert flow.notices() == ["This conversation has outgrown memory."]
    assert flow.conversations.current_id == first_id and len(flow.session) == 2

    flow.signals.clear()
    flow.accept_fresh_start = True
    assert not flow.controller.ask(Draft("Second"))  # the draft stays; the next Send asks it
    new_id = flow.conversations.current_id
    assert new_id not in (None, first_id)
    assert ("current_changed", (new_id,)) in flow.signals
    assert flow.notices()[-1] == "Continued in a new conversation with the last exchange; press Send."
    assert flow.texts()[0] == "First" and len(flow.session) == 2
    assert [m.role for m in flow.store.messages(new_id)] == ["user", "assistant"]


def test_sending_an_edited_question_replaces_it_and_what_follows(flow):
    flow.controller.ask(Draft("One"))
    flow.controller.ask(Draft("Two"))
    assert flow.texts()[0::2] == ["One", "Two"]
    flow.controller.editing_row = 0
    flow.controller.ask(Draft("Uno"))
    assert flow.controller.editing_row is None
    assert len(flow.session) == 2 and flow.texts()[0] == "Uno"
    stored = flow.store.messages(flow.conversations.current_id)
    assert [m.text for m in stored][0] == "Uno" and len(stored) == 2


def test_regenerate_and_continue_only_the_last_answer(flow, fake_engines):
    flow.controller.ask(Draft("Tell me about the sea."))
    engine = fake_engines.last
    calls = len(engine.calls)
    flow.controller.regenerate(0)  # a question: not an answer
    flow.controller.continue_answer(0)
    assert len(engine.calls) == calls

    first_answer = flow.texts()[1]
    flow.controller.generation_settings = GenerationSettings(max_tokens=6, temperature=1.0, seed=11)
    flow.controller.regenerate(1)
    assert len(flow.session) == 2 and flow.texts()[1] != first_answer
    assert not engine.calls[-1].continue_final

    regenerated = flow.texts()[1]
    flow.controller.continue_answer(1)
    assert engine.calls[-1].continue_final
    assert len(flow.session) == 2 and flow.texts()[1].startswith(regenerated)
    assert len(flow.texts()[1]) > len(regenerated)
    assert len(flow.memory.peaks) == 3


def test_an_answer_failing_with_nothing_gives_the_draft_back(flow, fake_engines):
    fake_engines.last.fail_next_answer("The model broke.")
    draft = Draft("Hello there")
    flow.controller.ask(draft)
    assert ("draft_returned", (draft,)) in flow.signals
    assert "The model broke." in flow.notices()[-1] and flow.notice_sources()[-1] == notices.ANSWER
    assert flow.names()[-1] == "answer_finished"
    assert len(flow.session) == 0 and flow.memory.peaks == []


def test_when_idle_runs_now_or_after_the_stopped_answer(flow, fake_engines, qtbot):
    ran: list[str] = []
    assert flow.controller.when_idle(lambda: ran.append("now"))
    assert ran == ["now"]

    thread = WorkerThread(flow.worker)
    try:
        fake_engines.last.script = FakeScript(hold_after=1)
        flow.controller.ask(Draft("Tell me a long story."))
        assert fake_engines.last.holding.wait(TIMEOUT / 1000)
        assert flow.controller.generating and flow.controller.busy
        flow.controller.after_answer(lambda: ran.append("after"))
        with qtbot.waitSignal(flow.controller.answer_finished, timeout=TIMEOUT) as blocker:
            assert not flow.controller.when_idle(lambda: ran.append("stopped"))
        assert ran == ["now", "after", "stopped"]
        assert blocker.args[0].finish_reason == "cancelled"
        assert not flow.controller.generating and not flow.controller.busy
    finally:
        assert thread.stop(timeout_ms=TIMEOUT)


def test_events_after_shut_down_are_dropped(flow):
    flow.controller.shut_down()
    flow.controller.ask(Draft("Anyone there?"))
    assert "answer_finished" not in flow.names()
