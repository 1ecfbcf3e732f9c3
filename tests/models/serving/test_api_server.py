"""The server driven by the official ``openai`` client, as a script or an editor would."""

import base64
import json
import os
import subprocess
import sys
import threading

import httpx
import openai
import pytest

from models.serving.binding import check_bind, is_loopback
from tests.conftest import image_bytes

pytestmark = pytest.mark.slow

GREEDY = {"model": "llama", "temperature": 0, "seed": 1}


def data_url(data: bytes, mime="image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def ask(client, text="What do you see?", **kwargs):
    return client.chat.completions.create(
        messages=[{"role": "user", "content": text}], **{**GREEDY, "max_tokens": 6, **kwargs}
    )


def test_models_lists_the_loaded_model(client, owner):
    assert [m.id for m in client.models.list().data] == [owner.model_name]


def test_plain_answer(client):
    answer = ask(client)
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("length", "stop")
    usage = answer.usage
    assert 1 <= usage.completion_tokens <= 6
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")


def test_streamed_answer_ends_with_usage_and_matches_the_plain_one(client):
    plain = ask(client, "Tell me a story.", max_tokens=8)
    chunks = list(ask(client, "Tell me a story.", max_tokens=8, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens
    assert reasons == [plain.choices[0].finish_reason]
    assert text == plain.choices[0].message.content


def test_two_images_make_the_same_prompt_as_ask_json(client, checkpoints, tmp_path):
    first, second = image_bytes(112, 56, "PNG"), image_bytes(60, 180, "JPEG", (0, 90, 200))
    (tmp_path / "a.png").write_bytes(first)
    (tmp_path / "b.jpg").write_bytes(second)
    answer = client.chat.completions.create(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": data_url(first)}},
                    {"type": "image_url", "image_url": {"url": data_url(second, "image/jpeg")}},
                    {"type": "text", "text": "What do you see?"},
                ],
            }
        ],
        max_tokens=2,
        **GREEDY,
    )
    cli = subprocess.run(
        [sys.executable, "-m", "desktop.cli", "ask", "--model", str(checkpoints["4bit"]), "--json"]
        + ["--max-tokens", "2", "--image", str(tmp_path / "a.png"), "--image", str(tmp_path / "b.jpg")]
        + ["What do you see?"],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)["prompt_token_ids"]
    # 3 + 9 tiles of 4 patches (see test_ask_cli), so the images are really in the prompt.
    assert answer.usage.prompt_tokens == len(expected) > 48


@pytest.mark.parametrize(
    "url, words",
    [
        (data_url(image_bytes(60, 60)[:80]), "damaged or truncated"),
        (data_url(b"hello, not an image"), "not an image"),
        ("https://example.com/cat.png", "offline"),
        ("file:///etc/hosts", "file paths"),
    ],
)
def test_bad_and_remote_images_are_400_with_the_reason(client, url, words):
    content = [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(messages=[{"role": "user", "content": content}], **GREEDY)
    assert info.value.status_code == 400
    error = info.value.body
    assert words in error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == "messages[0].content[1]"


def test_six_images_are_refused(client):
    part = {"type": "image_url", "image_url": {"url": data_url(image_bytes(8, 8))}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(messages=[{"role": "user", "content": [part] * 6}], **GREEDY)
    assert "at most 5 images" in info.value.body["message"]


def test_a_too_long_prompt_is_400_context_length(serve):
    from models.serving.openai_api import Limits

    _, server = serve(limits=Limits(context_length=16))
    client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, "A question much longer than sixteen tokens, " * 3)
    assert info.value.body["code"] == "context_length_exceeded"
    assert "context length of 16" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:  # streamed too: a 400, not an event
        ask(client, "A question much longer than sixteen tokens, " * 3, stream=True)
    assert info.value.body["code"] == "context_length_exceeded"


def test_wrong_api_key_is_401(serve):
    _, server = serve(api_key="sesame")
    wrong = openai.OpenAI(base_url=server.url, api_key="open", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        wrong.models.list()
    assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        ask(wrong)
    right = openai.OpenAI(base_url=server.url, api_key="sesame", max_retries=0)
    assert ask(right, max_tokens=1).usage.completion_tokens == 1


def test_request_size_limit_is_413(serve):
    from models.serving.openai_api import Limits

    _, server = serve(limits=Limits(max_body_bytes=2000))
    client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, "word " * 1000)
    assert info.value.status_code == 413 and info.value.body["code"] == "request_too_large"
    assert ask(client, "short", max_tokens=1).usage.completion_tokens == 1


def test_errors_have_openais_shape(live):
    base = live[1].url
    for response in (
        httpx.get(f"{base}/nowhere"),
        httpx.post(
            f"{base}/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
        httpx.post(f"{base}/chat/completions", json={"messages": "Hi"}),
    ):
        assert response.status_code in (400, 404)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_two_concurrent_clients_are_both_answered_in_full(client):
    alone = [ask(client, text, max_tokens=12) for text in ("First question", "Second question")]
    results = [None, None]

    def run(i, text):
        results[i] = ask(client, text, max_tokens=12)

    texts = ("First question", "Second question")
    threads = [threading.Thread(target=run, args=(i, text)) for i, text in enumerate(texts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for got, expected in zip(results, alone, strict=True):
        assert got is not None
        assert got.choices[0].message.content == expected.choices[0].message.content
        assert got.usage.completion_tokens == expected.usage.completion_tokens


def test_a_client_that_disconnects_mid_stream_frees_the_engine_within_one_token(client, live, owner):
    app = live[0]
    stream = ask(client, "Write a very long essay.", max_tokens=5000, temperature=0.9, stream=True)
    received = 0
    for received, _chunk in enumerate(stream, 1):
        if received == 3:
            break
    stream.close()
    job = app.state.jobs[-1]
    assert job.done.wait(60)
    assert job.final.finish_reason == "cancelled"
    assert job.tokens_at_cancel is not None
    assert job.final.generation_tokens - job.tokens_at_cancel <= 1
    assert job.final.generation_tokens < 5000
    assert not owner.busy
    assert ask(client, max_tokens=1).usage.completion_tokens == 1


def test_a_resent_conversation_prefills_only_the_new_tokens(client):
    history = [{"role": "user", "content": "Name three colours."}]
    first = client.chat.completions.create(messages=history, max_tokens=10, **GREEDY)
    history += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And three more?"},
    ]
    second = client.chat.completions.create(messages=history, max_tokens=4, **GREEDY)
    cached = second.usage.prompt_tokens_details.cached_tokens
    # The cache holds the first prompt and every answer token but the last (never fed back).
    assert cached >= first.usage.prompt_tokens + first.usage.completion_tokens - 1
    # What is prefilled is the answer's last token, the template around the turns and the question.
    assert second.usage.prompt_tokens - cached < second.usage.prompt_tokens / 2


def test_a_non_loopback_host_needs_a_key():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "key")
    with pytest.raises(ValueError, match="API key"):
        check_bind("0.0.0.0", None)


# -- issue 23: retained images, huge texts, streams nobody reads -----------------------------------


def test_a_finished_job_keeps_no_decoded_image(client, live, monkeypatch):
    """Every Pillow image made while the request is answered is gone once the job ended: the
    jobs registry keeps numbers and final steps, never pixels (it kept about 305 MB a request)."""
    import gc

    from tests.support.image_bombs import images_made

    picture = data_url(image_bytes(300, 200, "PNG", (1, 2, 3)))  # not seen by earlier tests
    content = [{"type": "image_url", "image_url": {"url": picture}}, {"type": "text", "text": "What?"}]
    with images_made(monkeypatch) as made:
        ask(client, content, max_tokens=2)
        job = live[0].state.jobs[-1]
        assert job.done.wait(60)
    gc.collect()
    assert made, "the image was decoded to answer"
    assert [ref for ref in made if ref() is not None] == []
    assert job.messages == []


def test_a_huge_text_is_refused_before_it_reaches_the_engine():
    """A 20 MB message held the engine thread for 56 s (and 60 MB aborted the process): it is a
    400 before any job exists, so nothing is tokenized."""
    from fastapi.testclient import TestClient

    from models.serving.api_server import create_app

    class Runner:
        model_name = "tiny"
        submitted = 0

        def submit(self, messages, settings, deliver):
            Runner.submitted += 1
            raise AssertionError("a job was submitted")

    with TestClient(create_app(Runner()), base_url="http://127.0.0.1") as http:
        response = http.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 20_000_000}]}
        )
    assert response.status_code == 400 and Runner.submitted == 0
    error = response.json()["error"]
    assert error["code"] == "string_above_max_length" and error["param"] == "messages[0].content"


def test_a_stream_whose_client_stops_reading_is_cancelled_and_the_next_client_answered(serve):
    """A client that opens a stream and never reads kept the engine answering it while another
    waited (46 s): once it is a bounded number of chunks behind, its job is cancelled."""
    import socket

    from models.serving.openai_api import Limits

    app, server = serve(limits=Limits(stream_buffer_chunks=64, stream_stall_s=1.0))
    body = json.dumps(
        {
            "model": "m",
            "stream": True,
            "max_tokens": 20_000,
            "temperature": 0,  # greedy: the tiny model never says it is done
            "messages": [{"role": "user", "content": "Write a very long essay."}],
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: it fills soon
    silent.connect(("127.0.0.1", server.port))
    try:
        silent.sendall(head + body)  # and never reads
        submitted = threading.Event()
        deadline = threading.Timer(60, submitted.set)
        deadline.start()
        while not app.state.jobs and not submitted.wait(0.01):
            pass
        deadline.cancel()
        stalled = app.state.jobs[0]
        other = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=60)
        answer = ask(other, "Are you there?", max_tokens=3)
        assert answer.usage.completion_tokens >= 1
        assert stalled.done.wait(60)
        assert stalled.final.finish_reason == "cancelled"
        assert stalled.final.generation_tokens < 20_000
    finally:
        silent.close()


def test_four_streamed_clients_at_once_get_what_each_gets_alone(client, owner):
    """Different prompts, lengths and stop strings, streamed at once: each client's text equals
    its answer alone (greedy), and they ran together (the host holds four at once)."""
    requests = [
        ("Tell me about rivers.", 16, None),
        ("Describe a mountain " * 8, 24, None),
        ("Short one", 8, None),
        ("A story about a fox and a hound " * 3, 20, None),
    ]

    def streamed(text, max_tokens, stop):
        stream = ask(client, text, max_tokens=max_tokens, stream=True, stop=stop)
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    alone = [streamed(*r) for r in requests]
    # A stop string each request's own answer contains: the cut must happen in the batch too.
    requests = [
        (t, n, [a[len(a) // 2 : len(a) // 2 + 2]] if len(a) > 4 else None)
        for (t, n, _), a in zip(requests, alone, strict=True)
    ]
    alone = [streamed(*r) for r in requests]
    results = [None] * len(requests)

    def run(i):
        results[i] = streamed(*requests[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == alone
    assert owner.parallel >= 4


def test_past_the_queue_limit_a_request_gets_429_with_retry_after(checkpoints):
    import httpx

    from models.serving.api_server import ServerThread, create_app
    from models.serving.engine_host import EngineHost

    host = EngineHost(checkpoints["4bit"], parallel=1, queue_limit=0)
    host.start(timeout=120)
    server = ServerThread(create_app(host), port=0)
    server.start()
    try:
        busy = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=60)
        stream = ask(busy, "Write a very long essay.", max_tokens=5000, stream=True)
        next(iter(stream))  # it runs, and holds the only slot
        refused = httpx.post(
            f"{server.url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "Me too"}], "max_tokens": 2},
            timeout=30,
        )
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        stream.close()
    finally:
        server.stop()
        host.close()
