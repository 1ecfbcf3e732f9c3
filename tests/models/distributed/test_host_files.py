"""Hostile host files (issue 23): read by the regular-file rules, every value that reaches a
command line validated, refused in one line naming the entry; ``ssh`` gets ``--`` before the
destination. A recording fake ``ssh`` on PATH shows what ssh would be handed."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading

import pytest

from desktop.cli.main import main
from models.distributed.hosts import MAX_HOST_FILE_BYTES, HostFileError, host_file_from_json, parse_host_file
from models.distributed.launcher import Cluster, ClusterError
from tests.support.hostile_files import make_fifo, memory_cap, needs_posix_devices

SCOUT_8BIT = "mlx-community/Llama-4-Scout-17B-16E-Instruct-8bit"
LOCAL = {"ssh": "127.0.0.1", "ips": ["127.0.0.1"]}


def two(second: dict, **top) -> dict | list:
    hosts = [{"ssh": "mac-a", "ips": ["10.0.0.1"]}, second]
    return {"hosts": hosts, **top} if top else hosts


def write(tmp_path, data, name: str = "hosts.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def refused(data) -> str:
    with pytest.raises(HostFileError) as caught:
        host_file_from_json(data, "hosts.json")
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300, message
    return message


# -- reading the file ---------------------------------------------------------------------------------


@needs_posix_devices
def test_a_host_file_that_is_dev_zero_is_refused_unread(tmp_path):
    link = tmp_path / "hosts.json"
    link.symlink_to("/dev/zero")
    with memory_cap(), pytest.raises(HostFileError, match="not a regular file"):
        parse_host_file(link)


@needs_posix_devices
@pytest.mark.timeout(30)  # before the fix the read blocked for ever
def test_a_host_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = make_fifo(tmp_path / "hosts.json")
    with pytest.raises(HostFileError, match="named pipe"):
        parse_host_file(fifo)


def test_a_huge_host_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "hosts.json"
    with open(path, "wb") as f:
        f.truncate(MAX_HOST_FILE_BYTES + 1)
    with pytest.raises(HostFileError, match="larger than"):
        parse_host_file(path)


@pytest.mark.parametrize(
    "text, says",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"hosts": ' + "[" * 40 + "]" * 40 + "}", "nested too deeply"),
        ("[1" + "0" * 5000 + "]", "not JSON"),  # an integer over Python's digit limit
        ('[{"ssh": "mac-a", "ips": ["10.0.0.1"]}', "not JSON"),
        (b"\xff\xfe[]", "not JSON"),
    ],
)
def test_nested_or_broken_json_is_one_line(tmp_path, text, says):
    path = tmp_path / "hosts.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(HostFileError, match=says) as caught:
        parse_host_file(path)
    assert "\n" not in str(caught.value)


@pytest.mark.timeout(60)  # guards a hang only: a scan that backtracked took hours on this
def test_the_nesting_scan_stays_linear_on_a_file_of_escaped_quotes(tmp_path):
    path = tmp_path / "hosts.json"
    path.write_text('["' + '\\"' * 400_000)  # one string that never ends, 800 KB
    with pytest.raises(HostFileError, match="not JSON"):
        parse_host_file(path)


# -- values -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "memory", ["NaN", "Infinity", "-Infinity", "1e400", "true", '"64"', "[64]", "0", "1e7"]
)
def test_memory_gb_must_be_a_finite_positive_number(tmp_path, memory):
    text = '[{"ssh": "mac-a", "ips": ["10.0.0.1"], "memory_gb": ' + memory + "}]"
    with pytest.raises(HostFileError, match=r'host 0 \(mac-a\): "memory_gb" must be a positive number'):
        parse_host_file(write(tmp_path, text))


@pytest.mark.parametrize(
    "data, says",
    [
        ({"hosts": {"ssh": "mac-a"}}, "list of hosts"),
        ({"hosts": [LOCAL], "envs": "MLX_X=1"}, '"envs" must be a list'),
        ({"hosts": [LOCAL], "envs": [["MLX_X=1"]]}, "envs 0"),
        ({"hosts": [LOCAL], "backend": ["ring"]}, "backend"),
        ([["mac-a"]], "host 0"),
        ([{"ssh": ["mac-a"], "ips": ["10.0.0.1"]}], 'host 0 needs an "ssh" name'),
        ([{"ssh": "mac-a", "ips": "10.0.0.1"}], '"ips" must be a list'),
        ([{"ssh": "mac-a", "ips": [{"ip": "10.0.0.1"}]}], '"ips" must be a list'),
    ],
)
def test_wrong_types_are_one_line_naming_the_entry(data, says):
    assert says in refused(data)


@pytest.mark.parametrize(
    "name",
    [
        "-oProxyCommand=touch /tmp/pwned",
        "-lroot",
        "mac b",
        "mac-b\n",
        "mac\tb",
        "mac;touch x",
        "$(touch x)",
        "`touch x`",
        "mac|b",
        "mac&b",
        "a@b@c",
        "user@-oProxyCommand=x",
        "-user@mac-b",
        "us er@mac-b",
        "user@",
        "@mac-b",
        "mac-b-",
        "-mac-b",
        "mac..b",
        "x" * 64 + ".local",
        "ssh://mac-b",
        "mac-b:22",
        "mäc-b",
        "mac_b",
        "256.1.1.1",
        "fe80::1%$(touch x)",
    ],
)
def test_a_host_name_that_is_not_one_is_refused_naming_the_entry(name):
    message = refused(two({"ssh": name, "ips": ["10.0.0.2"]}))
    assert message.startswith("hosts.json: host 1: ") and "is not a" in message


@pytest.mark.parametrize(
    "name",
    [
        "mac-b",
        "mac-b.local",
        "other-mac.local",
        "alice@mac-b.local",
        "_svc@10.0.0.2",
        "10.0.0.2",
        "fe80::1",
        "bob@::1",
    ],
)
def test_real_host_names_are_accepted(name):
    assert host_file_from_json(two({"ssh": name, "ips": ["10.0.0.2"]})).hosts[1].ssh == name


@pytest.mark.parametrize("ip", ["-oProxyCommand=x", "10.0.0.2 10.0.0.3", "10.0.0.2;x", "$(x)", ""])
def test_ips_are_addresses(ip):
    assert "host 1 (mac-b)" in refused(two({"ssh": "mac-b", "ips": [ip]}))


@pytest.mark.parametrize(
    "env, says",
    [
        ("LD_PRELOAD=/tmp/evil.so", "LD_PRELOAD"),
        ("DYLD_INSERT_LIBRARIES=/tmp/evil.dylib", "DYLD_INSERT_LIBRARIES"),
        ("PYTHONPATH=/tmp/evil", "PYTHONPATH"),
        ("BASH_ENV=/tmp/evil", "BASH_ENV"),
        ("PATH=/tmp/evil", "PATH"),
        ("MLX_RANK=0", "MLX_RANK"),
        ("MLX-X=1", "MLX-X"),
        ("$(touch x)=1", "$(touch x)"),
        ("MLX_X", "NAME=VALUE"),
        ("MLX_X=a\nb", "control character"),
    ],
)
def test_envs_are_refused_unless_plain_settings(env, says):
    message = refused({"hosts": [LOCAL, LOCAL], "envs": [env]})
    assert message.startswith("hosts.json: envs 0: ") and says in message


def test_plain_envs_are_kept():
    hosts = host_file_from_json({"hosts": [LOCAL], "envs": ["MLX_METAL_FAST_SYNCH=1", "OMP_NUM_THREADS=4"]})
    assert hosts.envs == ("MLX_METAL_FAST_SYNCH=1", "OMP_NUM_THREADS=4")


# -- what reaches ssh ---------------------------------------------------------------------------------


@pytest.fixture
def recording_ssh(tmp_path, monkeypatch):
    """A fake ``ssh`` first on PATH that appends its argv (one JSON list a line) to a file and
    exits 1 (so the rank "could not start" at once)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "ssh-argv.jsonl"
    script = bin_dir / "ssh"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "sys.exit(1)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def recorded(record) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


@pytest.mark.timeout(60)
def test_ssh_gets_double_dash_before_the_destination(tmp_path, recording_ssh, monkeypatch):
    # An earlier test in this process may have joined MLX's ring (once per process); this one
    # never joins (its ssh fails at once), so it may start as if none had.
    monkeypatch.setattr("models.distributed.launcher._joined", threading.Event())
    hosts = parse_host_file(write(tmp_path, [LOCAL, {"ssh": "alice@other-mac.local", "ips": ["10.0.0.2"]}]))
    with pytest.raises(ClusterError, match="Rank 1 on alice@other-mac.local"):
        Cluster.start(hosts, [[], ["--model=/nowhere"]])
    (argv,) = recorded(recording_ssh)
    destination = argv.index("alice@other-mac.local")
    assert argv[destination - 1] == "--"
    assert all(a.startswith("-") or argv[i - 1] == "-o" for i, a in enumerate(argv[: destination - 1]))
    assert len(argv) == destination + 2  # then only the launch script


@pytest.mark.parametrize(
    "command",
    [
        ["models", "fit", SCOUT_8BIT, "--budget-gb", "102.1", "--hosts", "{hosts}"],
        ["ask", "--model", "{folder}", "--hosts", "{hosts}", "Hi"],
    ],
)
def test_a_malicious_entry_never_reaches_ssh(tmp_path, recording_ssh, capsys, command):
    evil = write(tmp_path, [LOCAL, {"ssh": "-oProxyCommand=touch pwned", "ips": ["10.0.0.2"]}])
    # ask: the host file is refused before the model (any folder that exists) is opened
    code = main([a.format(hosts=evil, folder=tmp_path) for a in command])
    err = capsys.readouterr().err
    assert code != 0 and recorded(recording_ssh) == []
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "host 1: '-oProxyCommand=touch pwned' is not a host name" in err
