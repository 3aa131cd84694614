"""benchmarks/readme_tables.py: which front-search file it reads, and --check naming the stale page."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import readme_tables  # noqa: E402


def test_the_front_search_reads_the_file_with_the_most_seeds(tmp_path: Path) -> None:
    for name in ("pareto_front-minilm-b256-n1", "pareto_front-minilm-b256-n3", "pareto_front-minilm-b64-n3",
                 "pareto_front-llama-b64-n3", "pareto_front-minilm-sparsegpt-b64-n1",
                 "pareto_front-minilm-b256-n5.partial"):  # an interrupted run's checkpoint is not read
        (tmp_path / f"{name}.json").write_text("{}")
    assert [p.name for p in readme_tables.front_search_files(tmp_path)] == [
        "pareto_front-llama-b64-n3.json", "pareto_front-minilm-b256-n3.json", "pareto_front-minilm-b64-n3.json",
        "pareto_front-minilm-sparsegpt-b64-n1.json"]


@pytest.mark.parametrize("stale", ["README.md", "results.md"])
def test_check_names_the_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], stale: str) -> None:
    readme, page = tmp_path / "README.md", tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    shutil.copy(ROOT / "README.md", readme)
    shutil.copy(ROOT / "docs" / "results.md", page)
    monkeypatch.setattr(readme_tables, "README", readme)
    monkeypatch.setattr(readme_tables, "PAGE", page)
    monkeypatch.setattr(readme_tables, "FIGURE", tmp_path / "docs" / "results-fronts.png")
    assert readme_tables.main([]) == 0  # both brought up to date (CI checks the committed ones)
    assert readme_tables.main(["--check"]) == 0
    target = readme if stale == "README.md" else page
    target.write_text(target.read_text().replace("| 0.5 | 64 |", "| 0.5 | 65 |", 1))
    assert readme_tables.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert f"stale: {target}" in err
    assert err.count("stale:") == 1


def test_after_moves_lines_count_every_sitting_and_say_whose_figures_the_tables_show(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setattr(readme_tables, "RESULTS", tmp_path)
    (tmp_path / "recovery.json").write_text(json.dumps({"report_before": {"fidelity": 0.5}, "report_after": {"fidelity": 0.8}}))
    (tmp_path / "causal_lm.json").write_text(json.dumps({"dense": 3.55}))  # the recorded run, restored

    def row(figure: str, kind: str, ref: float, new: float, within: bool) -> dict[str, object]:
        return {"figure": figure, "kind": kind, "reference": ref, "candidate": new,
                "delta": "+0" if ref == new else f"{new - ref:+.4g}", "within": within}

    sittings = {  # the later sitting in the file that sorts first: ordered by date, not name
        "run_all-cpu-after-moves-2.json": ("2026-12-02T05:00:00", ["causal_lm"],
                                           [row("causal_lm: dense perplexity", "exact", 3.55, 3.52, False)]),
        "run_all-cpu-after-moves.json": ("2026-12-01T03:00:00", ["recovery", "store"],
                                         [row("recovery: fidelity after recovery", "exact", 0.8, 0.8, True),
                                          row("store: sqlite trials/s", "timing", 60.0, 15.0, False)]),
    }
    for name, (date, steps, rows) in sittings.items():
        (tmp_path / name).write_text(json.dumps({
            "provenance": {"date": date, "machine": "m"}, "steps": [{"step": s} for s in steps], "reproduction": rows}))
    lines = readme_tables.after_moves_lines()
    text = "\n".join(lines)
    assert "3 of its 10 steps, in 2 sittings" in text
    assert text.index("2026-12-01 03:00") < text.index("2026-12-02 05:00")
    assert "this sitting's figures for recovery; the recorded runs' for store" in text
    assert "the recorded runs' for causal_lm" in text  # 3.52 is not what causal_lm.json holds
    assert "Quality: 1 of 1 figures agree" in text and "Timing: 0 of 1 figures" in text  # the first sitting
    assert "Quality: 0 of 1 figures agree" in text and "causal_lm: dense perplexity -0.03" in text
    assert "same machine" not in text  # no same-machine comparison on record
    (tmp_path / "reproduce-moves-same-machine.json").write_text(json.dumps({
        "rows": [row("causal_lm: dense perplexity", "exact", 3.52, 3.52, True)],
        "files": {"reference": {"causal_lm.json": {"git_commit": "abcdef0123"}}}}))
    text = "\n".join(readme_tables.after_moves_lines())
    assert "moved (causal_lm), the code from before the moves (abcdef0)" in text
    assert "1 of 1 quality figures bit-identical" in text


def test_rerun_lines_report_each_rerun_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setattr(readme_tables, "RESULTS", tmp_path)
    assert readme_tables.rerun_lines() == []
    (tmp_path / "reproduce-rerun-x.json").write_text(json.dumps({
        "rows": [{"figure": "a", "kind": "exact", "reference": 1.0, "candidate": 1.0, "delta": "+0", "within": True},
                 {"figure": "b", "kind": "exact", "reference": 1.0, "candidate": 1.5, "delta": "+0.5", "within": False}],
        "files": {"candidate": {"f.json": {"date": "2026-12-01T06:00:00"}}}}))
    text = "\n".join(readme_tables.rerun_lines())
    assert "(2026-12-01): 1 of 2 figures reproduce, 1 of 2 quality figures bit-identical" in text
    assert "outside: b +0.5" in text


def test_a_wall_time_row_from_separate_runs_is_marked_with_its_runs(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setattr(readme_tables, "RESULTS", tmp_path)
    readme_tables.runs_of.cache_clear()
    for name, strategy, secs in (("a.json", "random", 100.0), ("a.json", "bayesian", 110.0), ("b.json", "evolutionary", 150.0)):
        path = tmp_path / name
        runs = json.loads(path.read_text())["runs"] if path.exists() else []
        path.write_text(json.dumps({"runs": [*runs, {"strategy": strategy, "seed": 0, "wall_seconds": secs}]}))
    cell = {"mean": 0.4, "spread": 0.0, "n": 1}
    cells = {(0.7, 64, "random"): {**cell, "file": "a.json", "date": "2026-11-30"},
             (0.7, 64, "bayesian"): {**cell, "file": "a.json", "date": "2026-11-30"},
             (0.7, 64, "evolutionary"): {**cell, "file": "b.json", "date": "2026-12-01"}}
    text = "\n".join(readme_tables.wall_table(cells, [(0.7, 64)]))
    readme_tables.runs_of.cache_clear()
    assert "| 0.7 | 64 † | 100 (1.00x) | 150 (1.50x) | 110 (1.10x) |  |" in text
    assert "0.7/64: random, bayesian from the run of 2026-11-30; evolutionary from the run of 2026-12-01" in text
    del cells[(0.7, 64, "evolutionary")]
    assert "†" not in "\n".join(readme_tables.wall_table(cells, [(0.7, 64)]))
    readme_tables.runs_of.cache_clear()


def test_bench_full_lines_count_the_steps_run_and_name_those_left(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import run_all

    monkeypatch.setattr(readme_tables, "RESULTS", tmp_path)
    assert readme_tables.bench_full_lines() == []
    first, second, third = (name for name, _ in run_all.FULL[:3])
    (tmp_path / "run_all-full.json").write_text(json.dumps({
        "sittings": [{"date": "2026-12-06"}, {"date": "2026-12-07"}],
        "steps": [{"step": first, "command": dict(run_all.FULL)[first], "rc": 0, "wall_seconds": 600.0},
                  {"step": second, "command": dict(run_all.FULL)[second], "rc": 1, "wall_seconds": 60.0}],
        "reproduction": [{"figure": "a", "kind": "exact", "delta": "+0", "within": True},
                         {"figure": "b", "kind": "exact", "delta": "+0.01", "within": False}]}))
    text = "\n".join(readme_tables.bench_full_lines())
    assert f"1 of {len(run_all.FULL)} steps run in 2 sittings ({first}; 10 min)" in text
    assert "1 of 2 reproduce (1 of 2 quality figures bit-identical); outside: b +0.01" in text
    assert f"Not yet run: {second}, {third}," in text  # a failed step is not run



def test_a_step_resumed_over_sittings_counts_the_runs_of_the_sittings_before_its_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # run_all times the sitting that finished the step; the earlier ones, cut short, are in
    # the step's result file, and a run copied from another seed ran in no sitting
    import json

    import run_all

    monkeypatch.setattr(readme_tables, "RESULTS", tmp_path)
    step = {"step": "search_quality_pareto_b256_n3", "command": dict(run_all.FULL)["search_quality_pareto_b256_n3"],
            "rc": 0, "wall_seconds": 600.0}
    runs = [{"seed": 0, "strategy": "uniform", "wall_seconds": 300.0},
            {"seed": 1, "strategy": "uniform", "wall_seconds": 300.0},  # copied
            {"seed": 0, "strategy": "random", "wall_seconds": 120.0},
            {"seed": 1, "strategy": "random", "wall_seconds": 540.0}]
    result = tmp_path / "search_quality-pareto-b256-n3-20261207T131602.json"
    result.write_text(json.dumps({"runs": runs, "sittings": [
        {"runs": [[0, "uniform"], [0, "random"]]}, {"runs": []}, {"runs": [[1, "random"]]}]}))
    assert readme_tables.earlier_sittings_seconds(step) == 420.0
    result.write_text(json.dumps({"runs": runs}))  # one sitting: run_all timed all of it
    assert readme_tables.earlier_sittings_seconds(step) == 0.0
    naive = {"step": "naive_optuna_evolutionary", "command": dict(run_all.FULL)["naive_optuna_evolutionary"]}
    assert readme_tables.earlier_sittings_seconds(naive) == 0.0


def test_a_front_level_within_two_standard_errors_of_the_quarter_budget_search_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    def level(front: list[float], quarter: list[float]) -> dict[str, object]:
        return {"front": sum(front) / 3, "front_runs": front, "budget_quarter": sum(quarter) / 3,
                "budget_quarter_runs": quarter, "uniform": 0.5}

    (tmp_path / "pareto_front-minilm-b256-n3.json").write_text(json.dumps({
        "args": {"seeds": 3, "budget": 256}, "quality": "fidelity", "dense": {},
        "summary": {"search_seconds": 1.0, "report_seconds": 1.0, "levels": {
            "0.5": level([0.877, 0.877, 0.8735], [0.8759, 0.8790, 0.8746]),  # 0.0007 behind, 2 SE 0.0035: a tie
            "0.6": level([0.78, 0.78, 0.78], [0.77, 0.77, 0.77]),  # ahead, no spread: a clear win
            "0.7": level([0.64, 0.65, 0.63], [0.635, 0.645, 0.625]),  # 0.005 ahead, 2 SE 0.0163: a close win
            "0.8": level([0.48, 0.48, 0.48], [0.49, 0.49, 0.49])}}}))  # 0.01 behind, no spread: a loss
    monkeypatch.setattr(readme_tables, "RESULTS", tmp_path)
    text = "\n".join(readme_tables.front_search_section())
    assert ("the front wins at 2 of 4 levels by the mean over seeds, but by less than two standard errors of the "
            "difference from the quarter-budget search at 0.7 (0.3600 against 0.3650; two standard errors 0.0163) "
            "and ties the quarter-budget search (behind by less than two standard errors) at 0.5 (0.1242 against "
            "0.1235; two standard errors 0.0035) (**not at every level**)") in text
