"""Starting the other ranks: a rank that cannot start fails the start, naming its host, instead
of leaving rank 0 in MLX's ``init`` (which holds the GIL until every rank has connected)."""

import subprocess
import sys
from pathlib import Path

import pytest

from models.distributed.hosts import local_hosts
from models.distributed.launcher import Cluster, ClusterError

ROOT = Path(__file__).resolve().parents[3]

CANNOT_START = """
import sys
from models.distributed.hosts import local_hosts
from models.distributed.launcher import Cluster, ClusterError
try:
    Cluster.start(local_hosts(2), [[], sys.argv[1:]])
except ClusterError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    "worker_args, says",
    [
        (["--model", "/nowhere", "--protocol", "1"], "run the same version of Llama Desk on every Mac"),
        # A worker from before the protocol check does not know the option at all.
        (["--model", "/nowhere", "--protocol-of-the-future", "3"], "it runs an older version of Llama Desk"),
    ],
)
def test_rank_0_names_a_rank_that_speaks_another_protocol(worker_args, says):
    # In a process of its own: MLX sets up its ring once per process.
    command = [sys.executable, "-c", CANNOT_START, *worker_args]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.stdout.startswith("Rank 1 on 127.0.0.1 could not start (exit code 2)"), run.stdout + run.stderr
    assert says in run.stdout


def test_a_rank_that_never_says_it_is_joining_fails_the_start_in_time(tmp_path):
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    cluster = Cluster(local_hosts(2), {1: silent}, str(tmp_path))
    with pytest.raises(ClusterError, match=r"Rank 1 on 127\.0\.0\.1 did not start within 0\.5 s"):
        cluster.wait_until_ready(timeout_s=0.5)
    assert silent.poll() is not None  # and it was ended
