"""``llama-desk serve`` in a child process, as a person starts it, driven by the openai client."""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys

import openai
import pytest

from models.inference.answer_defaults import CONTEXT_LENGTH
from tests.desktop.cli.test_ask_cli import run_cli


def start_server(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("LLAMA_DESK_API_KEY", None)
    return subprocess.Popen(
        [sys.executable, "-m", "desktop.cli", "serve", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def address_of(process) -> str:
    line = process.stdout.readline()
    match = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line)
    assert match, (line, process.stderr.read() if process.poll() is not None else "")
    return match.group(1)


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_answers_then_stops_cleanly(checkpoints, stop_signal):
    process = start_server("--model", checkpoints["4bit"], "--port", "0", "--api-key", "k")
    try:
        url = address_of(process)
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0, timeout=120)
        models = client.models.list().data
        assert [m.id for m in models] == ["tiny-llama4-4bit"]
        assert models[0].context_length == CONTEXT_LENGTH  # the app's, not the model's 10M
        answer = client.chat.completions.create(
            model="tiny-llama4-4bit",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=3,
            temperature=0,
        )
        assert 1 <= answer.usage.completion_tokens <= 3
        process.send_signal(stop_signal)
        assert process.wait(60) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_non_loopback_host_without_a_key_is_refused_before_loading():
    result = run_cli("serve", "--model", "/no/such/model", "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "API key" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_no_model_and_none_opened_before():
    result = run_cli("serve")
    assert result.returncode == 2 and "--model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_port_in_use_is_one_line(checkpoints):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--model", checkpoints["4bit"], "--port", port)
    assert result.returncode == 1
    assert "Could not listen" in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("llama-desk:")]) == 1


def serve_args(*argv: str) -> argparse.Namespace:
    from desktop.cli import serve

    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_serve_holds_requests_to_the_settings_context_length():
    from desktop.cli.serve import _limits
    from desktop.preferences import open_settings

    assert _limits(serve_args()).context_length == CONTEXT_LENGTH
    settings = open_settings()
    settings.setValue("defaults/context_length", 4096)
    settings.sync()
    assert _limits(serve_args()).context_length == 4096
    assert _limits(serve_args("--context-length", "300")).context_length == 300


@pytest.mark.parametrize("origin", ["*", "evil.example", "http://a.example/path", "ftp://a.example"])
def test_a_bad_allowed_origin_is_one_line(origin):
    result = run_cli("serve", "--model", "/no/such/model", "--allow-origin", origin)
    assert result.returncode == 2 and "--allow-origin" in result.stderr and "origin" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_allowed_origins_are_normalized():
    from desktop.cli.serve import _origins

    given = serve_args("--allow-origin", "HTTP://LocalHost:5173", "--allow-origin", "https://app.example")
    assert _origins(given) == ("http://localhost:5173", "https://app.example")


@pytest.mark.parametrize("value", ["0", "17", "-3"])
def test_parallel_out_of_range_is_one_line(value):
    result = run_cli("serve", "--model", "/no/such/model", "--parallel", value)
    assert result.returncode == 2 and "--parallel must be in 1-16" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
