"""The worker keeps each conversation's KV cache on disk: after a restart, the conversation's
next answer prefills only its new tokens."""

import threading

from desktop.workers.inference_worker import AnswerJob, InferenceWorker
from models.chats.store import ConversationStore
from models.inference.engine import GenerationSettings
from models.inference.prompt import ChatMessage
from models.inference.prompt_cache_keeper import FOLDER_NAME, PromptCacheKeeper

GREEDY = GenerationSettings(max_tokens=6, temperature=0.0)


def answer(worker, job):
    results = []
    worker.finished.connect(results.append)
    worker.request_generate.emit(job)  # same thread: runs now
    worker.finished.disconnect(results.append)
    return results[-1]


def loaded_worker(folder, checkpoint):
    worker = InferenceWorker(data_folder=folder)
    worker.request_load.emit(str(checkpoint), threading.Event())
    assert worker.engine is not None
    return worker


def test_a_restarted_worker_continues_from_the_saved_cache(checkpoints, tmp_path):
    store = ConversationStore(tmp_path)
    conversation = store.create()
    question = [ChatMessage("user", "Tell me about the sea.")]
    worker = loaded_worker(tmp_path, checkpoints["4bit"])
    first = answer(
        worker, AnswerJob(question, GREEDY, conversation_id=conversation.id, question=(question[0].text, ()))
    )
    assert first.finish_reason in ("stop", "length")
    worker.host.keeper.wait()
    assert [f.conversation_id for f in PromptCacheKeeper(tmp_path / FOLDER_NAME).files()] == [
        str(conversation.id)
    ]
    worker._release()

    restarted = loaded_worker(tmp_path, checkpoints["4bit"])
    restarted.request_open_conversation.emit(conversation.id, GREEDY)
    follow_up = question + [
        ChatMessage("assistant", "", token_ids=first.token_ids),
        ChatMessage("user", "And the sky?"),
    ]
    second = answer(
        restarted,
        AnswerJob(follow_up, GREEDY, conversation_id=conversation.id, question=("And the sky?", ())),
    )
    assert second.finish_reason in ("stop", "length")
    assert second.cached_tokens == len(first.prompt_token_ids) + len(first.token_ids)
    store.close()
