"""``llama-desk models fit`` on hostile configs (issue 23): a missing key, a wrong type, a
zero or negative size, a string for a number, a null section, JSON that is not an object, or
a billion layers is refused in one line naming the key, with a non-zero exit, and no
traceback; the work stays bounded (the layer count is capped)."""

from __future__ import annotations

import copy
import json

import pytest

from desktop.cli.main import main
from models.memory.catalog_configs import scout_config
from models.memory.model_layout import MAX_LAYERS


def text(**changes) -> dict:
    config = scout_config(4)
    config["text_config"].update(changes)
    return config


def vision(**changes) -> dict:
    config = scout_config(4)
    config["vision_config"].update(changes)
    return config


def top(**changes) -> dict:
    config = scout_config(4)
    config.update(changes)
    return config


def missing(section: str, key: str) -> dict:
    config = copy.deepcopy(scout_config(4))
    del config[section][key]
    return config


def fit(capsys, tmp_path, config) -> tuple[int, str, str]:
    body = config if isinstance(config, str) else json.dumps(config)
    (tmp_path / "config.json").write_text(body)
    code = main(["models", "fit", str(tmp_path), "--budget-gb", "100", "--json"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "config, says",
    [
        # strings, lists, booleans and fractions for whole numbers
        (text(hidden_size="abc"), "text_config.hidden_size"),
        (text(hidden_size="5120"), "text_config.hidden_size"),
        (text(hidden_size=[5120]), "text_config.hidden_size"),
        (text(hidden_size=True), "text_config.hidden_size"),
        (text(hidden_size=5120.5), "text_config.hidden_size"),
        (text(hidden_size={"value": 5120}), "text_config.hidden_size"),
        ('{"model_type": "llama4", "text_config": {"hidden_size": Infinity}}', "text_config.hidden_size"),
        ('{"model_type": "llama4", "text_config": {"hidden_size": NaN}}', "text_config.hidden_size"),
        (top(quantization={"bits": "x", "group_size": 64}), "quantization.bits"),
        (vision(pixel_shuffle_ratio="x"), "vision_config.pixel_shuffle_ratio"),
        (vision(pixel_shuffle_ratio=float("nan")), "vision_config.pixel_shuffle_ratio"),
        # zero, negative and absurd sizes
        (text(num_attention_heads=0), "text_config.num_attention_heads"),
        (text(num_hidden_layers=0), "text_config.num_hidden_layers"),
        (text(num_hidden_layers=-3), "text_config.num_hidden_layers"),
        (text(hidden_size=-5120), "text_config.hidden_size"),
        (text(hidden_size=10**30), "text_config.hidden_size"),
        (text(attention_chunk_size=0), "text_config.attention_chunk_size"),
        (text(max_position_embeddings=0), "text_config.max_position_embeddings"),
        (text(num_local_experts=0), "text_config.num_local_experts"),
        (vision(patch_size=0), "vision_config.patch_size"),
        (top(quantization={"bits": 4, "group_size": 0}), "quantization.group_size"),
        # missing keys and sections that are not objects
        (missing("text_config", "hidden_size"), "hidden_size"),
        (missing("vision_config", "num_hidden_layers"), "num_hidden_layers"),
        (top(text_config=None), "not a Llama 4 model"),
        ("[1, 2]", "not hold a JSON object"),
        ('"llama4"', "not hold a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "config.json"),
    ],
)
def test_a_bad_config_is_one_line(capsys, tmp_path, config, says):
    code, out, err = fit(capsys, tmp_path, config)
    assert code != 0 and out == ""
    assert err.startswith("llama-desk: ") and err.count("\n") == 1, err
    assert says in err


@pytest.mark.timeout(60)  # guards a hang only: before the fix 10**9 layers looped for minutes
def test_a_billion_layers_are_refused_at_once(capsys, tmp_path):
    code, out, err = fit(capsys, tmp_path, text(num_hidden_layers=10**9))
    assert code != 0 and out == ""
    assert f"from 1 to {MAX_LAYERS:,}," in err and "text_config.num_hidden_layers" in err


def test_the_most_layers_allowed_still_plan(capsys, tmp_path):
    code, out, err = fit(capsys, tmp_path, text(num_hidden_layers=MAX_LAYERS))
    assert code == 0, err
    assert json.loads(out)["kv_bytes_per_token"] > 0


def test_whole_floats_are_numbers_still(capsys, tmp_path):
    """A config writing 5120.0 for 5120 (some converters do) plans as before."""
    code, out, err = fit(capsys, tmp_path, text(hidden_size=5120.0))
    assert code == 0, err
    assert json.loads(out)["weights_bytes"] > 0


@pytest.mark.parametrize("budget", ["1e300", "1e30"])
def test_an_absurd_budget_is_one_line(capsys, budget):
    code = main(["models", "fit", "mlx-community/Llama-4-Scout-17B-16E-Instruct-4bit", "--budget-gb", budget])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("llama-desk: --budget-gb must be") and err.count("\n") == 1
