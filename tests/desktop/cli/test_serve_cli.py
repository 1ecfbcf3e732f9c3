"""``llama-desk serve`` in a child process, as a person starts it, driven by the openai client."""

import os
import re
import signal
import socket
import subprocess
import sys

import openai
import pytest

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
        assert [m.id for m in client.models.list().data] == ["tiny-llama4-4bit"]
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
