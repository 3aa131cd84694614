"""A real two-node Ray cluster on this machine (loopback, its own ports and temp
folder): ``ray start --head`` and ``ray start --address``, a job run against it with the
runner's ``ray_address``, and both nodes stopped.

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

import pytest
from helpers import digits_spec_dict

from prunetune.runner import run_job
from prunetune.spec import SearchSpec
from prunetune.workbench import build_workbench

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


def _node_args(ports: list[int]) -> list[str]:
    names = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
    out = [f"{name}={port}" for name, port in zip(names, ports, strict=True)]
    return [*out, "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--block",
            "--disable-usage-stats"]


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    with log.open("wb") as out:
        return subprocess.Popen([RAY, "start", *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)


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
    address = f"127.0.0.1:{ports[0]}"
    head = _start(["--head", f"--port={ports[0]}", f"--ray-client-server-port={ports[1]}",
                   "--include-dashboard=false", f"--temp-dir={temp}",
                   f"--min-worker-port={ports[2]}", f"--max-worker-port={ports[2] + 40}",
                   *_node_args(ports[3:9])], tmp_path / "head.log")
    nodes = [head]
    try:
        _wait_for_nodes(address, 1, head, tmp_path / "head.log")
        worker = _start([f"--address={address}", f"--min-worker-port={ports[2] + 41}",
                         f"--max-worker-port={ports[2] + 80}", *_node_args(ports[9:15])],
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
        status = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True, text=True)
        if status.returncode == 0 and status.stdout.count("node_") >= n:
            return
        time.sleep(1)
    pytest.fail(f"the cluster at {address} did not show {n} nodes: {log.read_text()[-2000:]}")


def test_job_runs_on_a_two_node_cluster(two_nodes: str, sqlite_url: str) -> None:
    spec = SearchSpec.from_dict(digits_spec_dict(budget={"trials": 8}, resources={"workers": 2}))
    bench = build_workbench(spec)
    nodes: set[str] = set()

    from prunetune.workers.ray_pool import RayExecutor

    with RayExecutor(bench, workers=2, address=two_nodes) as executor:
        nodes = {d["node_id"] for d in executor.wait_ready()}
        assert ray.cluster_resources()["CPU"] == 2
    assert len(nodes) == 2  # one actor per node: each node has one CPU
    assert not ray.is_initialized()

    out = run_job(spec, db=sqlite_url, workers=2, ray_address=two_nodes, bench=bench)
    assert len(out.results) == 8 and all(r.ok for r in out.results)
    assert not ray.is_initialized()
