"""`prunetune run` as a user runs it: a real process, real files, real SQLite."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import digits_spec_dict

import prunetune

BIN = Path(sys.executable).parent / "prunetune"


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(prunetune.__file__).parents[1]))
    return subprocess.run([str(BIN), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"strategy": {"name": "annealing"}}, "strategy.name"),
        ({"target": {"sparsity": 1.5}}, "target.sparsity"),
        ({"model": {"path": "./no-such-model"}, "task": {"kind": "embedding"}}, "model.path"),
        ({"strategy": {"name": "random", "options": {"spread": 5}}}, "strategy.options.spread"),
        ({"strategy": {"name": "random", "options": {"temperature": 1}}}, "strategy.options"),
    ],
)
def test_bad_spec_exits_nonzero_with_one_line_and_writes_nothing(tmp_path: Path, change: dict, field: str) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(digits_spec_dict(**change)))
    proc = _run(["run", str(spec), "--db", f"sqlite:///{tmp_path / 'jobs.db'}", "--out", "out"], tmp_path)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and f"'{field}'" in lines[0]
    assert not (tmp_path / "jobs.db").exists()
    assert not (tmp_path / "out").exists()


def test_run_digits_writes_front_and_trials(tmp_path: Path) -> None:
    spec = tmp_path / "digits.yaml"
    spec.write_text(yaml.safe_dump(digits_spec_dict(budget={"trials": 12})))
    proc = _run(["run", str(spec), "--db", f"sqlite:///{tmp_path / 'jobs.db'}", "--out", "out"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Pareto front" in proc.stdout and "dense reference" in proc.stdout
    with open(tmp_path / "out" / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    assert len(trials) == 12
    with open(tmp_path / "out" / "front.csv") as f:
        front = list(csv.DictReader(f))
    assert front
    sizes = [int(row["nonzero_params"]) for row in front]
    qualities = [float(row["search_accuracy"]) for row in front]
    assert sizes == sorted(sizes) and qualities == sorted(qualities)  # non-dominated staircase
    assert all(row["report_accuracy"] for row in front)
    payload = json.loads((tmp_path / "out" / "front.json").read_text())
    assert payload["provenance"]["model_fingerprint"]
    assert set(payload["front"][0]["allocation"]) == {"fc1", "fc2"}


@pytest.mark.slow
def test_resume_by_study_name_continues(tmp_path: Path) -> None:
    spec = tmp_path / "digits.yaml"
    spec.write_text(yaml.safe_dump(digits_spec_dict(budget={"trials": 5})))
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    first = _run(["run", str(spec), "--db", db, "--study", "s1"], tmp_path)
    assert first.returncode == 0, first.stderr
    spec.write_text(yaml.safe_dump(digits_spec_dict(budget={"trials": 9})))
    second = _run(["run", str(spec), "--db", db, "--study", "s1"], tmp_path)
    assert second.returncode == 0, second.stderr
    import optuna

    study = optuna.load_study(study_name="s1", storage=db)
    trials = study.get_trials()
    assert len(trials) == 9 and sorted(t.number for t in trials) == list(range(9))


def test_output_to_a_log_is_a_plain_front_table(tmp_path: Path) -> None:
    """Not a terminal (a log file, CI, `| tee`): the front is plain columns, not a rich
    table squeezed to 80 characters of `…`; `prunetune front JOB` reads the same."""
    spec = tmp_path / "digits.yaml"
    spec.write_text(yaml.safe_dump(digits_spec_dict(budget={"trials": 8}, report={"baselines": []})))
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TERM")}
    env["PYTHONPATH"] = str(Path(prunetune.__file__).parents[1])
    proc = subprocess.run([str(BIN), "run", str(spec), "--db", db, "--out", "out"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    lines = proc.stdout.splitlines()
    head = lines.index("Pareto front (accuracy on the REPORT split)")
    assert lines[head + 1].split() == ["trial", "sparsity", "nonzero_params", "report_accuracy"]
    with open(tmp_path / "out" / "front.csv") as f:
        front = list(csv.DictReader(f))
    printed = [ln.split() for ln in lines[head + 2 : head + 2 + len(front)]]
    assert printed == [[r["trial"], f"{float(r['sparsity']):.4f}", r["nonzero_params"],
                        f"{float(r['report_accuracy']):.4f}"] for r in front]
    assert lines[head + 2 + len(front)].startswith("dense reference (REPORT split): accuracy=")

    job = lines[-1].split()[1]
    shown = subprocess.run([str(BIN), "front", job, "--db", db], cwd=tmp_path, capture_output=True,
                           text=True, env=env, timeout=600)
    assert shown.returncode == 0, shown.stderr
    assert "…" not in shown.stdout
    # The job `run` recorded has a report like a submitted job.
    report = subprocess.run([str(BIN), "report", job, "--out", "report.html", "--db", db], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=600)
    assert report.returncode == 0, report.stderr
    assert f"job {job}: digits-test (succeeded)" in (tmp_path / "report.html").read_text()
    table = [ln.split() for ln in shown.stdout.splitlines()[1:]]
    assert table[0] == ["trial", "sparsity", "nonzero_params", "search_accuracy", "report_accuracy"]
    assert [[r[0], r[4]] for r in table[1:]] == [[p[0], p[3]] for p in printed]
