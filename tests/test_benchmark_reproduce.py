"""benchmarks/reproduce.py: quality figures must match exactly, timing within the band."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reproduce


def write(folder: Path, eval_ratio: float, naive_quality: float, sq: dict[str, float]) -> Path:
    folder.mkdir()
    (folder / "eval_cost.json").write_text(json.dumps({"eval_over_forward": eval_ratio, "naive_over_forward": 1.5}))
    (folder / "naive_optuna.json").write_text(json.dumps({"runs": [
        {"side": "naive", "seconds_per_evaluation": 2.5, "one_minus_fidelity": naive_quality},
        {"side": "bayesian", "seconds_per_evaluation": 1.2, "one_minus_fidelity": 0.386},
    ]}))
    (folder / "search_quality-s0.7-b64-n1-x.json").write_text(json.dumps({
        "mode": "budget", "started": "2026-11-30T01:00:00", "args": {"sparsity": 0.7, "budget": 64},
        "runs": [{"strategy": s, "seed": 0, "one_minus_fidelity": v} for s, v in sq.items()],
    }))
    return folder


def test_exact_figures_must_agree_and_timing_within_the_band(tmp_path: Path) -> None:
    old = write(tmp_path / "old", 1.02, 0.6166, {"uniform": 0.414, "evolutionary": 0.356})
    new = write(tmp_path / "new", 1.10, 0.6166, {"uniform": 0.414, "evolutionary": 0.351})
    rows = {r["figure"]: r for r in reproduce.compare(reproduce.figures(old), reproduce.figures(new))}
    assert rows["eval_cost: evaluation / forward"]["within"]  # +7.8%: timing noise
    assert rows["naive_optuna: naive 1 - fidelity"]["within"]
    assert rows["search_quality: s0.7 b64 uniform seed 0"]["within"]
    assert not rows["search_quality: s0.7 b64 evolutionary seed 0"]["within"]  # a quality change
    assert "OUTSIDE" in reproduce.render(list(rows.values()))


def test_timing_outside_the_band_is_reported(tmp_path: Path) -> None:
    old = write(tmp_path / "old", 1.0, 0.6, {})
    new = write(tmp_path / "new", 1.3, 0.6, {})
    rows = reproduce.compare(reproduce.figures(old), reproduce.figures(new))
    slow = next(r for r in rows if r["figure"] == "eval_cost: evaluation / forward")
    assert not slow["within"] and slow["delta"] == "+30.0%"
    assert reproduce.render(rows).endswith(f"compared={len(rows)} within={len(rows) - 1} outside=1")


def test_every_one_shot_method_is_compared_and_out_records_the_commits(tmp_path: Path) -> None:
    for side, seq in (("old", 0.2209), ("new", 0.2229)):
        folder = tmp_path / side
        folder.mkdir()
        (folder / "oneshot.json").write_text(json.dumps({
            "provenance": {"git_commit": f"{side}0000", "date": "d"},
            "runs": {"wanda_0.7": {"one_minus_fidelity": 0.414}, "sparsegpt_sequential_0.7": {"one_minus_fidelity": seq}}}))
        (folder / "causal_lm.json").write_text(json.dumps({
            "dense": 3.52, "methods": {"0.7": {"sparsegpt": {"perplexity": 4.65}, "wanda": {"perplexity": 6.21}}}}))
    out = tmp_path / "cmp.json"
    assert reproduce.main(["--reference", str(tmp_path / "old"), "--candidate", str(tmp_path / "new"), "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    rows = {r["figure"]: r["within"] for r in d["rows"]}
    assert rows == {"causal_lm: dense perplexity": True, "causal_lm: sparsegpt at 0.7 perplexity": True,
                    "causal_lm: wanda at 0.7 perplexity": True, "oneshot: wanda_0.7 one minus fidelity": True,
                    "oneshot: sparsegpt_sequential_0.7 one minus fidelity": False}
    assert d["files"]["reference"]["oneshot.json"]["git_commit"] == "old0000"


def test_files_limits_the_judgement_to_the_files_a_rerun_wrote(tmp_path: Path) -> None:
    old = write(tmp_path / "old", 1.0, 0.6, {"uniform": 0.414})
    new = write(tmp_path / "new", 1.0, 0.7, {"uniform": 0.414})  # naive_optuna differs, but was not rerun
    out = tmp_path / "cmp.json"
    assert reproduce.main(["--reference", str(old), "--candidate", str(new), "--out", str(out),
                           "--files", "search_quality-s0.7-b64-n1-x.json"]) == 0
    d = json.loads(out.read_text())
    assert [r["figure"] for r in d["rows"]] == ["search_quality: s0.7 b64 uniform seed 0"]
    assert list(d["files"]["candidate"]) == ["search_quality-s0.7-b64-n1-x.json"]


def test_files_must_name_files_of_the_candidate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old", 1.0, 0.6, {})
    new = write(tmp_path / "new", 1.0, 0.6, {})
    with pytest.raises(SystemExit):
        reproduce.main(["--reference", str(old), "--candidate", str(new), "--files", "eval_cost.json,nope.json"])
    assert "--files: ['nope.json'] are not files in --candidate" in capsys.readouterr().err


def front_file(folder: Path, name: str, levels_per_seed: list[dict[str, float]], options: dict[str, float]) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(json.dumps({
        "args": {"model": "minilm", "budget": 64, "reconstruction": "none", "options": options},
        "runs": [{"seed": i, "hypervolume": 0.33 + i / 1000, "levels": lv} for i, lv in enumerate(levels_per_seed)]}))


def test_a_front_rerun_of_fewer_seeds_is_judged_seed_by_seed(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    front_file(old, "pareto_front-minilm-b64-n3.json", [{"0.5": 0.87}, {"0.5": 0.86}, {"0.5": 0.85}], {})
    front_file(new, "pareto_front-minilm-b64-n1.json", [{"0.5": 0.87}], {})
    front_file(new, "pareto_front-minilm-fill0.1-b64-n1.json", [{"0.5": 0.99}], {"fill": 0.1})  # another setting
    (new / "pareto_front-minilm-b64-n3.partial.json").write_text("not read")
    rows = {r["figure"]: r["within"] for r in reproduce.compare(reproduce.figures(old), reproduce.figures(new))}
    assert rows == {"pareto_front: minilm b64 seed 0 hypervolume": True, "pareto_front: minilm b64 seed 0 front at 0.5": True}


def test_files_reads_a_figure_from_the_named_file_when_another_file_holds_it_too(tmp_path: Path) -> None:
    # The rerun of seed 0 sits beside the recorded 3-seed file, which sorts after it and
    # holds the same figures: --files must judge the rerun's values, not the recorded ones.
    old, new = tmp_path / "old", tmp_path / "new"
    front_file(old, "pareto_front-minilm-b64-n3.json", [{"0.5": 0.87}, {"0.5": 0.86}, {"0.5": 0.85}], {})
    front_file(new, "pareto_front-minilm-b64-n1.json", [{"0.5": 0.80}], {})
    front_file(new, "pareto_front-minilm-b64-n3.json", [{"0.5": 0.87}, {"0.5": 0.86}, {"0.5": 0.85}], {})
    out = tmp_path / "cmp.json"
    reproduce.main(["--reference", str(old), "--candidate", str(new), "--files", "pareto_front-minilm-b64-n1.json",
                    "--out", str(out)])
    rows = {r["figure"]: (r["candidate"], r["within"]) for r in json.loads(out.read_text())["rows"]}
    assert rows["pareto_front: minilm b64 seed 0 front at 0.5"] == (0.80, False)
    assert set(json.loads(out.read_text())["files"]["candidate"]) == {"pareto_front-minilm-b64-n1.json"}


def test_a_figure_made_by_another_model_names_the_change(tmp_path: Path) -> None:
    # The benchmark trains its Llama from scratch: on another CPU it can come out another
    # model, and every figure moves with it. The comparison must say so, not only "outside".
    for side, fp, cpu, ppl in (("old", "2366a215aa363673", "EPYC (family 25 model 1), torch AVX2", 3.548),
                               ("new", "f8a1bdfb4d7abe83", "EPYC (family 25 model 17), torch AVX512", 3.541)):
        (tmp_path / side).mkdir()
        (tmp_path / side / "causal_lm.json").write_text(json.dumps({
            "provenance": {"model_fingerprint": fp, "cpu": cpu, "git_commit": side, "date": "d"},
            "dense": ppl, "methods": {}}))
        (tmp_path / side / "eval_cost.json").write_text(json.dumps({  # the same model, no CPU recorded
            "provenance": {"model_fingerprint": "7aabbfe8c597fa72"}, "eval_over_forward": 1.0, "naive_over_forward": 1.5}))
    out = tmp_path / "cmp.json"
    reproduce.main(["--reference", str(tmp_path / "old"), "--candidate", str(tmp_path / "new"), "--out", str(out)])
    rows = {r["figure"]: r for r in json.loads(out.read_text())["rows"]}
    dense = rows["causal_lm: dense perplexity"]
    assert not dense["within"]
    assert dense["cause"] == ("another model: fingerprint 2366a215 -> f8a1bdfb; another CPU: EPYC (family 25 model 1), "
                              "torch AVX2 -> EPYC (family 25 model 17), torch AVX512")
    assert "cause" not in rows["eval_cost: evaluation / forward"]
    assert reproduce.changed({"model_fingerprint": "a"}, {}) is None  # only what both files record is compared
    # Settings are read from the named files alone (those the figures came from).
    assert set(reproduce.settings(tmp_path / "new", {"eval_cost.json"})) == {"eval_cost.json"}
    assert set(reproduce.settings(tmp_path / "new")) == {"causal_lm.json", "eval_cost.json"}


def test_the_provenance_records_the_cpu_and_torch_kernel_level() -> None:
    import _common
    import torch

    assert _common.cpu().endswith(f", torch {torch.backends.cpu.get_cpu_capability()}")
    assert _common.provenance({})["cpu"] == _common.cpu()


def test_the_results_page_groups_the_figures_of_another_model_under_its_cause() -> None:
    rows = [{"figure": "f1", "delta": "+0.2"}, {"figure": "s1", "delta": "-0.003"},
            {"figure": "f2", "delta": "-0.1"}]
    rows[0]["cause"] = rows[2]["cause"] = "another model: fingerprint a -> b"
    assert reproduce.readme_tables.listed(rows) == (
        "s1 -0.003; from another model: fingerprint a -> b, so not the same computation: f1 +0.2, f2 -0.1")
