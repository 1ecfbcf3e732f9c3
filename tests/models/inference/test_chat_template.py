"""The chat template rendered with bounded work, values and output, as transformers renders it."""

from __future__ import annotations

import pytest

from models.inference import chat_template as module
from models.inference.chat_template import ChatTemplate, ChatTemplateError
from models.inference.engine import PromptError
from models.inference.prompt import ChatMessage, PromptEncoder
from tests.support.synthetic_checkpoints import LLAMA4_CHAT_TEMPLATE

SPECIAL = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot|>", "pad_token": "<|finetune_right_pad|>"}


def user(text, images=0):
    return {"role": "user", "content": [{"type": "image"}] * images + [{"type": "text", "text": text}]}


CONVERSATIONS = [
    [user("Hello")],
    [{"role": "system", "content": "  Be brief. "}, user("Hi", images=2)],
    [user("a"), {"role": "assistant", "content": "b"}, user("c", images=1)],
    [{"role": "user", "content": "plain text"}, {"role": "assistant", "content": "x"}] * 50,
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_the_llama4_template_renders_as_transformers_does(conversation, add_generation_prompt):
    from transformers.utils.chat_template_utils import render_jinja_template

    (expected,), _ = render_jinja_template(
        [conversation],
        chat_template=LLAMA4_CHAT_TEMPLATE,
        add_generation_prompt=add_generation_prompt,
        **SPECIAL,
    )
    ours = ChatTemplate(LLAMA4_CHAT_TEMPLATE).render(conversation, add_generation_prompt, SPECIAL)
    assert ours == expected


def test_transformers_features_templates_use_still_work():
    template = (
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
        "{% if loop.last %}{% break %}{% endif %}{% endfor %}"
        "{% generation %}{{ ns.n }}{% endgeneration %}"
        "{{ messages[0] | tojson }}{{ dict(a=1) | tojson }}{{ dict.fromkeys('b') | tojson }}"
        "{{ '%5d' % 7 }}{{ '{:>3}'.format(1) }}{{ range(3) | join(',') }}{{ bos_token ~ 'x' * 3 }}"
        "{{ 'In 12345678 %s' % 'b' }}{{ '{}:2025'.format(9) }}"
    )
    out = ChatTemplate(template).render([{"role": "user", "content": "é"}], True, SPECIAL)
    assert out == (
        '1{"role": "user", "content": "é"}{"a": 1}{"b": null}    7  10,1,2<|begin_of_text|>xxx'
        "In 12345678 b9:2025"
    )


HOSTILE = {
    "nested ranges": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% for k in range(100000) %}"
        "x{% endfor %}{% endfor %}{% endfor %}",
        "too expensive to render (its range() calls ask for over 100,000 items)",
    ),
    "nested loops over a string": (
        "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% for c in s %}{{ strftime_now('') }}"
        "{% endfor %}{% endfor %}{% endfor %}",
        "too many loop steps and calls",
    ),
    "filtered loops": (
        "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s if strftime_now('') %}"
        "{% endfor %}{% endfor %}",
        "too many loop steps and calls",
    ),
    "macro fan-out": (
        "{% macro f(n) %}{% if n %}{{ strftime_now('') }}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
        "{% endmacro %}{{ f(60) }}",
        "too many loop steps and calls",
    ),
    "repetition": ("{{ 'x' * 10**9 }}", "builds a value of over 2,000,000"),
    "doubling": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "builds a value of over 2,000,000",
    ),
    "a wide field": ("{{ '%0999999999d' % 1 }}", "too wide a field"),
    "a wide format": ("{{ '{:>999999999}'.format(1) }}", "too wide a field"),
    "a wide filter": ("{{ 'x' | center(10**9) }}", "passes a number over 100,000 to a function"),
    "a wide precision": ("{{ '%.9999999f' % 1.5 }}", "too wide a field"),
    "a wide nested format": ("{{ '{0:{1}}'.format(1, 10**9) }}", "passes a number over 100,000"),
    "a huge power": ("{{ 7 ** 10000000 }}", "too large a number"),
    "replace": ("{% set x = 'x' * 100000 %}{{ x.replace('x', x) }}", "builds a value of over"),
    "join": ("{% set x = 'x' * 100000 %}{{ x.join(x) }}", "builds a value of over"),
    "indent": ("{{ ('a\\n' * 100000) | indent(100000) }}", "builds a value of over"),
    "a list of big strings": (
        "{% set x = 'x' * 1000000 %}{{ [x, x, x, x] }}",
        "builds a value of over",
    ),
    "many large variables": (
        "".join(f"{{% set v{i} = 'x' * 1000000 %}}" for i in range(30)),
        "builds over 20,000,000 characters or items in all",
    ),
    "long output": ("{% for i in range(100000) %}{{ 'x' * 30 }}{% endfor %}", "renders too long a prompt"),
    "long text in a macro": (
        "{% macro f() %}{% for i in range(100000) %}"
        + "y" * 1000
        + "{% endfor %}{% endmacro %}{% set z = f() %}",
        "renders too long a prompt",
    ),
    "recursion": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "failed: maximum recursion depth"),
    "silent failure": ("{{ raise_exception('') }}", "The model's chat template failed: TemplateError"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_template_fails_in_one_line_with_bounded_work(name, monkeypatch):
    calls = []
    monkeypatch.setattr(module, "_strftime_now", lambda format: calls.append(1) or "x")
    source, reason = HOSTILE[name]
    with pytest.raises(ChatTemplateError) as failure:
        ChatTemplate(source).render([user("hi")], True, SPECIAL)
    message = str(failure.value)
    assert reason in message and "\n" not in message
    assert len(calls) <= module.MAX_STEPS + module.PER_MESSAGE


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("x" * 1_000_001, "longer than 1,000,000 characters"),
        ("{{ 1 }}" * 5_001, "over 5,000 tags"),
        ("{{ [" + "1, " * 30_000 + "] }}", "over 20,000 tokens in its tags"),
        ("{% for %}", "not valid"),
        (None, "has no chat template"),
    ],
)
def test_a_template_too_large_or_invalid_is_refused_before_rendering(source, reason):
    with pytest.raises(ChatTemplateError, match=reason):
        ChatTemplate(source)


@pytest.mark.timeout(60)
def test_the_engine_fails_a_prompt_with_an_expensive_template_in_one_line(engine_4bit, monkeypatch):
    tokenizer = engine_4bit.encoder.tokenizer
    monkeypatch.setattr(tokenizer, "chat_template", HOSTILE["nested ranges"][0])
    monkeypatch.setattr(engine_4bit, "encoder", PromptEncoder(tokenizer, engine_4bit.checkpoint.processor))
    with pytest.raises(PromptError) as failure:
        engine_4bit.prepare([ChatMessage("user", "Hello")])
    assert str(failure.value) == (
        "Could not build the prompt: The model's chat template is too expensive to render "
        "(its range() calls ask for over 100,000 items)."
    )


def test_a_template_too_large_is_refused_when_the_prompt_encoder_is_made(engine_4bit, monkeypatch):
    tokenizer = engine_4bit.encoder.tokenizer
    monkeypatch.setattr(tokenizer, "chat_template", "{{ bos_token }}" + " " * 50_000_000)
    with pytest.raises(ChatTemplateError, match="longer than 1,000,000 characters"):
        PromptEncoder(tokenizer, engine_4bit.checkpoint.processor)


@pytest.mark.parametrize(
    ("template", "reason"),
    [("{% for %}", "chat template is not valid"), ("{{ 1 }}" * 6_000, "chat template has over 5,000 tags")],
)
def test_a_model_with_an_unusable_template_is_refused_at_load(checkpoints, tmp_path, template, reason):
    import json
    import shutil

    from models.inference.engine import Engine, ModelLoadError

    folder = tmp_path / "template"
    shutil.copytree(checkpoints["4bit"], folder)
    (folder / "chat_template.json").unlink()
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelLoadError) as failure:
        Engine.load(folder)
    message = str(failure.value)
    assert message.startswith("Could not load template: The model's ") and reason in message
    assert "\n" not in message
