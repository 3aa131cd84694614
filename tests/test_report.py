"""The job report (front.html): the REPORT-split front with the uniform and OWL baselines,
the per-layer sparsity heatmap and the provenance, rendered in headless Chromium; the
same report served by the API from the job's study."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import optuna
import pytest
from browser import rendered_dom, screenshot
from fastapi.testclient import TestClient
from helpers import digits_spec_dict

from prunetune import Client
from prunetune.engine.runner import run_job
from prunetune.service.app import create_app
from prunetune.service.job_runner import JobRunner
from prunetune.spec import SearchSpec
from prunetune.store.tokens import create_token


def _segment(dom: str, div_id: str) -> str:
    """The rendered HTML from the element with this id up to the next plot."""
    start = dom.index(f'id="{div_id}"')
    end = dom.find('class="plotly-graph-div"', start + 50)
    return dom[start: end if end > 0 else len(dom)]


def test_front_html_draws_front_baselines_heatmap_and_provenance(tmp_path: Path, sqlite_url: str) -> None:
    spec = SearchSpec.from_dict(digits_spec_dict(budget={"trials": 10}))
    out = run_job(spec, db=sqlite_url, study_name="report-job", out_dir=tmp_path / "job")

    base = out.extra["baselines"]
    assert isinstance(base, dict) and set(base) == {"uniform", "owl"}
    for name, points in base.items():
        assert [p["level"] for p in points] == [0.5, 0.6, 0.7, 0.8], name  # the front levels
        for p in points:  # scored on the REPORT split at exactly the level's budget
            assert 0.0 < p["quality"] <= 1.0
            assert p["sparsity"] == pytest.approx(p["level"], abs=1e-3)
    uniform, owl = base["uniform"][1]["allocation"], base["owl"][1]["allocation"]
    assert max(uniform) - min(uniform) < 1e-3 < max(owl) - min(owl)  # OWL shapes the layers

    page = (tmp_path / "job" / "front.html").resolve()
    dom = rendered_dom(page.as_uri())
    plot = _segment(dom, "front-plot")
    legend = re.findall(r'class="legendtext"[^>]*data-unformatted="([^"]*)"', plot)
    assert {"front (report split)", "uniform baseline (report split)", "owl baseline (report split)"} <= set(legend)
    # Markers: the search-split cloud, the front and 4 levels of each baseline.
    assert len(re.findall(r'<path class="point"', plot)) == len(out.results) + len(out.front) + 8
    heat = _segment(dom, "heatmap-plot")
    assert 'class="heatmaplayer' in heat and "<image" in heat
    assert re.findall(r'data-unformatted="(trial \d+)', heat)  # one row per front point
    prov = out.extra["provenance"]
    assert isinstance(prov, dict)
    for value in (prov["spec_hash"], prov["model_fingerprint"], *prov["data_hashes"].values()):
        assert f"<td>{value}</td>" in dom
    shot = screenshot(page.as_uri(), tmp_path / "front-report.png")
    assert shot.stat().st_size > 20_000


def test_report_is_served_by_the_api_from_the_jobs_study(postgres_url: str) -> None:
    client = Client.embedded(postgres_url)
    job = client.submit(digits_spec_dict(budget={"trials": 5}))
    queued = client.submit(digits_spec_dict(name="later"))
    assert JobRunner(postgres_url, migrate=False).run_one(job.id).value == "succeeded"  # type: ignore[union-attr]
    token = create_token(postgres_url, owner="local")  # the embedded client submits as "local"
    with TestClient(create_app(postgres_url)) as http:
        resp = http.get(f"/jobs/{job.id}/report", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
        not_yet = http.get(f"/jobs/{queued.id}/report", headers={"Authorization": f"Bearer {token}"})
        assert not_yet.status_code == 409
        assert http.get(f"/jobs/{job.id}/report").status_code == 401
    page = resp.text
    study = optuna.load_study(study_name=job.status().study_name, storage=postgres_url)
    for key in ("front-plot", "heatmap-plot", "provenance", "owl baseline (report split)",
                study.user_attrs["provenance"]["spec_hash"]):
        assert key in page
    assert page == client.report(job.id)  # the embedded client draws the same page


def test_baselines_can_be_turned_off(tmp_path: Path, sqlite_url: str) -> None:
    spec = SearchSpec.from_dict(digits_spec_dict(budget={"trials": 3}, report={"baselines": []}))
    out = run_job(spec, db=sqlite_url, study_name="plain", out_dir=tmp_path)
    assert out.extra["baselines"] == {}
    assert "baselines" not in optuna.load_study(study_name="plain", storage=sqlite_url).user_attrs
    assert "baseline (report split)" not in (tmp_path / "front.html").read_text()
    default = SearchSpec.from_dict(digits_spec_dict())
    assert default.report is None and "report" not in default.to_dict()  # hash unchanged by default


def test_front_comparison_verdicts_use_one_fixed_reference() -> None:
    from prunetune.report.fronts import FrontPoint, StudyFront, compare_fronts

    def front(points: list[tuple[float, float, float | None]]) -> StudyFront:
        pts = [FrontPoint(i, q, s, None, {} if r is None else {"accuracy": r}, {"fc1": 0.5})
               for i, (q, s, r) in enumerate(points)]
        return StudyFront("s", "accuracy", pts, pts, {"params_total": 100.0})

    base = front([(0.9, 50.0, 0.8), (0.5, 20.0, 0.4)])
    same = compare_fronts(front([(0.9, 50.0, 0.8), (0.5, 20.0, 0.4)]), base)
    assert same["verdict"] == "equal" and same["delta"] == 0.0 and same["split"] == "search"
    # Verdicts on the search split: 0.5 * 80 + 0.4 * 50 = 60 before; 0.6 * 80 + 0.3 * 50 = 63 after.
    better = compare_fronts(front([(0.9, 50.0, 0.8), (0.6, 20.0, 0.5)]), base)
    assert better["verdict"] == "improved" and better["delta"] == pytest.approx(3.0)
    assert better["previous_hypervolume"] == pytest.approx(60.0)
    # REPORT areas alongside: 0.4 * 80 + 0.4 * 50 = 52 before; 0.5 * 80 + 0.3 * 50 = 55 after.
    assert better["previous_report_hypervolume"] == pytest.approx(52.0)
    assert better["report_hypervolume"] == pytest.approx(55.0)
    assert better["reference"] == {"quality": 0.0, "size": 100.0, "quality_name": "accuracy",
                                   "size_name": "nonzero_params"}
    worse = compare_fronts(front([(0.9, 50.0, 0.7)]), base)
    assert worse["verdict"] == "regressed" and worse["relative_delta"] == pytest.approx(45 / 60 - 1)
    # Without REPORT scores on every point only the search split is compared.
    no_report = compare_fronts(front([(0.9, 50.0, None)]), base)
    assert no_report["split"] == "search" and "report_hypervolume" not in no_report


def test_pareto_report_scores_a_thinned_front_and_reads_it_at_the_front_levels(tmp_path: Path, sqlite_url: str) -> None:
    spec = SearchSpec.from_dict(digits_spec_dict(
        budget={"trials": 24}, strategy={"name": "evolutionary"}, target={"sparsities": [0.5, 0.8]},
        report={"points": 4, "baselines": ["uniform"]}))
    out = run_job(spec, db=sqlite_url, study_name="thin", out_dir=tmp_path)
    assert len(out.front) > 4
    assert len(out.reports) == 4  # only report.points front points are scored on REPORT
    # The front read at each level is a scored point at that size or smaller, against uniform there.
    levels = out.extra["levels"]
    assert [row["level"] for row in levels] == [0.5, 0.8]
    for row in levels:
        assert row["trial"] in out.reports
        assert row["front_sparsity"] >= row["level"] - 1e-6
        assert row["front"] == out.reports[row["trial"]]["accuracy"]
        assert 0.0 < row["uniform"] <= 1.0
    assert [b["level"] for b in out.extra["baselines"]["uniform"]] == [0.5, 0.8]
    # Unscored points are marked as such in the outputs, and the page shows the level table.
    rows = list(csv.DictReader((tmp_path / "front.csv").open()))
    assert sorted(r["report_scored"] for r in rows).count("True") == 4
    assert all(r["report_accuracy"] == "" for r in rows if r["report_scored"] == "False")
    page = (tmp_path / "front.html").read_text()
    assert 'id="levels-table"' in page and "sparsity 0.8" in page
    assert optuna.load_study(study_name="thin", storage=sqlite_url).user_attrs["levels"] == levels
