"""The engine's precision on MLX's CPU backend: float32 for every checkpoint's float tensors."""

import mlx.core as mx


def test_quantized_checkpoint_runs_in_float32_on_the_cpu(engine_4bit):
    """MLX's CPU backend emulates bf16, so a quantized checkpoint's scales, biases, norms and
    activations run in float32 there (its packed weights stay uint32); other backends keep bf16."""
    from mlx.utils import tree_flatten

    assert mx.default_device() == mx.cpu
    text = engine_4bit.model.language_model
    q_proj = text.model.layers[0].self_attn.q_proj
    assert q_proj.weight.dtype == mx.uint32
    assert q_proj.scales.dtype == mx.float32 and q_proj.biases.dtype == mx.float32
    floats = {v.dtype for _, v in tree_flatten(engine_4bit.model.parameters()) if v.dtype != mx.uint32}
    assert floats == {mx.float32}
    logits = text(mx.array([[1, 2, 3]]))
    logits = getattr(logits, "logits", logits)
    assert logits.dtype == mx.float32
