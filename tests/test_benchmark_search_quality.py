"""benchmarks/search_quality.py and pareto_front.py: a Pareto-mode hypervolume is of the whole front."""

from __future__ import annotations

import json
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
