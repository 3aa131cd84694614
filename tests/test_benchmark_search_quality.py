"""benchmarks/search_quality.py and pareto_front.py: a Pareto-mode hypervolume is of the whole front;
a run stopped between seeds (Pareto mode: between strategies) resumes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pareto_front
import search_quality


def test_pareto_mode_scores_the_whole_front_on_report() -> None:
    # The job's report phase scores at most 12 front points by default; the benchmark's
    # hypervolume (and the uniform sweep pareto_front.py compares with) needs every point.
    args = search_quality.build_parser().parse_args(["--pareto", "--budget", "256"])
    spec = search_quality.make_spec(args, "uniform", 0, 256, {})
    assert spec.report is not None and spec.report.points >= 256
    budget = search_quality.make_spec(search_quality.build_parser().parse_args(["--sparsity", "0.7"]),
                                      "evolutionary", 0, 64, {})
    assert budget.target is not None and budget.target.sparsity == 0.7


def test_the_front_search_refuses_a_thinned_uniform_sweep(tmp_path: Path) -> None:
    front = [{"size": 100 * (i + 1), "report": {"fidelity": 0.9 - i / 10} if i < 2 else {}} for i in range(4)]
    path = tmp_path / "search_quality-pareto-b64-n1-x.json"
    path.write_text(json.dumps({"args": {"budget": 64}, "runs": [
        {"strategy": "uniform", "front": front, "wall_seconds": 1.0}]}))
    with pytest.raises(SystemExit, match="2 of the uniform sweep's 4 front points have no REPORT score"):
        pareto_front.uniform_sweep(path, None)  # type: ignore[arg-type]


def test_the_front_file_records_project_paths_relative_to_the_root(tmp_path: Path) -> None:
    # latest:PREFIX resolves to an absolute path; the file must not carry this checkout's folder.
    inside = pareto_front.ROOT / "benchmarks" / "results" / "x.json"
    assert pareto_front.shown(inside) == "benchmarks/results/x.json"
    assert pareto_front.shown(tmp_path / "y.json") == str(tmp_path / "y.json")
    assert pareto_front.shown(Path("rel/z.json")) == "rel/z.json"
    assert pareto_front.shown(3) == 3


TINY = ["--sparsity", "0.5", "--budget", "3", "--seeds", "2", "--strategies", "uniform,random,evolutionary",
        "--calibration", "16", "--search", "16", "--report", "16", "--threads", "1"]


class SittingEnds(Exception):
    pass


def _figures(path: Path) -> dict[tuple[str, int], tuple[float, int]]:
    runs = json.loads(path.read_text())["runs"]
    return {(r["strategy"], r["seed"]): (r["one_minus_fidelity"], r["best_trial"]) for r in runs}


@pytest.mark.slow
def test_a_run_stopped_between_seeds_resumes_from_its_last_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same run uninterrupted, for comparison.
    whole = tmp_path / "whole"
    assert search_quality.main([*TINY, "--out", str(whole)]) == 0
    (expected,) = whole.glob("search_quality-*.json")
    assert not (whole / "partial").exists() or not list((whole / "partial").iterdir())

    # Stopped during seed 1: seed 0 is kept in the partial file, nothing final is written.
    out = tmp_path / "out"
    real = search_quality.run_one
    ran: list[tuple[str, int]] = []

    def dies_on_seed_1(args, bench, strategy, seed, db):  # type: ignore[no-untyped-def]
        if seed == 1:
            raise SittingEnds
        ran.append((strategy, seed))
        return real(args, bench, strategy, seed, db)

    monkeypatch.setattr(search_quality, "run_one", dies_on_seed_1)
    with pytest.raises(SittingEnds):
        search_quality.main([*TINY, "--out", str(out)])
    partial = out / "partial" / "search_quality-s0.5-b3-n2.json"
    assert {r["seed"] for r in json.loads(partial.read_text())["runs"]} == {0}
    assert not list(out.glob("search_quality-*.json"))

    # Other settings are refused, naming the setting; the partial file is kept.
    with pytest.raises(SystemExit, match=re.escape("screen=0.25, this run has screen=0.5")):
        search_quality.main([*TINY, "--screen", "0.5", "--out", str(out), "--resume"])
    assert partial.exists()

    # Resumed: only seed 1 runs, and the file holds what the uninterrupted run found.
    ran.clear()
    monkeypatch.setattr(search_quality, "run_one", lambda *a: (ran.append((a[2], a[3])), real(*a))[1])
    assert search_quality.main([*TINY, "--out", str(out), "--resume"]) == 0
    assert ran == [("random", 1), ("evolutionary", 1)]
    assert "--resume: 3 runs (seed, strategy)" in capsys.readouterr().out
    (resumed,) = out.glob("search_quality-*.json")
    assert _figures(resumed) == _figures(expected)
    d = json.loads(resumed.read_text())
    assert [s["runs"] for s in d["sittings"]] == [[[0, "uniform"], [0, "random"], [0, "evolutionary"]],
                                                  [[1, "random"], [1, "evolutionary"]]]
    assert "resume" not in d["args"] and d["started"] == d["sittings"][0]["started"]
    assert not partial.exists()


@pytest.mark.slow
def test_a_pareto_run_stopped_between_strategies_resumes_from_its_last_strategy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Pareto-mode seed takes hours at budget 256, so each strategy of a seed is kept as it ends.
    argv = ["--pareto", "--budget", "3", "--seeds", "1", "--strategies", "uniform,random",
            "--calibration", "16", "--search", "16", "--report", "16", "--threads", "1", "--out", str(tmp_path)]
    real = search_quality.run_one
    ran: list[tuple[str, int]] = []

    def dies_on_random(args, bench, strategy, seed, db):  # type: ignore[no-untyped-def]
        if strategy == "random":
            raise SittingEnds
        ran.append((strategy, seed))
        return real(args, bench, strategy, seed, db)

    monkeypatch.setattr(search_quality, "run_one", dies_on_random)
    with pytest.raises(SittingEnds):
        search_quality.main(argv)
    partial = tmp_path / "partial" / "search_quality-pareto-b3-n1.json"
    (uniform,) = json.loads(partial.read_text())["runs"]
    assert uniform["strategy"] == "uniform" and uniform["hypervolume"] > 0
    assert not list(tmp_path.glob("search_quality-*.json"))

    ran.clear()
    monkeypatch.setattr(search_quality, "run_one", lambda *a: (ran.append((a[2], a[3])), real(*a))[1])
    assert search_quality.main([*argv, "--resume"]) == 0
    assert ran == [("random", 0)]  # the uniform sweep is not run again
    (final,) = tmp_path.glob("search_quality-*.json")
    d = json.loads(final.read_text())
    assert [r["strategy"] for r in d["runs"]] == ["uniform", "random"]
    assert d["runs"][0] == uniform and set(d["summary"]) == {"uniform", "random"}
    assert [s["runs"] for s in d["sittings"]] == [[[0, "uniform"]], [[0, "random"]]]
    assert not partial.exists()
