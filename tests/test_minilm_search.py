"""The foundation on the real all-MiniLM-L6-v2: exact sparsity, exact restore, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunetune.engine.runner import run_job
from prunetune.engine.workbench import Workbench
from prunetune.pruning.layers import weight_matrix
from prunetune.pruning.masks import Pruner
from prunetune.spaces.budget import project_sparsities
from prunetune.spec import SearchSpec


def _weights(bench: Workbench) -> dict[str, torch.Tensor]:
    modules = dict(bench.loaded.model.named_modules())
    return {layer.name: weight_matrix(modules[layer.name], layer) for layer in bench.layers}


def test_discovers_the_36_body_layers(minilm_bench: Workbench) -> None:
    names = minilm_bench.space.names
    assert len(names) == 36
    assert not any("pooler" in n or "embeddings" in n for n in names)
    assert sum(minilm_bench.space.numels) == 10_616_832
    kinds = {layer.kind for layer in minilm_bench.layers}
    assert kinds == {"q", "k", "v", "o", "up", "down"}


def test_requested_sparsity_is_achieved_exactly(minilm_bench: Workbench) -> None:
    rng = np.random.default_rng(3)
    space = minilm_bench.space
    alloc = project_sparsities(rng.uniform(0, 0.9, space.dim), space.numels, 0.63, [0.0] * space.dim, [0.9] * space.dim)
    pruner = minilm_bench.pruner
    masks = pruner.keep_masks(alloc)
    dense = {k: v.clone() for k, v in _weights(minilm_bench).items()}
    with pruner.applied(alloc):
        live = _weights(minilm_bench)
        pruned_total = 0
        for layer, s in zip(minilm_bench.layers, alloc, strict=True):
            k = round(s * layer.numel)
            mask = masks[layer.name]
            w = live[layer.name]
            assert int((~mask).sum()) == k
            assert torch.all(w[~mask] == 0)
            assert torch.equal(w[mask], dense[layer.name][mask])
            # Row comparison groups: every row loses k // rows or one more.
            per_row = (~mask).sum(dim=1)
            base = k // layer.rows
            assert set(per_row.unique().tolist()) <= {base, base + 1}
            pruned_total += k
        assert pruned_total == round(0.63 * space.prunable_params)


def test_pruned_weights_are_the_least_important(minilm_bench: Workbench, minilm_spec: SearchSpec) -> None:
    layer = minilm_bench.layers[4]
    from prunetune.engine.workbench import compute_scores

    scores = compute_scores(minilm_bench.loaded, minilm_bench.task, [layer], "wanda")[layer.name]
    k = layer.cols // 2 * layer.rows  # exactly half of each row
    mask = Pruner(minilm_bench.loaded.model, [layer], {layer.name: scores}).keep_masks([k / layer.numel])[layer.name]
    pruned_max = torch.where(~mask, scores, torch.tensor(float("-inf"))).max(dim=1).values
    kept_min = torch.where(mask, scores, torch.tensor(float("inf"))).min(dim=1).values
    assert torch.all(pruned_max <= kept_min)


def test_layer_comparison_group_is_exact_per_layer(minilm_bench: Workbench) -> None:
    layer = minilm_bench.layers[0]
    scores = torch.rand(layer.rows, layer.cols, generator=torch.Generator().manual_seed(0))
    pruner = Pruner(minilm_bench.loaded.model, [layer], {layer.name: scores}, groups="layer")
    mask = pruner.keep_masks([0.3])[layer.name]
    k = round(0.3 * layer.numel)
    assert int((~mask).sum()) == k
    assert scores[~mask].max() <= scores[mask].min()


def test_restore_is_bit_identical(minilm_bench: Workbench) -> None:
    model = minilm_bench.loaded.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for level in (0.2, 0.5, 0.9):
        minilm_bench.pruner.apply([level] * minilm_bench.space.dim)
        changed = sum(int((model.state_dict()[k] != before[k]).sum()) for k in before)
        assert changed > 0
        minilm_bench.pruner.restore()
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k


def test_evaluation_restores_and_degrades_with_sparsity(minilm_bench: Workbench) -> None:
    ev = minilm_bench.evaluator
    dim = minilm_bench.space.dim
    dense = ev.evaluate([0.0] * dim)
    light = ev.evaluate([0.3] * dim)
    heavy = ev.evaluate([0.85] * dim)
    assert dense["fidelity"] == pytest.approx(1.0, abs=1e-5)
    assert dense["fidelity"] > light["fidelity"] > heavy["fidelity"]
    assert light["nonzero_params"] > heavy["nonzero_params"]
    again = ev.evaluate([0.3] * dim)
    assert again["fidelity"] == light["fidelity"]


@pytest.mark.slow
def test_same_seed_gives_same_trials(minilm_bench: Workbench, minilm_spec: SearchSpec, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runs = []
    for i in range(2):
        outcome = run_job(minilm_spec, db=f"sqlite:///{tmp_path / f'{i}.db'}", bench=minilm_bench)
        runs.append([(r.candidate.sparsities, r.quality, r.size) for r in outcome.results])
    assert len(runs[0]) == minilm_spec.budget.trials
    assert runs[0] == runs[1]
    other = SearchSpec.from_dict({**minilm_spec.to_dict(), "seed": 1})
    third = run_job(other, db=f"sqlite:///{tmp_path / 'other.db'}", bench=minilm_bench)
    assert [r.candidate.sparsities for r in third.results] != [s for s, _, _ in runs[0]]


@pytest.mark.slow
def test_front_is_scored_on_the_report_split(minilm_bench: Workbench, minilm_spec: SearchSpec, tmp_path) -> None:  # type: ignore[no-untyped-def]
    outcome = run_job(minilm_spec, db=f"sqlite:///{tmp_path / 'f.db'}", bench=minilm_bench, out_dir=tmp_path / "out")
    assert outcome.front
    ev = minilm_bench.evaluator
    apart = 0
    for point in outcome.front:
        report = outcome.reports[point.number]
        # The same candidate scored here on each split: the front's figure is REPORT's,
        # not the search split's (which the search ranked by).
        on = {s: ev.evaluate(point.candidate.sparsities, split=s)["fidelity"] for s in ("search", "report")}
        assert point.quality == pytest.approx(on["search"], abs=1e-7)
        assert report["fidelity"] == pytest.approx(on["report"], abs=1e-7)
        # Near-dense points score about 1 on both splits; the others tell them apart.
        if abs(on["report"] - on["search"]) > 1e-4:
            apart += 1
            assert abs(report["fidelity"] - point.quality) > 1e-4
        assert 0.0 <= report["retrieval_at_1"] <= 1.0
    assert apart >= 1
    assert 0.0 < outcome.dense["retrieval_at_1"] <= 1.0
    for name in ("front.csv", "front.json", "front.html", "trials.csv"):
        assert (tmp_path / "out" / name).stat().st_size > 0


@pytest.mark.slow
def test_search_quality_scores_the_validation_split_when_asked(minilm_bench: Workbench, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``benchmarks/search_quality.py --score-split validation``: the best allocation's
    figure is its validation-split score (not REPORT's), in a file the README never reads."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import search_quality

    # The fixture's splits and space, so the figure can be checked on the fixture's bench.
    args = ["--strategies", "uniform,random", "--budget", "2", "--calibration", "16", "--search", "32",
            "--report", "32", "--max", "0.9", "--threads", "1", "--score-split", "validation", "--out", str(tmp_path)]
    assert search_quality.main(args) == 0
    (path,) = tmp_path.glob("search_quality*.json")
    assert path.name.startswith("search_quality_validation-s0.7-b2-n1-")
    result = json.loads(path.read_text())
    assert result["score_split"] == "validation"
    ev = minilm_bench.evaluator
    for row in result["runs"]:
        alloc = [row["allocation"][n] for n in minilm_bench.space.names]
        on = {s: ev.evaluate(alloc, split=s)["fidelity"] for s in ("search", "report", "validation")}
        assert row["validation_fidelity"] == pytest.approx(on["validation"], abs=1e-5)
        assert row["one_minus_fidelity"] == pytest.approx(1 - on["validation"], abs=1e-5)
        assert row["search_fidelity"] == pytest.approx(on["search"], abs=1e-5)
        assert abs(on["validation"] - on["report"]) > 1e-4 and "report_fidelity" not in row


@pytest.mark.slow
def test_search_quality_stops_a_screened_search_at_the_others_wall_time(  # type: ignore[no-untyped-def]
        minilm_bench: Workbench, tmp_path) -> None:
    """The equal-wall-time figure: a screened evolutionary search's best among the results
    told by the time random finished, scored on the same split as the table."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import search_quality

    args = ["--strategies", "random,evolutionary", "--budget", "3", "--calibration", "16", "--search", "32",
            "--report", "32", "--max", "0.9", "--threads", "1", "--score-split", "validation", "--out", str(tmp_path)]
    assert search_quality.main(args) == 0
    (path,) = tmp_path.glob("search_quality*.json")
    runs = {r["strategy"]: r for r in json.loads(path.read_text())["runs"]}
    rnd, evo = runs["random"], runs["evolutionary"]
    assert "_timeline" not in evo and "equal_wall" not in rnd  # random is not screened
    eq = evo["equal_wall"]
    assert eq["seconds"] == pytest.approx(rnd["search_seconds"], abs=0.06) and eq["against"] == ["random"]
    assert 1 <= eq["full_evaluations"] <= evo["full_evaluations"]
    alloc = [eq["allocation"][n] for n in minilm_bench.space.names]
    on = minilm_bench.evaluator.evaluate(alloc, split="validation")["fidelity"]
    assert eq["one_minus_fidelity"] == pytest.approx(1 - on, abs=1e-5)
    # by then its best on the search split was at most its final best
    assert eq["search_fidelity"] <= evo["search_fidelity"] + 1e-9
