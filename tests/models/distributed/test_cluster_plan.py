"""Host files, the layer split by budgets, and ``models fit --hosts`` (no model is loaded)."""

from __future__ import annotations

import json

import pytest

from desktop.cli.main import main
from models.distributed.hosts import HostFileError, host_file_from_json, local_hosts, ring_hostfile
from models.memory.cluster_plan import plan_cluster, split_layers
from models.memory.planner import catalog_config, plan_from_config

SCOUT_8BIT = "mlx-community/Llama-4-Scout-17B-16E-Instruct-8bit"
MAVERICK_4BIT = "mlx-community/Llama-4-Maverick-17B-128E-Instruct-4bit"
MAC_128GB = 102.1e9  # the README's budget of a 128 GB MacBook Pro


def test_split_is_contiguous_and_proportional_to_budgets():
    assert split_layers(48, [1, 1]) == [(0, 24), (24, 48)]
    assert split_layers(48, [1, 1, 1]) == [(0, 16), (16, 32), (32, 48)]
    assert split_layers(48, [128, 64]) == [(0, 32), (32, 48)]
    assert split_layers(6, [1, 1, 1]) == [(0, 2), (2, 4), (4, 6)]
    assert split_layers(4, [1, 1, 1]) == [(0, 2), (2, 3), (3, 4)]
    assert split_layers(3, [100, 1, 1]) == [(0, 1), (1, 2), (2, 3)]  # every rank gets a layer
    with pytest.raises(ValueError):
        split_layers(2, [1, 1, 1])


def test_host_files_in_mlx_launch_format():
    two = [{"ssh": "mac-a", "ips": ["10.0.0.1"]}, {"ssh": "mac-b", "ips": ["10.0.0.2"]}]
    listed = host_file_from_json(two)
    assert [h.ssh for h in listed.hosts] == ["mac-a", "mac-b"] and listed.shares() == [1.0, 1.0]
    wrapped = host_file_from_json(
        {
            "backend": "ring",
            "envs": ["MLX_METAL_FAST_SYNCH=1"],
            "hosts": [
                {"ssh": "mac-a", "ips": ["10.0.0.1"], "memory_gb": 102.1},
                {"ssh": "mac-b", "ips": ["10.0.0.2"], "memory_gb": 51.0},
            ],
        }
    )
    assert wrapped.envs == ("MLX_METAL_FAST_SYNCH=1",) and wrapped.shares() == [102.1, 51.0]
    assert json.loads(ring_hostfile(wrapped, [5000, 5001])) == [["10.0.0.1:5000"], ["10.0.0.2:5001"]]
    assert local_hosts(3).size == 3 and all(h.is_local for h in local_hosts(3).hosts)
    for bad, words in (
        ([], "list of hosts"),
        ([{"ips": ["10.0.0.1"]}], "ssh"),
        ([{"ssh": "mac-a"}], "ips"),
        ({"backend": "mpi", "hosts": [{"ssh": "a", "ips": ["1.2.3.4"]}]}, "ring"),
        ([{"ssh": "a", "ips": ["1.2.3.4"], "memory_gb": -1}], "memory_gb"),
    ):
        with pytest.raises(HostFileError, match=words):
            host_file_from_json(bad)


def test_scout_8bit_needs_two_macs_and_maverick_4bit_three():
    scout = plan_from_config(catalog_config(SCOUT_8BIT), SCOUT_8BIT)
    maverick = plan_from_config(catalog_config(MAVERICK_4BIT), MAVERICK_4BIT)
    assert scout.fit(32768, int(MAC_128GB)).verdict == "wont_fit"
    assert plan_cluster(scout, [int(MAC_128GB)] * 2, 32768).fits
    assert not plan_cluster(maverick, [int(MAC_128GB)] * 2, 32768).fits
    three = plan_cluster(maverick, [int(MAC_128GB)] * 3, 32768)
    assert three.fits and [r.layers for r in three.ranks] == [(0, 16), (16, 32), (32, 48)]
    # The shares add up to the whole model.
    assert sum(r.weights_bytes for r in three.ranks) == pytest.approx(maverick.weights.total, rel=0.01)


def test_models_fit_hosts(tmp_path, capsys):
    hosts = tmp_path / "hosts.json"
    hosts.write_text(json.dumps([{"ssh": f"mac-{c}", "ips": [f"10.0.0.{i}"]} for i, c in enumerate("ab")]))
    assert main(["models", "fit", SCOUT_8BIT, "--hosts", str(hosts), "--budget-gb", "102.1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fits"] and not out["fits_one_machine"]
    assert [r["host"] for r in out["ranks"]] == ["mac-a", "mac-b"]
    assert [r["layers"] for r in out["ranks"]] == [[0, 24], [24, 48]]
    assert main(["models", "fit", SCOUT_8BIT, "--hosts", str(hosts), "--budget-gb", "102.1"]) == 0
    text = capsys.readouterr().out
    assert "rank 1 mac-b (10.0.0.1): layers 24-47" in text
    assert "Fits across the cluster; it does not fit one machine." in text
    hosts.write_text("[")
    assert main(["models", "fit", SCOUT_8BIT, "--hosts", str(hosts)]) != 0
    assert "not JSON" in capsys.readouterr().err
