"""The HTTP layer against hostile callers, on a fake engine (no model runs): a web page's
Host, Origin and text/plain bodies, JSON bombs, non-finite numbers, half-open connections and
log floods. Every refusal has OpenAI's error shape and starts no job."""

import json
import threading

import httpx
import openai
import pytest

from models.inference.answer_defaults import CONTEXT_LENGTH

QUESTION = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def post(server, body=QUESTION, headers=None, raw: bytes | None = None, path="/chat/completions"):
    content = raw if raw is not None else json.dumps(body).encode()
    given = {"Content-Type": "application/json", **(headers or {})}
    return httpx.post(f"{server.url}{path}", content=content, headers=given, timeout=60)


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "localhost:1", "127.0.0.2"])
def test_a_foreign_host_is_403_before_any_work(plain, host):
    app, server = plain
    jobs = len(app.state.jobs)
    response = post(server, headers={"Host": host.format(port=server.port)})
    error = error_of(response, 403)
    assert "Host" in error["message"] and error["code"] == "forbidden_host"
    assert len(app.state.jobs) == jobs


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "127.0.0.1"])
def test_hosts_naming_this_server_are_answered(plain, host):
    _, server = plain
    response = post(server, headers={"Host": host.format(port=server.port)})
    assert response.status_code == 200, response.text


def test_a_configured_host_is_accepted():
    from models.serving.request_guard import RequestGuard

    guard = RequestGuard(None, listen_host="studio.local")
    assert guard.host_allowed("studio.local:8642", 8642) and guard.host_allowed("[::1]", 8642)
    assert not guard.host_allowed("studio.local:8000", 8642)
    assert not guard.host_allowed("evil.example", 8642) and not guard.host_allowed("", 8642)
    wildcard = RequestGuard(None, listen_host="0.0.0.0")
    assert wildcard.host_allowed("192.168.1.4:8642", 8642)
    assert not wildcard.host_allowed("evil.example:8642", 8642)


def test_a_web_pages_simple_request_is_refused_and_gets_no_cors_headers(plain):
    app, server = plain
    jobs = len(app.state.jobs)
    headers = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    response = post(server, headers=headers)
    error = error_of(response, 403)
    assert "Origin" in error["message"] and error["code"] == "forbidden_origin"
    assert "access-control-allow-origin" not in response.headers
    preflight = httpx.options(
        f"{server.url}/chat/completions",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    assert len(app.state.jobs) == jobs


def test_an_allowed_origin_gets_cors_headers_and_a_preflight(serve_fake):
    origin = "http://localhost:5173"
    app, server = serve_fake({"allowed_origins": (origin,)})
    preflight = httpx.options(
        f"{server.url}/chat/completions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    assert "x-stainless-os" in preflight.headers["access-control-allow-headers"]
    answer = post(server, headers={"Origin": origin})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == origin
    assert "origin" in answer.headers["vary"].lower()
    other = post(server, headers={"Origin": "http://localhost:5174"})
    error_of(other, 403)
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; b=x",
        None,
    ],
)
def test_a_body_that_is_not_declared_json_is_415(plain, content_type):
    app, server = plain
    jobs = len(app.state.jobs)
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = httpx.post(f"{server.url}/chat/completions", content=json.dumps(QUESTION), headers=headers)
    error = error_of(response, 415)
    assert "application/json" in error["message"]
    assert len(app.state.jobs) == jobs


def test_json_with_a_charset_is_answered(plain):
    response = post(plain[1], headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert response.status_code == 200, response.text


def with_(**fields) -> bytes:
    body = json.dumps(QUESTION)[:-1]
    return (body + "".join(f', "{k}": {v}' for k, v in fields.items()) + "}").encode()


@pytest.mark.parametrize(
    "raw, param, words",
    [
        (b"[" * 100_000 + b"]" * 100_000, None, "nested"),
        (with_(extra="[" * 65 + "]" * 65), None, "nested"),
        (with_(max_tokens=str(10**30)), "max_tokens", "digits"),
        (with_(seed="-" + "9" * 5000), "seed", "digits"),
        (with_(temperature="NaN"), "temperature", "finite"),
        (with_(top_p="NaN"), "top_p", "finite"),
        (with_(temperature="1e400"), "temperature", "finite"),
        (with_(top_p="-Infinity"), "top_p", "finite"),
        (with_(seed="Infinity"), "seed", "finite"),
    ],
)
def test_json_bombs_and_non_finite_numbers_are_400_naming_the_field(plain, raw, param, words):
    app, server = plain
    jobs = len(app.state.jobs)
    error = error_of(post(server, raw=raw), 400)
    assert error["param"] == param and words in error["message"]
    assert len(app.state.jobs) == jobs


def test_depth_inside_strings_is_not_nesting(plain):
    text = "[" * 500 + '\\"{' * 100
    body = {**QUESTION, "messages": [{"role": "user", "content": text}]}
    assert post(plain[1], body).status_code == 200


def test_max_tokens_beyond_the_context_is_400(plain):
    client = openai.OpenAI(base_url=plain[1].url, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=QUESTION["messages"], max_tokens=10**12)
    assert info.value.body["param"] == "max_tokens"
    assert f"{CONTEXT_LENGTH:,}" in info.value.body["message"]


def test_an_answer_stops_where_the_context_ends(serve_fake):
    from models.serving.openai_api import Limits

    _, server = serve_fake({"limits": Limits(context_length=20)})
    client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
    answer = client.chat.completions.create(model="m", messages=QUESTION["messages"], max_tokens=19)
    assert answer.choices[0].finish_reason == "length" and answer.usage.total_tokens <= 20


def test_models_says_the_context_length(plain, serve_fake):
    from models.serving.openai_api import Limits

    assert httpx.get(f"{plain[1].url}/models").json()["data"][0]["context_length"] == CONTEXT_LENGTH
    _, server = serve_fake({"limits": Limits(context_length=4096)})
    assert httpx.get(f"{server.url}/models").json()["data"][0]["context_length"] == 4096


class _BrokenRunner:
    model_name = "broken"

    def submit(self, messages, settings, deliver):
        raise RuntimeError("secret internals")


def test_an_unexpected_failure_is_an_openai_shaped_500_without_a_traceback():
    from models.serving.api_server import ServerThread, create_app

    server = ServerThread(create_app(_BrokenRunner()), port=0)
    server.start()
    try:
        response = post(server)
        error = error_of(response, 500)
        assert error["type"] == "server_error"
        assert "secret internals" not in response.text and "Traceback" not in response.text
    finally:
        server.stop()


def test_concurrent_requests_from_the_openai_client_still_work(plain):
    client = openai.OpenAI(base_url=plain[1].url, api_key="x", max_retries=0, timeout=60)
    results = []

    def ask():
        results.append(client.chat.completions.create(model="m", messages=QUESTION["messages"], max_tokens=2))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4
