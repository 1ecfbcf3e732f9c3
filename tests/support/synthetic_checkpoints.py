"""Tiny Llama 4 checkpoints with random weights and the real on-disk format.

Tests and benchmarks cannot download Meta's weights, so they build checkpoints here, file for
file and key for key as an mlx-community Llama 4 repo: ``config.json`` is Meta's public Scout
config (``llama4-scout-config.json``, kept verbatim) with only its sizes shrunk (MoE with a
shared expert, NoPE on every 4th layer, chunked attention, QK-norm, the integer
``attn_temperature_tuning``; a vision tower with 14-px patches and pixel-shuffle 0.5); the
tensor names and shapes of transformers' ``Llama4ForConditionalGeneration`` (fused
``experts.gate_up_proj`` and ``experts.down_proj`` stored in x out, without a ``.weight``
suffix) in shards ``model-0000N-of-0000M.safetensors`` with their index; a byte-level BPE
``tokenizer.json`` carrying Llama 4's 2,048 special tokens in their real order, with
``tokenizer_config.json``, ``special_tokens_map.json`` and ``chat_template.json``; and the
generation, preprocessor and processor configs. ``quantize_checkpoint`` makes 4- and 8-bit MLX
copies with mlx-vlm's quantization, as mlx-community does.

Long because a real checkpoint has that many files: config, weights, tokenizer with its special
tokens, chat template and processor configs are each written here, file for file.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import shutil
from dataclasses import dataclass, replace
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
LLAMA4_CHAT_TEMPLATE = (
    """{{- bos_token }}
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
    {%- if tools is not none and not tools_in_user_message %}
        {{- "You have access to the following functions. To call"""
    """ a function, please respond with JSON for a function call." }}
        {{- 'Respond in the format {"name": function name, "parameters":"""
    """ dictionary of argument name and its value}.' }}
        {{- "Do not use variables.\\n\\n" }}
        {%- for t in tools %}
            {{- t | tojson(indent=4) }}
            {{- "\\n\\n" }}
        {%- endfor %}
    {%- endif %}
    {{- system_message }}
    {{- "<|eot|>" }}
{%- endif %}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user"""
    """ message when there's no first user message!") }}
{%- endif %}
    {{- '<|header_start|>user<|header_end|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters":"""
    """ dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot|>"}}
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
    {%- elif 'tool_calls' in message and message.tool_calls|length > 0 %}
       {{- '<|header_start|>assistant<|header_end|>\\n\\n' -}}
       {{- '<|python_start|>' }}
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
       {{- '<|python_end|>' }}
        {%- for tool_call in message.tool_calls %}
           {{- '{"name": "' + tool_call.function.name + '", ' }}
           {{- '"parameters": ' }}
           {{- tool_call.function.arguments | tojson }}
           {{- "}" }}
        {%- endfor %}
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
)

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


BENCH_SHAPE = {  # the benchmarks' model: big enough for speed to be measured, still CPU-sized
    "hidden": 256,
    "layers": 4,
    "heads": 4,
    "kv_heads": 2,
    "head_dim": 64,
    "experts": 4,
    "expert_intermediate": 256,
    "dense_intermediate": 512,
    "chunk": 8192,
    "moe_step": 2,
}


def bench_shape(**changes) -> TinyShape:
    """The benchmarks' ``TinyShape`` (``BENCH_SHAPE``), with ``changes``."""
    return replace(TinyShape(**BENCH_SHAPE), **changes)


@functools.lru_cache(maxsize=4)  # the same for every checkpoint of a vocabulary size
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


# Meta's public config.json of Llama 4 Scout 17B-16E, verbatim (mlx-community's conversions copy
# it and add ``quantization``/``quantization_config``). Tiny checkpoints start from it.
SCOUT_CONFIG = Path(__file__).with_name("llama4-scout-config.json")
_SCOUT_FIRST_SPECIAL_ID = 200000  # "<|begin_of_text|>" in the real vocabulary


# Where Llama-4-Scout-17B-16E-Instruct's config.json differs from the base release's.
INSTRUCT_TEXT_CONFIG = {
    "max_position_embeddings": 10485760,
    "rope_scaling": {
        "factor": 16.0,
        "high_freq_factor": 1.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
}


def scout_config() -> dict:
    """The public Scout ``config.json`` as a dict (a fresh copy on each call)."""
    return json.loads(SCOUT_CONFIG.read_text(encoding="utf-8"))


def tiny_config(shape: TinyShape, vocab: int) -> dict:
    """The Scout config with only its sizes shrunk to ``shape`` (and token ids moved to where the
    tiny vocabulary has them); every other key and value type is the real one."""
    s = shape
    config = scout_config()
    shift = s.base_vocab - _SCOUT_FIRST_SPECIAL_ID

    def moved(token_id):
        return [i + shift for i in token_id] if isinstance(token_id, list) else token_id + shift

    text = config["text_config"]
    # mlx-community converts the Instruct release, which differs from the base config in these two.
    text.update(INSTRUCT_TEXT_CONFIG)
    text.update(
        hidden_size=s.hidden,
        intermediate_size=s.expert_intermediate,
        intermediate_size_mlp=s.dense_intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        head_dim=s.head_dim,
        num_local_experts=s.experts,
        interleave_moe_layer_step=s.moe_step,
        moe_layers=[i for i in range(s.layers) if i % s.moe_step == s.moe_step - 1],
        no_rope_layers=[0 if (i + 1) % 4 == 0 else 1 for i in range(s.layers)],
        attention_chunk_size=s.chunk,
        vocab_size=vocab,
    )
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        text[key] = moved(text[key])
    for key in ("boi_token_index", "eoi_token_index", "image_token_index"):
        config[key] = moved(config[key])
    config["vision_config"].update(
        hidden_size=s.vision_hidden,
        intermediate_size=4 * s.vision_hidden,
        num_hidden_layers=s.vision_layers,
        num_attention_heads=s.vision_heads,
        image_size=s.tile,
        projector_input_dim=s.vision_out,
        projector_output_dim=s.vision_out,
        vision_output_dim=s.vision_out,
    )
    return config


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _special_token(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}


def _write_tokenizer_files(path: Path, tok, base_vocab: int) -> None:
    """tokenizer.json, tokenizer_config.json, special_tokens_map.json and chat_template.json, as
    the Llama 4 Instruct repos carry them."""
    tok.save(str(path / "tokenizer.json"))
    special = {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot|>",
        "pad_token": "<|finetune_right_pad|>",
    }
    added = {
        str(base_vocab + i): {**_special_token(token), "special": True}
        for i, token in enumerate(LLAMA4_SPECIAL_TOKENS)
    }
    _write_json(
        path / "tokenizer_config.json",
        {
            "added_tokens_decoder": added,
            **special,
            "chat_template": LLAMA4_CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "extra_special_tokens": {},
            "model_input_names": ["input_ids", "attention_mask"],
            "model_max_length": 10485760,
            "processor_class": "Llama4Processor",
            "tokenizer_class": "PreTrainedTokenizerFast",
        },
    )
    _write_json(
        path / "special_tokens_map.json", {key: _special_token(value) for key, value in special.items()}
    )
    _write_json(path / "chat_template.json", {"chat_template": LLAMA4_CHAT_TEMPLATE})


def _write_processor_files(path: Path, config: dict, max_patches: int) -> None:
    """generation_config.json, preprocessor_config.json and processor_config.json."""
    text = config["text_config"]
    tile = config["vision_config"]["image_size"]
    _write_json(
        path / "generation_config.json",
        {
            "bos_token_id": text["bos_token_id"],
            "do_sample": True,
            "eos_token_id": text["eos_token_id"],
            "pad_token_id": text["pad_token_id"],
            "temperature": 0.6,
            "top_p": 0.9,
            "transformers_version": config["transformers_version"],
        },
    )
    _write_json(
        path / "preprocessor_config.json",
        {
            "crop_size": None,
            "data_format": "channels_first",
            "default_to_square": True,
            "device": None,
            "do_center_crop": None,
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "Llama4ImageProcessorFast",
            "image_std": [0.5, 0.5, 0.5],
            "input_data_format": None,
            "max_patches": max_patches,
            "processor_class": "Llama4Processor",
            "resample": 2,
            "rescale_factor": 1 / 255,
            "resize_to_max_canvas": False,
            "return_tensors": None,
            "size": {"height": tile, "width": tile},
        },
    )
    _write_json(
        path / "processor_config.json",
        {
            "fake_image_token": "<|image|>",
            "image_token": "<|image|>",
            "patch_size": config["vision_config"]["patch_size"],
            "processor_class": "Llama4Processor",
        },
    )


def _write_shards(path: Path, arrays: dict, metadata: dict) -> None:
    """Weights in two files named as the real ones, with their index. Like MLX's converter,
    which fills each shard up to a size cap, the first file holds most of the bytes (about
    90 %, in name order) and the second the rest."""
    import mlx.core as mx

    names = sorted(arrays)
    total = sum(array.nbytes for array in arrays.values())
    parts: list[dict] = [{}, {}]
    filled = 0
    for name in names:
        first = filled < 0.9 * total and name != names[-1]
        parts[0 if first else 1][name] = arrays[name]
        if first:
            filled += arrays[name].nbytes
    weight_map = {}
    for number, part in enumerate(parts, start=1):
        shard = f"model-{number:05d}-of-{len(parts):05d}.safetensors"
        mx.save_safetensors(str(path / shard), part, metadata=metadata)
        weight_map.update(dict.fromkeys(part, shard))
    _write_json(
        path / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
    )


def write_checkpoint(path: Path, shape: TinyShape = TinyShape(), seed: int = 0) -> Path:
    """Write an unquantized (bf16) HF-format Llama 4 checkpoint into ``path``: Meta's files and
    keys, the Scout config with its sizes shrunk to ``shape``, random weights."""
    import mlx.core as mx

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    s = shape
    tok = _build_tokenizer(s.base_vocab)
    n_tokens = tok.get_vocab_size(with_added_tokens=True)
    vocab = -(-n_tokens // 64) * 64  # padded like the real 202,048
    config = tiny_config(s, vocab)
    text = config["text_config"]
    moe_layers = text["moe_layers"]
    eos = text["eos_token_id"]
    patches = (s.tile // config["vision_config"]["patch_size"]) ** 2
    _write_json(path / "config.json", config)
    _write_tokenizer_files(path, tok, s.base_vocab)
    _write_processor_files(path, config, s.max_patches)

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
            t[f"{f}.experts.gate_up_proj"] = w(
                s.experts, s.hidden, 2 * s.expert_intermediate, scale=1 / np.sqrt(s.hidden)
            )
            t[f"{f}.experts.down_proj"] = w(
                s.experts, s.expert_intermediate, s.hidden, scale=1 / np.sqrt(s.expert_intermediate)
            )
            for name, shp in (
                ("gate_proj", (s.expert_intermediate, s.hidden)),
                ("up_proj", (s.expert_intermediate, s.hidden)),
                ("down_proj", (s.hidden, s.expert_intermediate)),
            ):
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
    _write_shards(path, arrays, {"format": "pt"})
    return path


def quantize_checkpoint(src: Path, dst: Path, bits: int, group_size: int = 64) -> Path:
    """Make an MLX-quantized copy of ``src`` as mlx-community's conversions are: mlx-vlm's
    quantization of the language model (the vision tower and projector stay bf16), sharded MLX
    weights, the source config plus ``quantization``/``quantization_config``, and every other
    file copied unchanged. Unlike mlx-vlm's ``convert`` this never loads a transformers
    processor, which needs PyTorch for Llama 4."""
    from mlx.utils import tree_flatten
    from mlx_vlm.quant_utils import quantize_model
    from mlx_vlm.utils import load_model, skip_multimodal_module

    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    model = load_model(src, lazy=True)
    model_predicate = getattr(model, "quant_predicate", None)

    def should_quantize(module_path: str, module) -> bool | dict:
        if skip_multimodal_module(module_path):
            return False
        return model_predicate(module_path, module) if model_predicate else True

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its bits per weight
        model, _ = quantize_model(model, dict(config), group_size, bits, quant_predicate=should_quantize)
    _write_shards(dst, dict(tree_flatten(model.parameters())), {"format": "mlx"})
    quantization = {"group_size": group_size, "bits": bits}
    _write_json(
        dst / "config.json", {**config, "quantization": quantization, "quantization_config": quantization}
    )
    for item in src.iterdir():
        if item.suffix != ".safetensors" and item.name not in ("config.json", "model.safetensors.index.json"):
            shutil.copy(item, dst / item.name)
    (dst / "README.md").write_text(
        f"# {dst.name}\n\nA tiny synthesized Llama 4 checkpoint, {bits}-bit MLX, for tests.\n",
        encoding="utf-8",
    )
    return dst
