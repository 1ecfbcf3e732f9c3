"""``llama-desk --hosts HOSTS.json``: the window's models load across a cluster."""

from __future__ import annotations

from desktop.app import _cluster_factory, run_app


def test_without_hosts_the_window_loads_on_this_machine():
    assert _cluster_factory(None) is None


def test_a_host_file_gives_the_window_a_cluster_loader(tmp_path, monkeypatch):
    hosts = tmp_path / "hosts.json"
    hosts.write_text('[{"ssh": "127.0.0.1", "ips": ["127.0.0.1"]}, {"ssh": "mac-b", "ips": ["10.0.0.2"]}]')
    seen = {}
    monkeypatch.setattr(
        "models.distributed.load.load_engine",
        lambda path, cluster, progress=None: seen.update(path=path, hosts=[h.ssh for h in cluster.hosts]),
    )
    _cluster_factory(str(hosts))("/models/x", progress=None)
    assert seen == {"path": "/models/x", "hosts": ["127.0.0.1", "mac-b"]}


def test_a_bad_host_file_is_one_line_before_any_window(tmp_path, capsys):
    hosts = tmp_path / "hosts.json"
    hosts.write_text('[{"ssh": "mac-b"}]')
    assert run_app(hosts=str(hosts)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mac-b" in err and "ips" in err
