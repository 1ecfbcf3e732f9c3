"""The wired limit around generation, with the Metal device query faked (this runs on Linux)."""

import logging

import mlx.core as mx
import pytest

from models.inference.wired_memory import model_bytes, wired_limit

RECOMMENDED = 1_000_000


@pytest.fixture
def metal(monkeypatch):
    """A fake Metal device recommending RECOMMENDED bytes; records wired-limit and sync calls."""
    calls = []
    state = {"limit": 0}

    def set_wired_limit(limit):
        calls.append(("set", limit))
        previous, state["limit"] = state["limit"], limit
        return previous

    monkeypatch.setattr(mx.metal, "is_available", lambda: True)
    monkeypatch.setattr(
        mx,
        "device_info",
        lambda: {
            "architecture": "applegpu_g15s",
            "max_recommended_working_set_size": RECOMMENDED,
        },
    )
    monkeypatch.setattr(mx, "set_wired_limit", set_wired_limit)
    monkeypatch.setattr(mx, "synchronize", lambda *streams: calls.append(("sync", streams)))
    return calls


def test_on_metal_the_limit_is_raised_then_restored(metal, caplog):
    small = {"w": mx.zeros((1000,), dtype=mx.float32)}  # 4 kB
    with caplog.at_level(logging.WARNING), wired_limit(small):
        assert metal == [("set", RECOMMENDED)]
    assert metal == [("set", RECOMMENDED), ("sync", ()), ("set", 0)]
    assert not caplog.records


def test_given_streams_are_synchronized_before_restoring(metal):
    stream = mx.new_stream(mx.cpu)
    with wired_limit({}, [stream]):
        pass
    assert metal == [("set", RECOMMENDED), ("sync", (stream,)), ("set", 0)]


def test_a_model_above_90_percent_is_warned_about(metal, caplog):
    big = {"w": mx.zeros((RECOMMENDED // 4,), dtype=mx.float32)}  # 100 % of the recommendation
    assert model_bytes(big) == RECOMMENDED
    with caplog.at_level(logging.WARNING, logger="models.inference.wired_memory"), wired_limit(big):
        pass
    assert any("recommends" in record.getMessage() for record in caplog.records)


def test_the_limit_is_restored_when_generation_fails(metal):
    with pytest.raises(RuntimeError), wired_limit({}):
        raise RuntimeError("boom")
    assert metal[-1] == ("set", 0)


def test_off_metal_nothing_changes(monkeypatch):
    def refuse(*_args):
        raise AssertionError("the wired limit is Metal-only")

    monkeypatch.setattr(mx.metal, "is_available", lambda: False)
    monkeypatch.setattr(mx, "set_wired_limit", refuse)
    with wired_limit({"w": mx.zeros((4,))}):
        pass
