"""Tiny Llama 4 checkpoints with random weights and the real on-disk format.

Tests and benchmarks cannot download Meta's weights, so they build checkpoints here: the
real ``config.json`` layout (MoE with a shared expert, NoPE on every 4th layer, chunked
attention, QK-norm; a vision tower with 14-px patches and pixel-shuffle 0.5), the tensor names
and shapes of transformers' ``Llama4ForConditionalGeneration`` (fused ``experts.gate_up_proj``
and ``experts.down_proj`` stored in x out, without a ``.weight`` suffix), a byte-level BPE
``tokenizer.json`` carrying Llama 4's 2,048 special tokens in their real order, the chat
template, and the preprocessor/processor configs. ``quantize_checkpoint`` makes 4- and 8-bit
MLX copies with mlx-vlm's own converter.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The Llama 4 special tokens, in the order of Meta's tokenizer (ids 200000.. on real models).
_BASIC = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
]
_TEXT_POST_TRAIN = (
    ["<|header_start|>", "<|header_end|>", "<|eom|>", "<|eot|>", "<|step|>"]
    + [f"<|text_post_train_reserved_special_token_{i}|>" for i in range(6)]
    + ["<|python_start|>", "<|python_end|>", "<|finetune_right_pad|>"]
    + [f"<|text_post_train_reserved_special_token_{i}|>" for i in range(8, 69)]
)
_VISION = (
    [
        "<|image_start|>",
        "<|image_end|>",
        "<|vision_reserved_special_token_0|>",
        "<|vision_reserved_special_token_1|>",
        "<|tile_x_separator|>",
        "<|tile_y_separator|>",
    ]
    + [f"<|vision_reserved_special_token_{i}|>" for i in range(2, 6)]
    + ["<|image|>", "<|vision_reserved_special_token_6|>", "<|patch|>"]
    + [f"<|vision_reserved_special_token_{i}|>" for i in range(7, 1048)]
)
_REASONING = [f"<|reasoning_reserved_special_token_{i}|>" for i in range(8)] + [
    "<|reasoning_thinking_start|>",
    "<|reasoning_thinking_end|>",
]
_NAMED = _BASIC + _TEXT_POST_TRAIN + _VISION + _REASONING
LLAMA4_SPECIAL_TOKENS = _NAMED + [f"<|reserved_special_token_{i}|>" for i in range(2048 - len(_NAMED))]

# Meta's o200k-style split pattern, as in the Llama 4 tokenizer.json.
_SPLIT_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Llama 4's chat template, as shipped with the Instruct checkpoints (tool branches included).
LLAMA4_CHAT_TEMPLATE = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- if messages[0]['content'] is string %}
        {%- set system_message = messages[0]['content']|trim %}
    {%- else %}
        {#- FIXME: The processor requires an array, always. #}
        {%- set system_message = messages[0]['content'][0]['text']|trim %}
    {%- endif %}
    {%- set messages = messages[1:] %}
    {%- set user_supplied_system_message = true %}
{%- else %}
    {%- set system_message = "" %}
    {%- set user_supplied_system_message = false %}
{%- endif %}

{#- System message if the user supplied one #}
{%- if user_supplied_system_message %}
    {{- "<|header_start|>system<|header_end|>\\n\\n" }}
    {%- if tools is not none %}
        {{- "Environment: ipython\\n" }}
    {%- endif %}
    {{- system_message }}
    {{- "<|eot|>" }}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
    {{- '<|header_start|>' + message['role'] + '<|header_end|>\\n\\n' }}
        {%- if message['content'] is string %}
            {{- message['content'] }}
        {%- else %}
            {%- for content in message['content'] %}
                {%- if content['type'] == 'image' %}
                    {{- '<|image|>' }}
                {%- elif content['type'] == 'text' %}
                    {{- content['text'] }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- "<|eot|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|header_start|>ipython<|header_end|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|header_start|>assistant<|header_end|>\\n\\n' }}
{%- endif %}
"""

_CORPUS = (
    "The quick brown fox jumps over the lazy dog. What is in this picture? A cat sits on a "
    "red chair next to the window. Llama Desk answers questions about images, locally. "
    "Here is some code:\n```python\nprint('hello world')\n```\nNumbers 0123456789 and "
    "punctuation: commas, periods; colons! The photo shows mountains, a lake and trees. "
) * 4


@dataclass(frozen=True)
class TinyShape:
    """Dimensions of a synthesized checkpoint; the defaults load and run in well under a second."""

    hidden: int = 64
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16
    experts: int = 4
    expert_intermediate: int = 64
    dense_intermediate: int = 128
    moe_step: int = 2  # Maverick interleaves dense and MoE layers; Scout uses 1 (all MoE).
    chunk: int = 64
    base_vocab: int = 320
    vision_hidden: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    tile: int = 56
    max_patches: int = 16
    vision_out: int = 64


def _build_tokenizer(base_vocab: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=base_vocab,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        special_tokens=[],
    )
    tok.train_from_iterator([_CORPUS], trainer=trainer)
    # Pad the learned vocabulary to exactly base_vocab so the special tokens start at a known id.
    n = tok.get_vocab_size()
    if n < base_vocab:
        tok.add_tokens([f"\u2581pad{i}" for i in range(base_vocab - n)])
    tok.add_special_tokens(LLAMA4_SPECIAL_TOKENS)
    return tok


def write_checkpoint(path: Path, shape: TinyShape = TinyShape(), seed: int = 0) -> Path:
    """Write an unquantized (bf16) HF-format Llama 4 checkpoint into ``path``."""
    import mlx.core as mx
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = _build_tokenizer(shape.base_vocab)
    n_tokens = tok.get_vocab_size(with_added_tokens=True)
    vocab = -(-n_tokens // 64) * 64  # padded like the real 202,048
    ids = {t: shape.base_vocab + i for i, t in enumerate(LLAMA4_SPECIAL_TOKENS)}

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot|>",
        pad_token="<|finetune_right_pad|>",
        model_max_length=10485760,
    )
    fast.chat_template = LLAMA4_CHAT_TEMPLATE
    fast.save_pretrained(str(path))
    tc_path = path / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["chat_template"] = LLAMA4_CHAT_TEMPLATE
    tc_path.write_text(json.dumps(tc, indent=2))
    (path / "chat_template.jinja").unlink(missing_ok=True)

    s = shape
    no_rope = [0 if (i + 1) % 4 == 0 else 1 for i in range(s.layers)]
    moe_layers = [i for i in range(s.layers) if i % s.moe_step == s.moe_step - 1]
    eos = [ids["<|end_of_text|>"], ids["<|eom|>"], ids["<|eot|>"]]
    text_config = {
        "model_type": "llama4_text",
        "hidden_size": s.hidden,
        "intermediate_size": s.expert_intermediate,
        "intermediate_size_mlp": s.dense_intermediate,
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads,
        "head_dim": s.head_dim,
        "num_local_experts": s.experts,
        "num_experts_per_tok": 1,
        "interleave_moe_layer_step": s.moe_step,
        "moe_layers": moe_layers,
        "no_rope_layers": no_rope,
        "attention_chunk_size": s.chunk,
        "use_qk_norm": True,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 16.0,
            "high_freq_factor": 1.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "vocab_size": vocab,
        "bos_token_id": ids["<|begin_of_text|>"],
        "eos_token_id": eos,
        "pad_token_id": ids["<|finetune_right_pad|>"],
        "max_position_embeddings": 10485760,
        "attn_temperature_tuning": True,
        "floor_scale": 8192,
        "attn_scale": 0.1,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    patches = (s.tile // 14) ** 2
    vision_config = {
        "model_type": "llama4_vision_model",
        "hidden_size": s.vision_hidden,
        "intermediate_size": 4 * s.vision_hidden,
        "num_hidden_layers": s.vision_layers,
        "num_attention_heads": s.vision_heads,
        "image_size": s.tile,
        "patch_size": 14,
        "num_channels": 3,
        "norm_eps": 1e-5,
        "pixel_shuffle_ratio": 0.5,
        "projector_input_dim": s.vision_out,
        "projector_output_dim": s.vision_out,
        "projector_dropout": 0.0,
        "vision_output_dim": s.vision_out,
        "rope_theta": 10000,
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "default",
        "initializer_range": 0.02,
        "hidden_act": "gelu",
        "multi_modal_projector_bias": False,
    }
    config = {
        "architectures": ["Llama4ForConditionalGeneration"],
        "model_type": "llama4",
        "text_config": text_config,
        "vision_config": vision_config,
        "boi_token_index": ids["<|image_start|>"],
        "eoi_token_index": ids["<|image_end|>"],
        "image_token_index": ids["<|patch|>"],
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "generation_config.json").write_text(
        json.dumps(
            {"bos_token_id": ids["<|begin_of_text|>"], "eos_token_id": eos,
             "pad_token_id": ids["<|finetune_right_pad|>"], "temperature": 0.6, "top_p": 0.9}
        )
    )
    (path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "Llama4ImageProcessorFast",
                "do_convert_rgb": True,
                "do_normalize": True,
                "do_rescale": True,
                "do_resize": True,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
                "max_patches": s.max_patches,
                "resample": 2,
                "rescale_factor": 1 / 255,
                "resize_to_max_canvas": False,
                "size": {"height": s.tile, "width": s.tile},
            },
            indent=2,
        )
    )
    (path / "processor_config.json").write_text(
        json.dumps(
            {"processor_class": "Llama4Processor", "patch_size": 14,
             "fake_image_token": "<|image|>", "image_token": "<|image|>"},
            indent=2,
        )
    )

    rng = np.random.default_rng(seed)

    def w(*shp, scale=None):
        scale = scale if scale is not None else 1.0 / np.sqrt(shp[-1])
        return rng.standard_normal(shp).astype(np.float32) * scale

    t: dict[str, np.ndarray] = {}
    lm = "language_model.model"
    t[f"{lm}.embed_tokens.weight"] = w(vocab, s.hidden, scale=1.0)
    for i in range(s.layers):
        p = f"{lm}.layers.{i}"
        t[f"{p}.self_attn.q_proj.weight"] = w(s.heads * s.head_dim, s.hidden)
        t[f"{p}.self_attn.k_proj.weight"] = w(s.kv_heads * s.head_dim, s.hidden)
        t[f"{p}.self_attn.v_proj.weight"] = w(s.kv_heads * s.head_dim, s.hidden)
        t[f"{p}.self_attn.o_proj.weight"] = w(s.hidden, s.heads * s.head_dim)
        t[f"{p}.input_layernorm.weight"] = np.ones(s.hidden, np.float32)
        t[f"{p}.post_attention_layernorm.weight"] = np.ones(s.hidden, np.float32)
        if i in moe_layers:
            f = f"{p}.feed_forward"
            t[f"{f}.router.weight"] = w(s.experts, s.hidden)
            t[f"{f}.experts.gate_up_proj"] = w(s.experts, s.hidden, 2 * s.expert_intermediate,
                                               scale=1 / np.sqrt(s.hidden))
            t[f"{f}.experts.down_proj"] = w(s.experts, s.expert_intermediate, s.hidden,
                                            scale=1 / np.sqrt(s.expert_intermediate))
            for name, shp in (("gate_proj", (s.expert_intermediate, s.hidden)),
                              ("up_proj", (s.expert_intermediate, s.hidden)),
                              ("down_proj", (s.hidden, s.expert_intermediate))):
                t[f"{f}.shared_expert.{name}.weight"] = w(*shp)
        else:
            f = f"{p}.feed_forward"
            t[f"{f}.gate_proj.weight"] = w(s.dense_intermediate, s.hidden)
            t[f"{f}.up_proj.weight"] = w(s.dense_intermediate, s.hidden)
            t[f"{f}.down_proj.weight"] = w(s.hidden, s.dense_intermediate)
    t[f"{lm}.norm.weight"] = np.ones(s.hidden, np.float32)
    head = w(vocab, s.hidden)
    head[n_tokens:] = 0.0  # rows past the tokenizer's vocabulary
    # A random model would end its turn at random; zeroed end-of-turn rows almost never win,
    # so answers run to their token limit and tests know how long they are.
    head[eos] = 0.0
    t["language_model.lm_head.weight"] = head

    vm, vh = "vision_model", s.vision_hidden
    t[f"{vm}.class_embedding"] = w(vh, scale=vh**-0.5)
    t[f"{vm}.positional_embedding_vlm"] = w(patches + 1, vh, scale=vh**-0.5)
    t[f"{vm}.patch_embedding.linear.weight"] = w(vh, 3 * 14 * 14)
    for name in ("layernorm_pre", "layernorm_post"):
        t[f"{vm}.{name}.weight"] = np.ones(vh, np.float32)
        t[f"{vm}.{name}.bias"] = np.zeros(vh, np.float32)
    for i in range(s.vision_layers):
        p = f"{vm}.model.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            t[f"{p}.self_attn.{proj}.weight"] = w(vh, vh)
            t[f"{p}.self_attn.{proj}.bias"] = np.zeros(vh, np.float32)
        t[f"{p}.mlp.fc1.weight"] = w(4 * vh, vh)
        t[f"{p}.mlp.fc1.bias"] = np.zeros(4 * vh, np.float32)
        t[f"{p}.mlp.fc2.weight"] = w(vh, 4 * vh)
        t[f"{p}.mlp.fc2.bias"] = np.zeros(vh, np.float32)
        for name in ("input_layernorm", "post_attention_layernorm"):
            t[f"{p}.{name}.weight"] = np.ones(vh, np.float32)
            t[f"{p}.{name}.bias"] = np.zeros(vh, np.float32)
    t[f"{vm}.vision_adapter.mlp.fc1.weight"] = w(s.vision_out, 4 * vh)
    t[f"{vm}.vision_adapter.mlp.fc2.weight"] = w(s.vision_out, s.vision_out)
    t["multi_modal_projector.linear_1.weight"] = w(s.hidden, s.vision_out)

    arrays = {k: mx.array(v).astype(mx.bfloat16) for k, v in t.items()}
    mx.save_safetensors(str(path / "model.safetensors"), arrays, metadata={"format": "pt"})
    return path


def quantize_checkpoint(src: Path, dst: Path, bits: int, group_size: int = 64) -> Path:
    """Make an MLX-quantized copy of ``src`` with mlx-vlm's converter (as mlx-community does)."""
    import contextlib
    import io

    from mlx_vlm.convert import convert

    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    with contextlib.redirect_stdout(io.StringIO()):
        convert(
            str(src),
            mlx_path=str(dst),
            quantize=True,
            q_bits=bits,
            q_group_size=group_size,
            trust_remote_code=False,
        )
    # The converter copies what it knows; keep the processor configs the app reads.
    for name in ("preprocessor_config.json", "processor_config.json", "generation_config.json"):
        if not (dst / name).exists():
            shutil.copy(Path(src) / name, dst / name)
    return dst
