"""The configs of the catalog's Llama 4 variants (Scout and Maverick at a bit width), for planning
a model that is not downloaded."""

from __future__ import annotations


def _llama4_config(
    layers: int, experts: int, moe_step: int, max_context: int, bits: int | None, group_size: int = 64
) -> dict:
    text = {
        "model_type": "llama4_text",
        "hidden_size": 5120,
        "intermediate_size": 8192,
        "intermediate_size_mlp": 16384,
        "num_hidden_layers": layers,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "num_local_experts": experts,
        "num_experts_per_tok": 1,
        "interleave_moe_layer_step": moe_step,
        "attention_chunk_size": 8192,
        "vocab_size": 202048,
        "max_position_embeddings": max_context,
        "use_qk_norm": True,
        "rope_theta": 500000.0,
        "torch_dtype": "bfloat16",
    }
    vision = {
        "model_type": "llama4_vision_model",
        "hidden_size": 1408,
        "intermediate_size": 5632,
        "num_hidden_layers": 34,
        "num_attention_heads": 16,
        "image_size": 336,
        "patch_size": 14,
        "projector_input_dim": 4096,
        "projector_output_dim": 4096,
        "vision_output_dim": 4096,
        "pixel_shuffle_ratio": 0.5,
    }
    config = {
        "model_type": "llama4",
        "architectures": ["Llama4ForConditionalGeneration"],
        "text_config": text,
        "vision_config": vision,
        "torch_dtype": "bfloat16",
    }
    if bits:
        config["quantization"] = {"group_size": group_size, "bits": bits}
    return config


def scout_config(bits: int | None = 4, group_size: int = 64) -> dict:
    """Llama 4 Scout 17B-16E's config (all 48 layers MoE, 10M-token window), as mlx-community's."""
    return _llama4_config(48, 16, 1, 10_485_760, bits, group_size)


def maverick_config(bits: int | None = 4, group_size: int = 64) -> dict:
    """Llama 4 Maverick 17B-128E's config (MoE every other layer, 1M-token window)."""
    return _llama4_config(48, 128, 2, 1_048_576, bits, group_size)


def catalog_config(repo_id: str) -> dict | None:
    """The config of a Scout or Maverick repo named like ``...Scout-17B-16E-Instruct-4bit``; else None."""
    from models.hub.catalog import describe_repo

    entry = describe_repo(repo_id)  # the catalog's family and bits (guessed from the name if not listed)
    if entry.bits is not None and entry.bits not in (2, 3, 4, 5, 6, 8):
        return None
    if entry.family == "scout":
        return scout_config(entry.bits)
    if entry.family == "maverick":
        return maverick_config(entry.bits)
    return None


def estimated_download_bytes(repo_id: str) -> int | None:
    """What a Scout or Maverick repo's weights will occupy on disk, estimated from its config as
    the memory planner estimates them (so the menus, ``models list`` and ``models fit`` give one
    size before the Hub has said the real one); None for a repo without a catalog config."""
    from models.memory.model_layout import PlanError, layout_from_config
    from models.memory.weight_bytes import estimate_weights

    config = catalog_config(repo_id)
    if config is None:
        return None
    try:
        return estimate_weights(layout_from_config(config, repo_id)).total
    except PlanError:
        return None
