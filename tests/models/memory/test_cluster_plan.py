"""Each rank's planned share of a model split over a pipeline (``plan_cluster``): every rank is
one machine running its slice, so its weights follow its own layers (MoE or dense), its KV cache
its own chunked and global layers, and its working memory is a whole machine's, not a fraction."""

from dataclasses import replace

import pytest

from models.memory.cluster_plan import plan_cluster, rank_weight_bytes, split_layers
from models.memory.planner import maverick_config, plan_from_config, scout_config
from models.memory.weight_bytes import layer_weight_bytes, vocab_matrix_bytes

MAC = int(102.1e9)
CONTEXT = 32768


def _maverick(backend: str = "metal"):
    return plan_from_config(maverick_config(4), "maverick-4bit", backend=backend)


def _scout(backend: str = "metal"):
    return plan_from_config(scout_config(4), "scout-4bit", backend=backend)


def test_a_slice_keeps_each_layers_kind_from_the_whole_model():
    layout = _maverick().layout
    part = layout.slice(30, 39)
    assert part.layers == 9 and part.vision is None
    for i in range(part.layers):
        assert part.is_moe(i) == layout.is_moe(30 + i)
        assert part.is_chunked(i) == layout.is_chunked(30 + i)
    assert layout.slice(0, 16, vision=True).vision == layout.vision
    assert part.slice(1, 3).first_layer == 31
    with pytest.raises(ValueError):
        layout.slice(40, 49)


def test_rank_weights_follow_their_moe_layers_and_add_up_to_the_model():
    plan = _maverick()
    split = split_layers(48, [1] * 5)
    assert split[3:] == [(30, 39), (39, 48)]  # 9 layers each: 4 MoE layers, then 5
    weights = rank_weight_bytes(plan, split)
    layers = layer_weight_bytes(plan.layout)
    head = vocab_matrix_bytes(plan.layout) + 2 * plan.layout.hidden
    assert weights[3] == pytest.approx(sum(layers[30:39]), rel=1e-6)
    assert weights[4] - head == pytest.approx(sum(layers[39:48]), rel=1e-6)
    # One more MoE layer: far more than a per-layer average would give the last rank.
    assert weights[4] - head > weights[3] * 1.15
    assert sum(weights) == pytest.approx(plan.weights.total, rel=1e-6)
    assert weights[0] > plan.weights.vision + vocab_matrix_bytes(plan.layout)


def test_rank_weights_scale_to_the_checkpoints_own_bytes():
    plan = _scout()
    doubled = replace(
        plan,
        weights=replace(
            plan.weights,
            total=plan.weights.language * 2 + plan.weights.vision,
            language=plan.weights.language * 2,
        ),
    )
    split = [(0, 24), (24, 48)]
    base, scaled = rank_weight_bytes(plan, split), rank_weight_bytes(doubled, split)
    assert scaled[1] == pytest.approx(2 * base[1], rel=1e-6)
    assert scaled[0] - plan.weights.vision == pytest.approx(2 * (base[0] - plan.weights.vision), rel=1e-6)


def test_every_rank_plans_a_whole_machines_working_memory():
    plan = _scout()
    whole_working = plan.peak_bytes(CONTEXT) - plan.weights.total - plan.kv_cache_bytes(CONTEXT)
    for ranks in (2, 3):
        cluster = plan_cluster(plan, [MAC] * ranks, CONTEXT)
        for share in cluster.ranks:
            working = share.peak_bytes - share.weights_bytes - share.kv_bytes
            # The backend's fixed working set and the activations of the layers in flight are
            # each machine's own: not divided by the number of ranks.
            assert working > plan.profile.fixed_bytes + plan.profile.layers_in_flight * (
                plan.activation_bytes_per_token() * 512
            )
            # Only the terms that follow the cache shrink with fewer layers.
            assert 0.5 * whole_working < working <= whole_working * 1.01


def test_a_rank_with_few_layers_has_no_more_layers_in_flight_than_it_runs():
    plan = _scout()  # the GPU profile: 14.7 layers in flight on one machine
    many = plan_cluster(plan, [MAC] * 6, 4096, 512).ranks[1]  # 8 layers
    few = plan_cluster(plan, [MAC] * 16, 4096, 512).ranks[1]  # 3 layers
    act = plan.activation_bytes_per_token() * 512
    working_many = many.peak_bytes - many.weights_bytes - many.kv_bytes
    working_few = few.peak_bytes - few.weights_bytes - few.kv_bytes
    assert working_many - working_few > 4.5 * act  # at least 8 - 3 layers' intermediates apart


def test_kv_cache_follows_each_ranks_global_layers():
    plan = _scout()
    split = split_layers(48, [1] * 5)
    assert split[:2] == [(0, 10), (10, 20)]  # global layers 3, 7 / 11, 15, 19
    cluster = plan_cluster(plan, [MAC] * 5, 131072)
    assert cluster.ranks[1].kv_bytes > cluster.ranks[0].kv_bytes * 1.3
    assert sum(r.kv_bytes for r in cluster.ranks) == pytest.approx(plan.kv_cache_bytes(131072), rel=1e-6)


def test_rank_zero_plans_the_image_it_encodes():
    plan = _scout("cpu")
    plain = plan_cluster(plan, [MAC] * 2, 256, 512)
    imaged = plan_cluster(plan, [MAC] * 2, 256, 512, image_tiles=17)
    assert imaged.ranks[1] == plain.ranks[1]
    rank0 = imaged.ranks[0]
    assert rank0.peak_bytes >= rank0.weights_bytes + 17 * plan.vision_bytes_per_tile()
    assert rank0.peak_bytes > plain.ranks[0].peak_bytes


def test_a_pipeline_rank_runs_its_last_global_layer():
    plan = _scout("cpu")  # unfused attention: a running global layer's scores span the context
    layout = plan.layout.slice(0, 4)  # layer 3, global, is the slice's last
    alone = replace(plan, layout=layout)
    stage = replace(alone, pipeline_stage=True)
    cached = 16384
    extra = stage.prefill_transient_bytes(512, cached) - alone.prefill_transient_bytes(512, cached)
    heads = plan.layout.heads
    chunk = min(cached, layout.chunk) + 512
    assert extra >= plan.profile.score_copies * heads * 512 * (cached + 512 - chunk) * plan.activation_bytes
