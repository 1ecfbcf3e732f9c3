"""``ModelLayout``'s layer counts in closed form agree with counting layer by layer, for whole
models and for every rank's slice (the planner no longer walks the layers: a config may claim
up to ``MAX_LAYERS`` of them)."""

from __future__ import annotations

import pytest

from models.memory.catalog_configs import maverick_config
from models.memory.model_layout import layout_from_config


@pytest.mark.parametrize("layers, moe_step", [(1, 1), (7, 2), (48, 1), (48, 2), (50, 3)])
def test_closed_form_counts_match_counting(layers, moe_step):
    config = maverick_config(4)
    config["text_config"].update(num_hidden_layers=layers, interleave_moe_layer_step=moe_step)
    whole = layout_from_config(config)
    for start in range(layers):
        for end in range(start + 1, layers + 1):
            part = whole.slice(start, end)
            assert part.chunked_layers == sum(part.is_chunked(i) for i in range(part.layers))
            assert part.moe_layers == sum(part.is_moe(i) for i in range(part.layers))
            for count in range(part.layers + 1):
                assert part.global_layers_among(count) == sum(not part.is_chunked(i) for i in range(count))
