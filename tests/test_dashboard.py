"""``prunetune dashboard`` as a real process on a job's study in PostgreSQL: named
objectives, per-layer sparsities as parameters, strategy / fidelity / REPORT scores as
trial attributes, and the study page rendered in headless Chromium with its Pareto-front
plot."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import optuna
import pytest
from browser import rendered_dom, screenshot
from helpers import digits_spec_dict

from prunetune import Client
from prunetune.service.job_runner import JobRunner

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _attrs(trial: dict) -> dict[str, str]:
    return {a["key"]: a["value"] for a in trial["user_attrs"]}


def test_dashboard_shows_named_objectives_attrs_and_the_pareto_front(tmp_path: Path, postgres_url: str) -> None:
    client = Client.embedded(postgres_url)
    job = client.submit(digits_spec_dict(budget={"trials": 8}))
    assert JobRunner(postgres_url, migrate=False).run_one(job.id).value == "succeeded"  # type: ignore[union-attr]
    front = {p.trial for p in job.pareto_front()}
    study_id = optuna.storages.RDBStorage(postgres_url).get_study_id_from_name(job.status().study_name)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "prunetune.cli", "dashboard", "--db", postgres_url,
                                 "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dashboard exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/studies").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        data = httpx.get(f"{url}/api/studies/{study_id}").json()
        assert data["objective_names"] == ["accuracy", "nonzero_params"]
        trials = data["trials"]
        assert len(trials) == 8
        for t in trials:
            attrs = _attrs(t)
            assert [p["name"] for p in t["params"]] == ["fc1", "fc2"]  # per-layer sparsities
            assert attrs["strategy"] == "random" and attrs["fidelity_level"] == "1.0"
            assert ("report_accuracy" in attrs) == (t["number"] in front), t["number"]
        reports = optuna.load_study(study_name=job.status().study_name, storage=postgres_url).user_attrs["report"]
        for t in trials:
            if t["number"] in front:
                assert float(_attrs(t)["report_accuracy"]) == pytest.approx(reports[str(t["number"])]["accuracy"])

        page = f"{url}/dashboard/studies/{study_id}"
        dom = rendered_dom(page)
        assert ">Pareto Front</h6>" in dom
        start = dom.index('id="graph-pareto-front"')
        plot = dom[start: dom.find('id="plot-history"', start)]
        assert 'class="main-svg"' in plot
        assert len(re.findall(r'<path class="point"', plot)) == 8  # every trial drawn
        assert screenshot(page, tmp_path / "dashboard-study.png").stat().st_size > 20_000
    finally:
        proc.kill()
        proc.wait()
