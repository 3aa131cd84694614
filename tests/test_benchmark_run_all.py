"""benchmarks/run_all.py --resume: a set longer than a sitting is finished over several."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import run_all


def step(marker: Path, rc: int) -> list[str]:
    """A step that appends to ``marker`` (so reruns show) and exits with ``rc``."""
    return ["-c", f"open({str(marker)!r}, 'a').write('x'); print('RESULT ok=1'); raise SystemExit({rc})"]


def test_resume_keeps_finished_steps_and_runs_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    a, b, c = (tmp_path / n for n in "abc")
    monkeypatch.setattr(run_all, "SETS", {"t": [("a", step(a, 0)), ("b", step(b, 3)), ("c", step(c, 0))]})
    args = ["--set", "t", "--lock", "", "--no-readme"]
    assert run_all.main(args) == 1  # b failed; a and c finished
    first = json.loads((tmp_path / "run_all-t.json").read_text())
    assert [(r["step"], r["rc"]) for r in first["steps"]] == [("a", 0), ("b", 3), ("c", 0)]

    monkeypatch.setattr(run_all, "SETS", {"t": [("a", step(a, 0)), ("b", step(b, 0)), ("c", step(c, 0))]})
    assert run_all.main([*args, "--resume"]) == 0
    done = json.loads((tmp_path / "run_all-t.json").read_text())
    assert [(r["step"], r["rc"]) for r in done["steps"]] == [("a", 0), ("b", 0), ("c", 0)]
    assert (a.read_text(), b.read_text(), c.read_text()) == ("x", "xx", "x")  # only b ran again
    assert len(done["sittings"]) == 2
    assert done["wall_seconds"] >= first["wall_seconds"]


def test_resume_only_runs_the_named_unfinished_steps_into_the_set_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    a, b, c = (tmp_path / n for n in "abc")
    monkeypatch.setattr(run_all, "SETS", {"t": [("a", step(a, 0)), ("b", step(b, 0)), ("c", step(c, 0))]})
    args = ["--set", "t", "--lock", "", "--no-readme", "--resume"]
    assert run_all.main([*args, "--only", "c"]) == 0  # a first sitting: c alone
    assert run_all.main([*args, "--only", "a,c"]) == 0  # c is finished: only a runs
    done = json.loads((tmp_path / "run_all-t.json").read_text())
    assert [r["step"] for r in done["steps"]] == ["a", "c"]  # in the set's order
    assert (a.read_text(), c.read_text()) == ("x", "x")
    assert not b.exists() and not (tmp_path / "run_all-t-partial.json").exists()
    assert len(done["sittings"]) == 2

    assert run_all.main(args) == 0  # the whole set resumed: only b is left
    assert [r["step"] for r in json.loads((tmp_path / "run_all-t.json").read_text())["steps"]] == ["a", "b", "c"]
    assert (a.read_text(), b.read_text(), c.read_text()) == ("x", "x", "x")


def test_a_resumed_search_quality_step_goes_on_from_its_last_seed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    monkeypatch.setattr(run_all, "SETS", {"t": [("sq", [run_all.SQ, "--seeds", "3"]), ("other", ["x.py"])]})
    ran: list[list[str]] = []

    def run_step(name: str, cmd: list[str], lock: str | None) -> dict[str, object]:
        ran.append(cmd)
        return {"step": name, "command": cmd, "rc": 0, "wall_seconds": 0.0, "lock_wait_seconds": 0.0, "result": ""}

    monkeypatch.setattr(run_all, "run_step", run_step)
    args = ["--set", "t", "--lock", "", "--no-readme"]
    assert run_all.main(args) == 0
    assert ran == [[run_all.SQ, "--seeds", "3"], ["x.py"]]
    ran.clear()
    (tmp_path / "run_all-t.json").unlink()
    assert run_all.main([*args, "--resume"]) == 0
    assert ran == [[run_all.SQ, "--seeds", "3", "--resume"], ["x.py"]]  # search_quality.py --resume
