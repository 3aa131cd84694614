"""The docker-compose deployment as processes on loopback, and the compose file checked
against it.

Docker cannot run here, so ``test_the_deployment_as_processes_on_loopback`` starts what
``docker-compose.yml`` starts, service for service: PostgreSQL (a fresh database on the
running server), a Ray head with no CPUs plus a second Ray node that does the work
(``ray start --address``, distinct ports, one temp folder), the API, a job runner on the
Ray cluster, two schedulers (racing on every window) and the dashboard. It drives them
through the HTTP client: a schedule with cron ``* * * * *`` fires within its minute, the
job runs on the Ray node, its front comes back through the client; the next window's
run is warm-started from it and its stored comparison says how the fronts compare.
Everything is stopped in ``finally``.

``test_compose_file_matches_the_topology`` parses the compose file and checks its
services, commands, environment, health checks, volumes and GPU reservation against the
commands the process topology runs (:func:`service_commands`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers import digits_spec_dict

from prunetune import Client
from prunetune.store.db import upgrade
from prunetune.store.tokens import create_token

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"postgres", "ray-head", "ray-worker", "api", "runner", "scheduler", "dashboard"}


def service_commands(db: str, ray_port: int, api_port: int, dash_port: int, ray_host: str,
                     host: str) -> dict[str, list[str]]:
    """What each service runs. The compose file must run the same programs with the same
    options (values differ: service names instead of loopback, fixed ports)."""
    address = f"{ray_host}:{ray_port}"
    return {
        "ray-head": ["ray", "start", "--head", f"--port={ray_port}", "--num-cpus=0", "--block"],
        "ray-worker": ["ray", "start", f"--address={address}", "--block"],
        "api": ["prunetune", "serve", "--db", db, "--host", host, "--port", str(api_port)],
        "runner": ["prunetune", "runner", "--db", db, "--ray-address", address],
        "scheduler": ["prunetune", "scheduler", "--db", db],
        "dashboard": ["prunetune", "dashboard", "--db", db, "--host", host, "--port", str(dash_port)],
    }


def _options(argv: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            if "=" in arg:
                key, value = arg.split("=", 1)
                out[key] = value
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                out[arg] = argv[i + 1]
                i += 1
            else:
                out[arg] = None
        i += 1
    return out


# -- the compose file ----------------------------------------------------------------


def test_compose_file_matches_the_topology() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == SERVICES
    pg = services["postgres"]["environment"]
    db = f"postgresql+psycopg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
    want = service_commands(db, 6379, 8000, 8080, ray_host="ray-head", host="0.0.0.0")
    for name, argv in want.items():
        got = [str(a) for a in services[name]["command"]]
        assert got[:2] == argv[:2], name  # the same program and subcommand
        mine, theirs = _options(argv), _options(got)
        extra = set(theirs) - set(mine)
        assert extra <= {"--dashboard-host"}, (name, extra)  # Ray's dashboard, for operators
        for key, value in mine.items():
            assert theirs.get(key, "<missing>") == value, (name, key)
        env = services[name].get("environment", {})
        assert env.get("PRUNETUNE_DB") == db, name
        assert env.get("RAY_ADDRESS") == "ray-head:6379", name
        assert "prunetune-data:/data" in services[name].get("volumes", []), name
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert set(compose["volumes"]) == {"pgdata", "prunetune-data"}
    for name in ("postgres", "ray-head", "api", "dashboard"):
        assert services[name]["healthcheck"]["test"], name
    assert "8000" in " ".join(services["api"]["healthcheck"]["test"])
    for name in ("api", "runner", "scheduler", "dashboard"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name
    for name in ("ray-worker", "runner"):
        assert services[name]["depends_on"]["ray-head"]["condition"] == "service_healthy", name
    (gpu,) = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"] and gpu["count"] == 1
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install ." in dockerfile and "curl" in dockerfile  # health checks use curl


# -- the same topology as processes --------------------------------------------------


class Ports:
    """Free loopback ports, each handed out once. A port probed free is free only until
    someone binds it, so every port of the topology comes from one pool: Ray refuses to
    start when two of its components (say the metrics port and a worker port) coincide."""

    def __init__(self) -> None:
        self.taken: set[int] = set()

    def one(self) -> int:
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in self.taken:
                self.taken.add(port)
                return port

    def span(self, size: int) -> tuple[int, int]:
        """``size`` consecutive free ports (Ray's worker port range for one node)."""
        while True:
            start = self.one()
            want = range(start, start + size)
            if start + size > 65000 or self.taken.intersection(want[1:]):
                continue
            socks = []
            try:
                for p in want:
                    s = socket.socket()
                    socks.append(s)
                    s.bind(("127.0.0.1", p))
            except OSError:
                continue
            finally:
                for s in socks:
                    s.close()
            self.taken.update(want)
            return start, start + size - 1


def test_ports_are_handed_out_once() -> None:
    pool = Ports()
    singles = [pool.one() for _ in range(32)]
    ranges = [pool.span(48) for _ in range(2)]
    spans = [set(range(lo, hi + 1)) for lo, hi in ranges]
    assert len(set(singles)) == len(singles)
    assert all(len(s) == 48 for s in spans) and not spans[0] & spans[1]
    assert not set(singles) & (spans[0] | spans[1])


class Topology:
    """Starts the services as process groups and stops every one of them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        # Ray's socket paths must stay short, hence a short folder of our own in /tmp.
        self.ray_dir = Path(tempfile.mkdtemp(prefix="ptt", dir="/tmp"))
        # Token auth on, with this cluster's own token (never ~/.ray of the machine).
        token = self.ray_dir / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                    "RAY_USAGE_STATS_ENABLED": "0", "PRUNETUNE_CACHE": str(tmp / "cache"),
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        exe = {"prunetune": [sys.executable, "-m", "prunetune.cli"],
               "ray": [str(Path(sys.executable).with_name("ray"))]}[argv[0]]
        log = self.tmp / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen([*exe, *argv[1:]], stdout=fh, stderr=subprocess.STDOUT, env=self.env,
                                    preexec_fn=_own_group_dying_with_parent)
        self.procs[name] = (proc, log)
        return proc

    def check_alive(self) -> None:
        for name, (proc, log) in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")

    def log(self, name: str) -> str:
        return self.procs[name][1].read_text()

    def stop(self) -> None:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc, _ in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Ray daemons of our nodes that left the process groups: found by our temp folder.
        for pid in _pids_mentioning(str(self.ray_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.ray_dir, ignore_errors=True)


def _own_group_dying_with_parent() -> None:
    """In the child: its own process group (stopped as a whole), and SIGTERM when the test
    process dies without tearing down (killed by a timeout), so nothing is left behind."""
    os.setsid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _pids_mentioning(text: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            out.append(int(entry.name))
    return out


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    topo = Topology(tmp_path)
    try:
        yield topo
    finally:
        topo.stop()


def _poll(until: Callable[[], Any], topo: Topology, every: float = 0.5) -> Any:
    while True:
        topo.check_alive()
        got = until()
        if got:
            return got
        time.sleep(every)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


def _ray_node_ports(role: str, pool: Ports) -> list[str]:
    lo, hi = pool.span(48)
    names = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-grpc-port",
             "--dashboard-agent-listen-port", "--runtime-env-agent-port", "--metrics-export-port")
    ports = [f"{n}={pool.one()}" for n in names]
    # No --node-ip-address: Ray rewrites a loopback address to the machine's own, so every
    # node and driver must advertise that one (the machine is reachable only by itself).
    return [*ports, f"--min-worker-port={lo}", f"--max-worker-port={hi}",
            "--disable-usage-stats"] + (["--include-dashboard=false"] if role == "head" else [])


@pytest.mark.slow
@pytest.mark.integration
def test_the_deployment_as_processes_on_loopback(topology: Topology, postgres_url: str) -> None:
    upgrade(postgres_url)
    token = create_token(postgres_url, owner="nightly")
    pool = Ports()
    ray_port, api_port, dash_port = pool.one(), pool.one(), pool.one()
    cmds = service_commands(postgres_url, ray_port, api_port, dash_port, ray_host="127.0.0.1", host="127.0.0.1")
    ray_dir = f"--temp-dir={topology.ray_dir}"
    topology.start("ray-head", [*cmds["ray-head"], ray_dir, *_ray_node_ports("head", pool)])
    head_log = topology.ray_dir / "session_latest"
    _poll(lambda: head_log.exists(), topology)
    # The work happens on the second node, as on the compose file's ray-worker.
    topology.start("ray-worker", [*cmds["ray-worker"], ray_dir, "--num-cpus=2", *_ray_node_ports("worker", pool)])
    topology.start("api", cmds["api"])
    topology.start("runner", [*cmds["runner"], "--poll", "0.5"])
    for k in (1, 2):
        topology.start(f"scheduler{k}", [*cmds["scheduler"], "--poll", "1"])
    topology.start("dashboard", cmds["dashboard"])
    url = f"http://127.0.0.1:{api_port}"
    _poll(lambda: _answers(f"{url}/health"), topology)
    _poll(lambda: _answers(f"http://127.0.0.1:{dash_port}/api/studies"), topology)

    client = Client(url, token=token)
    spec = digits_spec_dict(name="nightly-digits", budget={"trials": 8}, resources={"workers": 2})
    made = client.schedule(spec, cron="* * * * *", name="every-minute", warm_start=True)
    first_fire = datetime.fromisoformat(made["next_run_at"])

    def runs(n: int) -> list[dict[str, Any]] | None:
        got = client.schedule_runs("every-minute")
        return got if len(got) >= n else None

    (run1,) = _poll(lambda: runs(1), topology)[:1]
    assert datetime.fromisoformat(run1["fire_time"]) == first_fire
    delay1 = (datetime.fromisoformat(run1["enqueued_at"]) - first_fire).total_seconds()
    assert 0 <= delay1 < 60, delay1  # fired within its minute
    job1 = client.job(run1["job_id"])
    status1 = _poll(lambda: (s := job1.status()).finished and s, topology)
    assert status1.state == "succeeded", (status1.error, topology.log("runner")[-3000:])
    front1 = job1.pareto_front()
    assert front1 and all(p.report.get("accuracy") is not None for p in front1)

    run2 = _poll(lambda: runs(2), topology)[1]
    client.pause_schedule("every-minute")  # no third night
    delay2 = (datetime.fromisoformat(run2["enqueued_at"])
              - datetime.fromisoformat(run2["fire_time"])).total_seconds()
    assert 0 <= delay2 < 60, delay2
    job2 = client.job(run2["job_id"])
    status2 = _poll(lambda: (s := job2.status()).finished and s, topology)
    assert status2.state == "succeeded", status2.error
    assert status2.trials_total == status1.trials_total == 8  # the same budget
    comp = job2.comparison()
    assert comp is not None and comp["previous_job_id"] == job1.id and comp["warm_started"]
    assert comp["split"] == "search"
    assert comp["hypervolume"] >= comp["previous_hypervolume"] > 0
    assert comp["verdict"] in ("improved", "equal")
    warm = [t for t in job2.trials() if t["origin"] == "warm-start"]
    assert [t["allocation"] for t in warm] == [dict(p.allocation) for p in front1]

    # Two schedulers raced on every window; each window has one run and one job.
    every = client.schedule_runs("every-minute")
    assert len({r["fire_time"] for r in every}) == len(every) == 2
    scheduled = [j for j in client.list() if j.name.startswith("every-minute@")]
    assert sorted(j.id for j in scheduled) == sorted(r["job_id"] for r in every)
    # The evaluations ran in Ray actors of this cluster (their logs are in its session).
    assert list((topology.ray_dir / "session_latest" / "logs").glob("worker-*")), "no Ray worker ran"
    page = client.report(job2.id)
    assert 'id="front-plot"' in page and f"<b>{comp['verdict']}</b>" in page
    studies = httpx.get(f"http://127.0.0.1:{dash_port}/api/studies").json()["study_summaries"]
    assert {s["study_name"] for s in studies} >= {status1.study_name, status2.study_name}
    print(f"\nfire delays {delay1:.1f} s, {delay2:.1f} s; hypervolume first {comp['previous_hypervolume']:.6g}, "
          f"second {comp['hypervolume']:.6g}, delta {comp['delta']:+.6g} ({comp['verdict']})")
