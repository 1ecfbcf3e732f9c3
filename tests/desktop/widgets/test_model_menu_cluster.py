"""With ``--hosts``/``--ranks``, the Model menu shows a model that fits only across the cluster
as such ("fits on 2 Macs"), and choosing it loads it without asking (across the cluster)."""

from __future__ import annotations

from desktop.controllers.fit_badge import FitBadge
from desktop.controllers.model_library import ModelLibrary
from desktop.widgets.model_menu import ModelMenu
from models.distributed.hosts import host_file_from_json, local_hosts
from models.hub.catalog import add_user_model
from models.memory.budget import mac_budget
from tests.support.window_helpers import make_window, wait_listed

TWO_MACS = [{"ssh": "mac-a", "ips": ["10.0.0.1"]}, {"ssh": "mac-b", "ips": ["10.0.0.2"]}]


def _entry(menu: ModelMenu, name: str, bits: int):
    menu.rebuild()
    row = next(
        row for row in menu.library.listings if name in row.entry.display_name and row.entry.bits == bits
    )
    action = next(a for a in menu.actions() if a.text().startswith(row.entry.display_name + "  ·"))
    return row, action


def _library(qtbot, hosts) -> ModelLibrary:
    library = ModelLibrary(budget=mac_budget(128))  # a 128 GB MacBook Pro
    wait_listed(qtbot, library, lambda: bool(library.listings))
    if hosts is not None:
        with qtbot.waitSignal(library.changed, timeout=5_000):
            library.set_cluster(hosts)
    return library


def test_scout_8bit_fits_on_two_macs_and_maverick_still_wont(qtbot):
    alone = _library(qtbot, None)
    menu = ModelMenu(alone)
    qtbot.addWidget(menu)
    _, action = _entry(menu, "Scout", 8)
    assert action.text().endswith("won't fit") and "Macs" not in action.toolTip()
    alone.shutdown()

    library = _library(qtbot, host_file_from_json(TWO_MACS))
    menu = ModelMenu(library)
    qtbot.addWidget(menu)
    scout, action = _entry(menu, "Scout", 8)
    assert action.text().endswith("fits on 2 Macs")
    assert library.fit(scout).verdict == "cluster"
    tip = action.toolTip()
    assert "Fits across 2 Macs: rank " in tip and "This machine alone: " in tip
    _, small = _entry(menu, "Scout", 4)
    assert small.text().endswith("fits")  # what fits one Mac keeps its own badge
    _, maverick = _entry(menu, "Maverick", 4)
    assert maverick.text().endswith("won't fit") and "Won't fit across 2 Macs" in maverick.toolTip()
    library.shutdown()


def test_three_macs_fit_maverick_4bit_and_local_ranks_say_ranks(qtbot):
    library = _library(qtbot, host_file_from_json(TWO_MACS + [{"ssh": "mac-c", "ips": ["10.0.0.3"]}]))
    menu = ModelMenu(library)
    qtbot.addWidget(menu)
    _, maverick = _entry(menu, "Maverick", 4)
    assert maverick.text().endswith("fits on 3 Macs")
    library.set_cluster(local_hosts(2))
    _, scout = _entry(menu, "Scout", 8)
    assert scout.text().endswith("fits on 2 ranks") and "ranks on this machine" in scout.toolTip()
    library.shutdown()


def test_choosing_a_model_that_fits_only_across_the_cluster_loads_it_without_asking(
    qtbot, tmp_path, checkpoints, monkeypatch, fake_engines
):
    add_user_model(str(checkpoints["4bit"]))
    library = ModelLibrary()
    # The tiny model fits one machine; say what the planner says of one that fits only across two.
    monkeypatch.setattr(library, "fit", lambda listing: FitBadge("cluster", "Fits across 2 Macs."))
    window = make_window(qtbot, tmp_path, library, engine_factory=fake_engines)
    wait_listed(qtbot, library, lambda: len(library.runnable()) == 1)
    asked = []
    monkeypatch.setattr(window, "_confirm_load_anyway", lambda name, detail: asked.append(detail))
    with qtbot.waitSignal(window.model_ready, timeout=60_000):
        window.use_model(library.runnable()[0])
    assert asked == [] and fake_engines.last is not None
    window.close()
