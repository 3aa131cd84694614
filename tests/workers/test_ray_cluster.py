"""A real two-node Ray cluster on this machine (loopback, its own ports and temp
folder): ``ray start --head`` and ``ray start --address``, a job run against it with
``prunetune run --ray-address``, and both nodes stopped.

The nodes run with ``--block`` in their own process groups and are stopped by signalling
those groups: ``ray stop`` would stop every Ray on the machine, other jobs' included.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from helpers import digits_spec_dict

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.integration

RAY = str(Path(sys.executable).with_name("ray"))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _worker_port_block(width: int) -> int:
    """The first of ``width`` consecutive free ports below Linux's ephemeral range (32768 up),
    where the ports ``_free_ports`` hands out live: a worker-port range drawn around those
    could take one of the components' ports, which ``ray start`` refuses."""
    base = 20000
    while True:
        socks = []
        try:
            for port in range(base, base + width):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            base += width
        finally:
            for s in socks:
                s.close()


def _node_args(ports: list[int]) -> list[str]:
    names = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
    out = [f"{name}={port}" for name, port in zip(names, ports, strict=True)]
    return [*out, "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--block",
            "--disable-usage-stats"]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([RAY, "start", *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=_clean_env())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            # the group may outlive its leader for a moment
            time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGKILL)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            continue


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[str]:
    # Ray's socket paths must stay short: a short folder of our own in the temp dir.
    temp = Path(f"/tmp/pt-ray-test-{os.getpid()}")
    temp.mkdir(exist_ok=True)
    ports = _free_ports(15)
    block = _worker_port_block(81)  # the head's worker ports, then the worker node's
    address = f"127.0.0.1:{ports[0]}"
    head = _start(["--head", f"--port={ports[0]}", "--include-dashboard=false", f"--temp-dir={temp}",
                   f"--min-worker-port={block}", f"--max-worker-port={block + 40}",
                   *_node_args(ports[3:9])], tmp_path / "head.log")
    nodes = [head]
    try:
        _wait_for_nodes(address, 1, head, tmp_path / "head.log")
        worker = _start([f"--address={address}", f"--min-worker-port={block + 41}",
                         f"--max-worker-port={block + 80}", *_node_args(ports[9:15])],
                        tmp_path / "worker.log")
        nodes.append(worker)
        _wait_for_nodes(address, 2, worker, tmp_path / "worker.log")
        yield address
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        subprocess.run(["rm", "-rf", str(temp)], check=False)


def _wait_for_nodes(address: str, n: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited with {proc.returncode}: {log.read_text()[-2000:]}")
        status = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True,
                                text=True, env=_clean_env(), check=False)
        if status.returncode == 0 and status.stdout.count("node_") >= n:
            return
        time.sleep(1)
    pytest.fail(f"the cluster at {address} did not show {n} nodes: {log.read_text()[-2000:]}")


NODES_OF_TWO_ACTORS = """
import sys
from helpers import digits_spec_dict
from prunetune.spec import SearchSpec
from prunetune.engine.workbench import build_workbench
from prunetune.workers.ray_pool import RayExecutor
bench = build_workbench(SearchSpec.from_dict(digits_spec_dict(resources={"workers": 2})))
with RayExecutor(bench, workers=2, address=sys.argv[1]) as executor:
    print(" ".join(sorted({d["node_id"] for d in executor.wait_ready()})))
"""


def test_job_runs_on_a_two_node_cluster(two_nodes: str, tmp_path: Path) -> None:
    # Drivers run as their own processes, as a user's would: Ray keeps auth settings
    # per process, and this one may have run local Ray sessions before.
    env = _clean_env() | {"PYTHONPATH": str(Path(__file__).parents[1])}
    nodes = subprocess.run([sys.executable, "-c", NODES_OF_TWO_ACTORS, two_nodes], env=env,
                           capture_output=True, text=True, check=False)
    assert nodes.returncode == 0, nodes.stderr[-3000:]
    assert len(nodes.stdout.split()) == 2  # one actor per node: each node has one CPU

    spec = tmp_path / "digits.yaml"
    spec.write_text(yaml.safe_dump(digits_spec_dict(budget={"trials": 8})))
    db = f"sqlite:///{tmp_path / 'cluster.db'}"
    run = subprocess.run(
        [sys.executable, "-m", "prunetune.cli", "run", str(spec), "--db", db, "--workers", "2",
         "--ray-address", two_nodes, "--study", "on-cluster"],
        env=env, capture_output=True, text=True, check=False,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    trials = optuna.load_study(study_name="on-cluster", storage=db).get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(8))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
