"""``llama-desk models fit``: planning from a folder, a bare config, or a catalog repo id."""

from __future__ import annotations

import json
import shutil

import pytest

from desktop.cli.main import main
from models.memory.planner import plan_model

SCOUT_4BIT = "mlx-community/Llama-4-Scout-17B-16E-Instruct-4bit"
KEYS = {"weights_bytes", "kv_bytes_per_token", "peak_bytes", "max_context", "budget_bytes"}


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["models", "fit", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_json_for_a_checkpoint_folder(checkpoints, capsys):
    code, out, err = cli(
        capsys,
        str(checkpoints["4bit"]),
        "--context",
        "4096",
        "--budget-gb",
        "2",
        "--backend",
        "cpu",
        "--json",
    )
    assert code == 0, err
    figures = json.loads(out)
    assert KEYS <= figures.keys()
    plan = plan_model(checkpoints["4bit"], backend="cpu")
    assert figures["weights_bytes"] == plan.weights.total and figures["weights_source"] == "safetensors"
    assert figures["kv_bytes_per_token"] == plan.kv_bytes_per_token
    assert figures["budget_bytes"] == 2_000_000_000
    assert figures["peak_bytes"] == plan.peak_bytes(4096, figures["prefill_step"])
    assert figures["max_context"] == plan.max_context(2_000_000_000)
    assert figures["verdict"] == "fits" and figures["context"] == 4096


def test_kv_bits_shrink_the_cost_per_token(checkpoints, capsys):
    per_token = {}
    for bits in ("16", "8", "4"):
        code, out, err = cli(
            capsys,
            str(checkpoints["bf16"]),
            "--kv-bits",
            bits,
            "--budget-gb",
            "4",
            "--backend",
            "metal",
            "--json",
        )
        assert code == 0, err
        per_token[bits] = json.loads(out)["kv_bytes_per_token"]
    assert per_token["16"] > per_token["8"] > per_token["4"] > 0


def test_text_output(checkpoints, capsys):
    code, out, err = cli(
        capsys, str(checkpoints["4bit"]), "--context", "1000", "--budget-gb", "1", "--backend", "cpu"
    )
    assert code == 0, err
    for label in ("weights", "KV cache per token", "peak at 1,000 tokens", "largest context", "budget"):
        assert label in out
    assert "1.0 GB (--budget-gb" in out


def test_a_folder_with_only_a_config(checkpoints, tmp_path, capsys):
    shutil.copy(checkpoints["4bit"] / "config.json", tmp_path / "config.json")
    code, out, err = cli(capsys, str(tmp_path), "--budget-gb", "2", "--backend", "cpu", "--json")
    assert code == 0, err
    figures = json.loads(out)
    assert figures["weights_source"] == "estimated"
    assert figures["weights_bytes"] == plan_model(checkpoints["4bit"], backend="cpu").weights.total


def test_a_catalog_repo_that_is_not_downloaded(empty_hub_cache, capsys):
    code, out, err = cli(
        capsys, SCOUT_4BIT, "--context", "131072", "--budget-gb", "102", "--backend", "metal", "--json"
    )
    assert code == 0, err
    figures = json.loads(out)
    assert figures["weights_source"] == "estimated"
    assert 60e9 < figures["weights_bytes"] < 64e9
    assert figures["kv_bytes_per_token"] == 12 * 2 * 1024 * 2
    assert figures["verdict"] in ("fits", "tight") and figures["max_context"] > 131072


def test_every_catalog_variant_without_a_model(empty_hub_cache, capsys):
    code, out, err = cli(capsys, "--budget-gb", "102", "--backend", "metal", "--json")
    assert code == 0, err
    rows = {row["model"]: row for row in json.loads(out)}
    assert SCOUT_4BIT in rows
    maverick = rows["mlx-community/Llama-4-Maverick-17B-128E-Instruct-4bit"]
    assert maverick["verdict"] == "wont_fit" and maverick["max_context"] == 0


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["/no/such/folder"], 1, "does not exist"),
        (["someone/Unknown-Model-4bit"], 1, "not downloaded"),
        (["--context", "0"], 2, "--context"),
        (["--budget-gb", "-1"], 2, "--budget-gb"),
    ],
)
def test_errors_are_one_line(empty_hub_cache, capsys, args, status, message):
    code, out, err = cli(capsys, *args)
    assert code == status
    assert err.startswith("llama-desk: ") and message in err and err.count("\n") == 1
    assert out == ""


def test_a_folder_that_is_not_llama4(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    code, out, err = cli(capsys, str(tmp_path), "--budget-gb", "2")
    assert code == 1 and "not a Llama 4 model" in err


def test_the_budget_variable_plans_for_another_machine(empty_hub_cache, capsys, monkeypatch):
    # As in the window: LLAMA_DESK_MEMORY_BUDGET_GB plans every model against that many GB, for a Mac.
    monkeypatch.setenv("LLAMA_DESK_MEMORY_BUDGET_GB", "102.1")
    code, out, err = cli(capsys, SCOUT_4BIT, "--json")
    assert code == 0, err
    figures = json.loads(out)
    assert figures["budget_bytes"] == 102_100_000_000 and figures["app_bytes"] == 0
    assert figures["budget_source"] == "LLAMA_DESK_MEMORY_BUDGET_GB" and figures["backend"] == "metal"
    # --budget-gb wins over the variable; --backend still chooses the profile.
    code, out, err = cli(capsys, SCOUT_4BIT, "--budget-gb", "80", "--backend", "cuda", "--json")
    figures = json.loads(out)
    assert figures["budget_bytes"] == 80_000_000_000 and figures["budget_source"] == "--budget-gb"
    assert figures["backend"] == "cuda"
    code, out, err = cli(capsys, "--json")  # every catalog variant, against the same budget
    assert code == 0, err
    assert {row["budget_bytes"] for row in json.loads(out)} == {102_100_000_000}
    code, out, err = cli(capsys, SCOUT_4BIT)
    assert "102.1 GB (LLAMA_DESK_MEMORY_BUDGET_GB; metal backend)" in out


def test_budget_gb_alone_plans_for_a_mac(empty_hub_cache, capsys):
    code, out, err = cli(capsys, SCOUT_4BIT, "--budget-gb", "102.1", "--json")
    assert code == 0, err
    assert json.loads(out)["backend"] == "metal"


@pytest.mark.parametrize("value", ["lots", "0", "-5", "nan"])
def test_a_bad_budget_variable_is_one_line(empty_hub_cache, capsys, monkeypatch, value):
    monkeypatch.setenv("LLAMA_DESK_MEMORY_BUDGET_GB", value)
    code, out, err = cli(capsys, SCOUT_4BIT)
    assert code == 2 and out == ""
    assert err.startswith("llama-desk: LLAMA_DESK_MEMORY_BUDGET_GB must be a positive number")
    assert err.count("\n") == 1


def test_what_this_mac_measured_corrects_the_plan(checkpoints, capsys):
    from models.app_folders import write_json
    from models.memory.measured_peaks import PeakCorrections, model_identity

    path = str(checkpoints["4bit"])
    args = (path, "--context", "2048", "--budget-gb", "4", "--json")
    code, out, err = cli(capsys, *args)
    plain = json.loads(out)
    assert plain["measured_correction"] == 1.0
    write_json("measured_peaks.json", {"version": 1, "ratios": {f"metal|16|{model_identity(path)}": 1.5}})
    assert PeakCorrections({f"metal|16|{model_identity(path)}": 1.5}).ratio(path, None, "metal") == 1.5
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    corrected = json.loads(out)
    assert corrected["measured_correction"] == 1.5
    assert corrected["peak_bytes"] == pytest.approx(1.5 * plain["peak_bytes"], rel=1e-6)
    code, out, err = cli(capsys, *args[:-1])
    assert "measured here" in out and "1.50x the plan" in out
    # Learned on Metal, it does not apply to another backend.
    code, out, err = cli(capsys, *args, "--backend", "cpu")
    assert json.loads(out)["measured_correction"] == 1.0
