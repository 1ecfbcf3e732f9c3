"""Loading a checkpoint's model and tokenizer, and correcting mlx-vlm's Llama 4 vision tower.

``load_model_and_tokenizer`` reads the weights with mlx-vlm, applies ``fix_vision_tower`` (the
exact GELU of the reference, and the patch embedding's unfold as one reshape), on MLX's CPU
backend casts the float parameters to float32 (quantized weights stay packed), and loads the
tokenizer without transformers validating the model config (``load_tokenizer``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from models.inference.checkpoint import Checkpoint
from models.inference.loading_imports import import_loading_stack
from models.inference.tokenizer_guard import tokenizer_call


def _fast_unfold(module, pixel_values):
    """``Llama4UnfoldConvolution.unfold`` as one reshape: (B, C, H, W) -> (B, C*p*p, L)."""
    batch, channels, height, width = pixel_values.shape
    p = module.kernel_size[0]
    rows, cols = height // p, width // p
    x = pixel_values[:, :, : rows * p, : cols * p]
    x = x.reshape(batch, channels, rows, p, cols, p).transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(batch, channels * p * p, rows * cols)


def fix_vision_tower(model) -> None:
    """Correct mlx-vlm's Llama 4 vision tower on a loaded model (see the module docstring)."""
    import types

    import mlx.nn as nn
    from mlx_vlm.models.llama4.vision import Llama4UnfoldConvolution, Llama4VisionMLP

    for _, module in model.vision_model.named_modules():
        if isinstance(module, Llama4VisionMLP):
            module.activation_fn = nn.GELU()  # exact erf GELU, as the reference's "gelu"
        elif isinstance(module, Llama4UnfoldConvolution):
            module.unfold = types.MethodType(_fast_unfold, module)  # type: ignore[method-assign]


class ProgressRaised(Exception):
    """Carries an exception raised by a load's progress callback past the load's handler."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line of at most ``limit`` characters (its type when it is silent)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def free_memory() -> None:
    """Collect what Python no longer holds, then hand MLX's cached buffers back to the system."""
    import gc
    import sys

    gc.collect()
    mx = sys.modules.get("mlx.core")
    if mx is not None:
        mx.clear_cache()


def _chat_template_file(path: Path) -> str | None:
    """The chat template a checkpoint keeps outside ``tokenizer_config.json``, if any (read
    under the folder's file limits)."""
    from models.inference.folder_files import read_folder_file, read_folder_json

    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return read_folder_file(jinja).decode("utf-8")
    stored = path / "chat_template.json"
    if stored.is_file():
        template = read_folder_json(stored).get("chat_template")
        return template if isinstance(template, str) else None
    return None


def load_tokenizer(checkpoint: Checkpoint):
    """mlx-lm's ``TokenizerWrapper`` for a checkpoint, without transformers parsing its model
    config: ``AutoTokenizer`` otherwise validates ``config.json`` against its own model
    classes, and a real Llama 4 config (an integer ``attn_temperature_tuning``) fails that
    validation although the tokenizer needs none of it. A neutral config stands in, so the
    tokenizer class comes from ``tokenizer_config.json``."""
    import transformers
    from mlx_lm.tokenizer_utils import load as load_wrapper

    neutral = getattr(transformers, "PreTrainedConfig", None) or transformers.PretrainedConfig
    text = checkpoint.config["text_config"]
    eos = text.get("eos_token_id") or checkpoint.config.get("eos_token_id")
    with tokenizer_call("loading"):  # a panic on a malformed tokenizer.json is one line
        wrapper = load_wrapper(
            checkpoint.path, tokenizer_config_extra={"config": neutral()}, eos_token_ids=eos
        )
        if getattr(wrapper._tokenizer, "chat_template", None) is None:
            wrapper._tokenizer.chat_template = _chat_template_file(checkpoint.path)
    return wrapper


def float32_on_cpu(model) -> None:
    """On MLX's CPU backend, cast a loaded model's float parameters to float32; elsewhere nothing.

    The CPU backend has no bf16 ``gather_mm`` for unquantized experts, and emulates bf16
    arithmetic elsewhere (a quantized matmul's cost then grows with its rows, which undoes
    batching). So every float parameter (a quantized layer's scales and biases, norms,
    unquantized matrices, the vision tower) becomes float32, and with them the activations and
    the KV cache; ``set_dtype``'s default predicate (floating dtypes only) leaves the packed
    uint32 weights alone. The memory planner counts the same (``WeightBytes.in_float32``)."""
    import mlx.core as mx

    if mx.default_device() == mx.cpu:
        model.set_dtype(mx.float32)


def load_model_and_tokenizer(checkpoint: Checkpoint, report: Callable[[str], None]):
    import_loading_stack()  # usually done at start-up; see models/inference/loading_imports.py
    import mlx.core as mx
    from mlx_vlm.utils import load_model

    report("Reading weights")
    model = load_model(checkpoint.path, lazy=False)
    fix_vision_tower(model)
    float32_on_cpu(model)
    report("Loading tokenizer")
    tokenizer = load_tokenizer(checkpoint)
    mx.eval(model.parameters())
    return model, tokenizer
