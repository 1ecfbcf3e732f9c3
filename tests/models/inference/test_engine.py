"""The engine on synthesized checkpoints: loading, fidelity fixes, streaming, cache reuse."""

import threading

import mlx.core as mx
import numpy as np
import pytest

from models.inference.engine import Engine, GenerationSettings, fix_vision_tower
from models.inference.images import load_image_bytes
from models.inference.prompt import ChatMessage
from tests.conftest import image_bytes

GREEDY = GenerationSettings(max_tokens=8, temperature=0.0)
FIRST_SHARD = "model-00001-of-00002.safetensors"


def photo(width, height, color=(200, 40, 40)):
    return load_image_bytes(image_bytes(width, height, "PNG", color), f"{width}x{height}.png")


def answer(engine, messages, settings=GREEDY, cancel=None):
    steps = list(engine.generate(messages, settings, cancel))
    final = steps[-1]
    assert final.finish_reason is not None
    assert all(s.finish_reason is None for s in steps[:-1])
    return "".join(s.text for s in steps), final, steps


@pytest.mark.parametrize("variant", ["bf16", "4bit", "8bit"])
def test_each_variant_answers_about_an_image(checkpoints, variant):
    engine = Engine.load(checkpoints[variant])
    text, final, steps = answer(engine, [ChatMessage("user", "What is this?", (photo(112, 56),))])
    assert final.finish_reason in ("length", "stop")
    assert final.generation_tokens == len(final.token_ids) + (final.finish_reason == "stop")
    assert final.prompt_tokens == len(final.prompt_token_ids)
    assert final.peak_memory_gb > 0 and final.ttft_s > 0
    assert text == engine.tokenizer._tokenizer.decode(list(final.token_ids))


def test_quantized_variants_are_quantized(checkpoints):
    import mlx.nn as nn

    for variant, bits in (("4bit", 4), ("8bit", 8)):
        engine = Engine.load(checkpoints[variant])
        layer = engine.model.language_model.model.layers[0].self_attn.q_proj
        assert isinstance(layer, nn.QuantizedLinear) and layer.bits == bits


def test_prompt_has_one_bos_and_image_layout(engine_4bit):
    _, final, _ = answer(engine_4bit, [ChatMessage("user", "Describe", (photo(112, 56),))])
    tok = engine_4bit.tokenizer._tokenizer
    ids = list(final.prompt_token_ids)
    bos = tok.convert_tokens_to_ids("<|begin_of_text|>")
    assert ids[0] == bos and ids.count(bos) == 1
    patch = tok.convert_tokens_to_ids("<|patch|>")
    # 112x56 with 56-px tiles: a 1x2 grid plus the global tile, 4 features each.
    assert ids.count(patch) == 12
    text = tok.decode(ids)
    assert text.index("<|image_end|>") < text.index("Describe")  # images before the text


def test_vision_features_match_patch_tokens(engine_4bit):
    """Each <|patch|> position gets exactly one vision feature; none is left over."""
    prompt = engine_4bit.encoder.encode([ChatMessage("user", "hi", (photo(300, 900), photo(56, 56)))])
    for item in prompt.images:
        features = engine_4bit._image_features(item, threading.Event())
        assert features.shape[0] == len(item.positions) == item.plan.tiles * 4


def test_vision_tower_uses_exact_gelu_and_fast_unfold(engine_4bit):
    import mlx.nn as nn
    from mlx_vlm.models.llama4.vision import Llama4UnfoldConvolution, Llama4VisionMLP

    mlps = [m for _, m in engine_4bit.model.vision_model.named_modules() if isinstance(m, Llama4VisionMLP)]
    assert mlps and all(isinstance(m.activation_fn, nn.GELU) for m in mlps)
    x = mx.array(np.random.default_rng(0).standard_normal((1, 1, 4)).astype(np.float32))
    for m in mlps:
        assert mx.allclose(m.activation_fn(x), nn.gelu(x))

    unfold = engine_4bit.model.vision_model.patch_embedding
    pixels = mx.array(np.random.default_rng(1).standard_normal((2, 3, 28, 42)).astype(np.float32))
    fast = unfold.unfold(pixels)
    slow = Llama4UnfoldConvolution.unfold(unfold, pixels)  # mlx-vlm's own implementation
    assert fast.shape == slow.shape == (2, 3 * 14 * 14, 6)
    assert mx.array_equal(fast, slow)


def test_fix_is_idempotent(engine_4bit):
    fix_vision_tower(engine_4bit.model)
    text, final, _ = answer(engine_4bit, [ChatMessage("user", "again")])
    assert final.finish_reason in ("length", "stop")


def test_follow_up_prefills_only_new_tokens(checkpoints):
    engine = Engine.load(checkpoints["4bit"])
    first_q = ChatMessage("user", "What is in this picture?", (photo(112, 56),))
    text1, final1, _ = answer(engine, [first_q])
    history = [first_q, ChatMessage("assistant", text1, token_ids=final1.token_ids)]
    total1 = len(final1.prompt_token_ids)

    second_q = ChatMessage("user", "And in this one?", (photo(300, 900, (10, 10, 250)),))
    text2, final2, _ = answer(engine, history + [second_q])
    full = len(final2.prompt_token_ids)
    # The cache held the first prompt and every generated token it was fed.
    assert final2.cached_tokens == total1 + len(final1.token_ids)
    assert final2.prompt_tokens == full - final2.cached_tokens
    assert final2.prompt_tokens < full

    # A text-only third turn reuses everything before it, images included.
    history2 = history + [second_q, ChatMessage("assistant", text2, token_ids=final2.token_ids)]
    _, final3, _ = answer(engine, history2 + [ChatMessage("user", "Thanks!")])
    assert final3.cached_tokens == full + len(final2.token_ids)
    assert final3.prompt_tokens == len(final3.prompt_token_ids) - final3.cached_tokens


def test_same_answer_with_and_without_cache(checkpoints):
    """Reusing the cache must not change the result: compare against a cold engine."""
    warm = Engine.load(checkpoints["4bit"])
    q1 = ChatMessage("user", "First", (photo(112, 56),))
    t1, f1, _ = answer(warm, [q1])
    conversation = [q1, ChatMessage("assistant", t1, token_ids=f1.token_ids), ChatMessage("user", "Second")]
    warm_text, warm_final, _ = answer(warm, conversation)
    cold = Engine.load(checkpoints["4bit"])
    cold_text, cold_final, _ = answer(cold, conversation)
    assert warm_final.cached_tokens > 0 and cold_final.cached_tokens == 0
    assert warm_final.token_ids == cold_final.token_ids


def test_different_image_same_layout_is_not_reused(engine_4bit):
    """Two images with the same tile grid have identical token ids; the cache must tell them apart."""
    engine_4bit.reset_cache()
    _, f_red, _ = answer(engine_4bit, [ChatMessage("user", "colour?", (photo(112, 56, (255, 0, 0)),))])
    _, f_blue, _ = answer(engine_4bit, [ChatMessage("user", "colour?", (photo(112, 56, (0, 0, 255)),))])
    assert f_red.prompt_token_ids == f_blue.prompt_token_ids
    patch = engine_4bit.tokenizer._tokenizer.convert_tokens_to_ids("<|patch|>")
    assert f_blue.cached_tokens <= list(f_blue.prompt_token_ids).index(patch)


def test_cancel_stops_within_one_token(engine_4bit):
    cancel = threading.Event()
    steps = []
    for step in engine_4bit.generate(
        [ChatMessage("user", "Tell me a story")], GenerationSettings(max_tokens=200, temperature=0.0), cancel
    ):
        steps.append(step)
        if len(steps) == 3:
            cancel.set()
    final = steps[-1]
    assert final.finish_reason == "cancelled"
    assert final.generation_tokens == 3
    assert len(steps) == 4


def test_cancel_during_prefill(engine_4bit):
    engine_4bit.reset_cache()
    calls = []

    class CancelAfterFirstChunk(threading.Event):
        def is_set(self):
            calls.append(1)
            return len(calls) > 2

    cancel = CancelAfterFirstChunk()
    long_text = "word " * 300
    steps = list(
        engine_4bit.generate(
            [ChatMessage("user", long_text)], GenerationSettings(max_tokens=20, prefill_step_size=32), cancel
        )
    )
    assert steps[-1].finish_reason == "cancelled"
    assert steps[-1].generation_tokens == 0
    # The partial prefill is remembered, so the next try continues from it.
    partial = len(engine_4bit.cache_keys)
    assert 0 < partial < len(steps[-1].prompt_token_ids)
    assert partial % 32 == 0  # whole prefill chunks
    _, again, _ = answer(engine_4bit, [ChatMessage("user", long_text)], GREEDY)
    assert again.cached_tokens == partial
    assert again.prompt_tokens == len(again.prompt_token_ids) - partial


def test_prompt_longer_than_context(engine_4bit):
    _, final, steps = answer(
        engine_4bit, [ChatMessage("user", "word " * 200)], GenerationSettings(max_tokens=4, context_length=64)
    )
    assert len(steps) == 1
    assert final.finish_reason == "error"
    assert "context length of 64" in final.error


def test_length_limit_and_seeded_sampling(engine_4bit):
    settings = GenerationSettings(max_tokens=5, temperature=0.9, top_p=0.95, seed=7)
    engine_4bit.reset_cache()
    _, a, _ = answer(engine_4bit, [ChatMessage("user", "Say something")], settings)
    engine_4bit.reset_cache()
    _, b, _ = answer(engine_4bit, [ChatMessage("user", "Say something")], settings)
    assert a.finish_reason == "length" and a.generation_tokens == 5
    assert a.token_ids == b.token_ids


def test_stop_on_end_of_turn(checkpoints, tmp_path):
    """A checkpoint whose model says <|eot|> after two tokens ends with finish_reason stop."""
    import json
    import shutil

    engine = Engine.load(checkpoints["4bit"])
    messages = [ChatMessage("user", "Hi")]
    _, final, _ = answer(engine, messages, GREEDY)
    third = final.token_ids[2]
    copy = tmp_path / "stops"
    shutil.copytree(checkpoints["4bit"], copy)
    config = json.loads((copy / "config.json").read_text())
    config["text_config"]["eos_token_id"] = [third]
    (copy / "config.json").write_text(json.dumps(config))
    stopping = Engine.load(copy)
    _, final2, _ = answer(stopping, messages, GREEDY)
    assert final2.finish_reason == "stop"
    assert final2.token_ids == final.token_ids[:2]


def test_typed_control_tokens_stay_text(engine_4bit):
    prompt = engine_4bit.encoder.encode([ChatMessage("user", "<|eot|><|patch|> hello")])
    tok = engine_4bit.tokenizer._tokenizer
    eot, patch = tok.convert_tokens_to_ids("<|eot|>"), tok.convert_tokens_to_ids("<|patch|>")
    assert prompt.ids.count(patch) == 0
    assert prompt.ids.count(eot) == 1  # only the template's end of the user turn


def test_encoding_matches_the_chat_template(engine_4bit):
    tok = engine_4bit.tokenizer._tokenizer
    messages = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Hello there"),
        ChatMessage("assistant", "Hi! How can I help?"),
        ChatMessage("user", "Count to 3"),
    ]
    ours = engine_4bit.encoder.encode(messages).ids
    rendered = tok.apply_chat_template(
        [{"role": m.role, "content": m.text} for m in messages], tokenize=False, add_generation_prompt=True
    )
    assert ours == tok.encode(rendered, add_special_tokens=False)


def test_missing_file_in_model_folder(checkpoints, tmp_path):
    import shutil

    from models.inference.checkpoint import CheckpointError

    cases = {
        "tokenizer.json": "tokenizer.json",
        "preprocessor_config.json": "preprocessor_config",
        "config.json": "config.json",
        FIRST_SHARD: FIRST_SHARD,
    }
    for missing, reason in cases.items():
        copy = tmp_path / f"no-{missing}"
        shutil.copytree(checkpoints["bf16"], copy)
        (copy / missing).unlink()
        with pytest.raises(CheckpointError, match=reason):
            Engine.load(copy)


def test_corrupt_weights_fail_cleanly(checkpoints, tmp_path):
    import shutil

    from models.inference.engine import ModelLoadError

    copy = tmp_path / "corrupt"
    shutil.copytree(checkpoints["bf16"], copy)
    data = (copy / FIRST_SHARD).read_bytes()
    (copy / FIRST_SHARD).write_bytes(data[: len(data) // 3])
    with pytest.raises((ModelLoadError,)):
        Engine.load(copy)


def test_pickled_weights_refused(checkpoints, tmp_path):
    import shutil

    from models.inference.checkpoint import CheckpointError

    copy = tmp_path / "pickled"
    shutil.copytree(checkpoints["bf16"], copy)
    for shard in copy.glob("*.safetensors"):
        shard.rename(copy / f"pytorch_{shard.stem}.bin")
    with pytest.raises(CheckpointError, match="safetensors only"):
        Engine.load(copy)


def test_long_conversation_past_the_attention_chunk_matches_cold(checkpoints):
    """Turns that run past the chunk size (64 here), then an edit far back, match a cold engine."""
    warm = Engine.load(checkpoints["4bit"])
    settings = GenerationSettings(max_tokens=40, temperature=0.0)
    history = []
    for question in ("Describe the first picture in detail", "Now the second one", "Compare them"):
        history.append(ChatMessage("user", question, (photo(112, 56),) if not history else ()))
        text, final, _ = answer(warm, history, settings)
        history.append(ChatMessage("assistant", text, token_ids=final.token_ids))
    assert len(final.prompt_token_ids) > 2 * 64 and final.cached_tokens > 64

    edited = [ChatMessage("user", "A different first question")] + history[1:-1]
    _, warm_final, _ = answer(warm, edited, settings)
    cold = Engine.load(checkpoints["4bit"])
    _, cold_final, _ = answer(cold, edited, settings)
    assert warm_final.token_ids == cold_final.token_ids
    _, warm_again, _ = answer(warm, history[:-1], settings)
    _, cold_again, _ = answer(Engine.load(checkpoints["4bit"]), history[:-1], settings)
    assert warm_again.token_ids == cold_again.token_ids
    assert cold_again.token_ids == final.token_ids  # the incremental turns matched a cold run


def test_config_asking_to_run_code_is_refused(checkpoints, tmp_path):
    import json
    import shutil

    from models.inference.checkpoint import CheckpointError

    copy = tmp_path / "with-code"
    shutil.copytree(checkpoints["4bit"], copy)
    (copy / "model_code.py").write_text("raise SystemExit('code from the model folder ran')\n")
    config = json.loads((copy / "config.json").read_text())
    config["model_file"] = "model_code.py"
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="never runs code"):
        Engine.load(copy)


def test_regenerate_inside_a_trimmed_chunk_matches_cold(checkpoints):
    """The chunked cache drops its front while decoding; reusing it for a prompt whose last chunk
    starts before what is left would silently change attention (chunk 64 here)."""
    warm = Engine.load(checkpoints["4bit"])
    settings = GenerationSettings(max_tokens=40, temperature=0.0)
    for words in range(150, 260):
        question = [ChatMessage("user", "count " * words)]
        length = len(warm.encoder.encode(question).ids)
        if 25 <= (length - 1) % 64 <= 60:
            break
    _, first, _ = answer(warm, question, settings)  # the cache now runs 40 tokens past the prompt
    assert first.generation_tokens == 40
    _, again, _ = answer(warm, question, settings)  # regenerate: same prompt, shared = P - 1
    _, cold, _ = answer(Engine.load(checkpoints["4bit"]), question, settings)
    assert again.token_ids == cold.token_ids


def test_stored_ids_that_do_not_fit_are_retokenized(engine_4bit):
    tok = engine_4bit.tokenizer._tokenizer
    patch = tok.convert_tokens_to_ids("<|patch|>")
    for bad in ((10**9,), (patch, 5), (-1,)):
        messages = [
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello", token_ids=bad),
            ChatMessage("user", "Again"),
        ]
        ids = engine_4bit.prepare(messages).ids
        assert ids == engine_4bit.prepare([*messages[:1], ChatMessage("assistant", "Hello"), messages[2]]).ids


def test_continue_keeps_the_text_exact(engine_4bit):
    tok = engine_4bit.tokenizer._tokenizer
    settings = GenerationSettings(max_tokens=12, temperature=0.0)
    question = ChatMessage("user", "Write something long")
    first_text, first, _ = answer(engine_4bit, [question], settings)
    partial = ChatMessage("assistant", first_text, token_ids=first.token_ids)
    more = list(engine_4bit.generate([question, partial], settings, continue_final=True))
    more_text = "".join(s.text for s in more)
    assert more[-1].prompt_tokens <= 1
    assert more_text == tok.decode(list(more[-1].token_ids))


@pytest.mark.parametrize("on_metal", [True, False])
def test_generation_wires_the_model_on_metal_only(engine_4bit, monkeypatch, on_metal):
    """As mlx-lm's stream_generate: the wired limit is raised for the answer and restored after
    (the device query is faked, so the Metal path runs here too); off Metal it is untouched."""
    calls = []

    def set_wired_limit(limit):
        calls.append(limit)
        return 0

    monkeypatch.setattr(mx.metal, "is_available", lambda: on_metal)
    monkeypatch.setattr(mx, "device_info", lambda: {"max_recommended_working_set_size": 10**9})
    monkeypatch.setattr(mx, "set_wired_limit", set_wired_limit)
    during = []
    steps = []
    for step in engine_4bit.generate([ChatMessage("user", "Hello")], GREEDY):
        during.append(list(calls))
        steps.append(step)
    assert steps[-1].finish_reason in ("length", "stop")
    if on_metal:
        assert all(seen == [10**9] for seen in during)  # wired while the answer streamed
        assert calls == [10**9, 0]  # then the previous limit is back
    else:
        assert calls == []
