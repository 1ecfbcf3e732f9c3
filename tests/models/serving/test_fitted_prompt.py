"""An API request's PDFs fitted to the context: page images go as text, one at a time, only
while the prompt is too long (not when the template refuses it), on every engine the host runs
(batched, or one at a time as a cluster's)."""

import pytest

from models.documents.chat_documents import read_document
from models.inference.engine import PromptError
from models.inference.preprocess import ProcessorConfig
from models.inference.prompt import ChatMessage
from models.serving.jobs import EventKind, Job, fitted_prompt, run_job
from tests.support.pdf_files import text_pdf
from tests.support.scripted_engine import ScriptedEngine, step

SMALL = ProcessorConfig(tile=56, max_patches=2)


def question() -> ChatMessage:
    document = read_document(text_pdf(["one", "two", "three"]), "three.pdf", processor=SMALL)
    return ChatMessage("user", "Sum up.", documents=(document,))


class TightEngine(ScriptedEngine):
    """Too long while more than ``fits`` page images are in; ``refuse``: the template says no."""

    def __init__(self, fits: int, refuse: bool = False):
        super().__init__([step("ok", "stop")])
        self.fits, self.refuse, self.tried = fits, refuse, []

    def prepare(self, messages, settings, continue_final=False):
        images = sum(m.page_images for m in messages)
        self.tried.append(images)
        if self.refuse:
            raise PromptError("Could not build the prompt: the template refused it")
        if images > self.fits:
            raise PromptError("The conversation is too long", prompt_ids=[1] * 100)
        return super().prepare(messages, settings, continue_final)


def job(fit_pages: bool) -> Job:
    events = []
    made = Job([question()], None, events.append, fit_pages=fit_pages)
    made.events = events
    return made


def test_page_images_go_as_text_one_at_a_time_until_it_fits():
    engine, answered = TightEngine(fits=1), job(fit_pages=True)
    fitted_prompt(engine, answered)
    assert engine.tried == [3, 2, 1]
    (message,) = answered.messages
    assert message.documents[0].image_pages == (1,) and message.documents[0].text_pages == (2, 3)


def test_without_fit_pages_or_for_a_refused_template_nothing_is_demoted():
    engine = TightEngine(fits=1)
    with pytest.raises(PromptError):
        fitted_prompt(engine, job(fit_pages=False))
    assert engine.tried == [3]
    refusing = TightEngine(fits=9, refuse=True)
    with pytest.raises(PromptError, match="template"):
        fitted_prompt(refusing, job(fit_pages=True))
    assert refusing.tried == [3]


def test_an_engine_that_answers_one_at_a_time_fits_too():
    engine, answered = TightEngine(fits=0), job(fit_pages=True)
    run_job(engine, answered)  # what the host runs for a cluster's pipeline engine
    kinds = [event.kind for event in answered.events]
    assert EventKind.REJECTED not in kinds and engine.tried == [3, 2, 1, 0]
