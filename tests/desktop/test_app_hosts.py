"""``llama-desk --hosts HOSTS.json``: the window's models load across a cluster."""

from __future__ import annotations

from desktop.app import _factory_for, _window_cluster, run_app


def test_without_hosts_the_window_loads_on_this_machine():
    assert _window_cluster(None) is None and _factory_for(None) is None


def test_a_host_file_gives_the_window_a_cluster_loader(tmp_path, monkeypatch):
    hosts = tmp_path / "hosts.json"
    hosts.write_text('[{"ssh": "127.0.0.1", "ips": ["127.0.0.1"]}, {"ssh": "mac-b", "ips": ["10.0.0.2"]}]')
    seen = {}
    monkeypatch.setattr(
        "models.distributed.load.load_engine",
        lambda path, cluster, progress=None: seen.update(path=path, hosts=[h.ssh for h in cluster.hosts]),
    )
    _factory_for(_window_cluster(str(hosts)))("/models/x", progress=None)  # as run_app makes it
    assert seen == {"path": "/models/x", "hosts": ["127.0.0.1", "mac-b"]}


def test_a_bad_host_file_is_one_line_before_any_window(tmp_path, capsys):
    hosts = tmp_path / "hosts.json"
    hosts.write_text('[{"ssh": "mac-b"}]')
    assert run_app(hosts=str(hosts)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mac-b" in err and "ips" in err


def test_ranks_gives_the_window_local_ranks_and_a_library_planned_across_them(qtbot, monkeypatch):
    from desktop.app import _library_for, _window_cluster

    monkeypatch.delenv("LLAMA_DESK_MEMORY_BUDGET_GB", raising=False)
    assert _window_cluster(None, None) is None and _window_cluster(None, 1) is None  # one rank: alone
    hosts = _window_cluster(None, 2)
    assert hosts.size == 2 and all(h.is_local for h in hosts.hosts)
    library = _library_for(hosts)
    assert library.cluster is hosts
    library.shutdown()
    assert _library_for(None) is None


def test_ranks_below_one_is_one_line_before_any_window(capsys):
    assert run_app(ranks=0) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--ranks" in err
