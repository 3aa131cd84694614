"""Recovery fine-tuning: pruned weights stay exactly zero, quality recovers, all restored."""

from __future__ import annotations

import pytest
import torch
from helpers import digits_spec_dict, minilm_spec_dict

from prunetune.engine.workbench import build_workbench
from prunetune.errors import SpecError
from prunetune.evaluators.recovery import Recovery
from prunetune.spec import RecoverySpec, SearchSpec

DIGITS_TASK = {"kind": "classification", "data": "digits", "calibration": 512, "search": 200, "report": 300}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _zeros_kept(bench, recovery: Recovery, sparsities: list[float]) -> None:  # type: ignore[no-untyped-def]
    masks = bench.pruner.keep_masks(sparsities)
    modules = dict(bench.loaded.model.named_modules())
    with bench.pruner.applied(sparsities):
        metrics = recovery.run()
        for layer in bench.layers:
            w = modules[layer.name].weight.detach()
            w = w.t() if layer.transposed else w
            pruned = ~masks[layer.name]
            assert int(pruned.sum()) > 0
            assert bool((w[pruned] == 0).all()), f"{layer.name}: a pruned weight moved"
            assert bool((w[~pruned] != 0).any())
        recovery.restore()
    assert metrics["recovery_steps"] > 0


@pytest.fixture(scope="module")
def digits_bench():  # type: ignore[no-untyped-def]
    return build_workbench(SearchSpec.from_dict(digits_spec_dict(task=DIGITS_TASK)))


@pytest.mark.parametrize("schedule", ["whole", "layer-wise", "cyclic"])
@pytest.mark.parametrize("distill", [True, False])
def test_pruned_weights_stay_exactly_zero_and_all_is_restored(digits_bench, schedule: str, distill: bool) -> None:  # type: ignore[no-untyped-def]
    spec = RecoverySpec(steps=20, distill=distill, lr=1e-2, batch_size=64, schedule=schedule, l1=1e-3, l2=1e-3)
    recovery = Recovery(digits_bench.loaded.model, digits_bench.task, digits_bench.layers, spec)
    before = _state(digits_bench.loaded.model)
    _zeros_kept(digits_bench, recovery, [0.8] * digits_bench.space.dim)
    after = _state(digits_bench.loaded.model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_recovery_improves_a_pruned_classifier_through_the_evaluator() -> None:
    plain = build_workbench(SearchSpec.from_dict(digits_spec_dict(task=DIGITS_TASK)))
    tuned = build_workbench(SearchSpec.from_dict(digits_spec_dict(
        task=DIGITS_TASK, recovery={"steps": 60, "distill": True, "lr": 3e-3, "batch_size": 64})))
    s = [0.9] * plain.space.dim
    before = plain.evaluator.evaluate(s, split="report")
    dense_state = _state(tuned.loaded.model)
    after = tuned.evaluator.evaluate(s, split="report")
    assert after["accuracy"] > before["accuracy"] + 0.02
    assert after["recovery_loss_last"] < after["recovery_loss_first"]
    assert all(torch.equal(dense_state[k], v) for k, v in _state(tuned.loaded.model).items())
    # Deterministic: the report re-score of a front point sees the same recovered model.
    assert tuned.evaluator.evaluate(s, split="report")["accuracy"] == after["accuracy"]


def test_minilm_recovery_with_embedding_distillation_keeps_zeros(minilm_bench) -> None:  # type: ignore[no-untyped-def]
    spec = RecoverySpec(steps=3, distill=True, batch_size=8, lr=1e-4)
    recovery = Recovery(minilm_bench.loaded.model, minilm_bench.task, minilm_bench.layers, spec)
    before = _state(minilm_bench.loaded.model)
    _zeros_kept(minilm_bench, recovery, [0.7] * minilm_bench.space.dim)
    assert all(torch.equal(before[k], v) for k, v in _state(minilm_bench.loaded.model).items())


def test_gpt2_conv1d_weights_stay_zero_with_the_lm_loss(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=256, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                           bos_token_id=0, eos_token_id=0)).save_pretrained(tmp_path)
    spec = SearchSpec.from_dict({
        "model": {"path": str(tmp_path)},
        "task": {"kind": "causal-lm", "calibration": 8, "search": 4, "report": 4, "max_length": 32},
        "space": {"criterion": "magnitude", "max": 0.9},
        "recovery": {"steps": 5, "lr": 1e-2, "batch_size": 4},
    })
    bench = build_workbench(spec)
    assert any(layer.transposed for layer in bench.layers)
    _zeros_kept(bench, bench.evaluator.recovery, [0.6] * bench.space.dim)


def test_task_without_a_loss_and_no_distillation_names_the_field(digits_bench) -> None:  # type: ignore[no-untyped-def]
    """A task with no supervised loss of its own (a user's Task subclass) cannot recover
    without distillation: the error names recovery.distill and the weights come back."""
    from prunetune.evaluators.classification import ClassificationTask
    from prunetune.evaluators.tasks import Task

    class NoLoss(ClassificationTask):
        loss = Task.loss

    task = NoLoss(digits_bench.loaded, digits_bench.spec.task)
    recovery = Recovery(digits_bench.loaded.model, task, digits_bench.layers, RecoverySpec(steps=1, distill=False))
    before = _state(digits_bench.loaded.model)
    with digits_bench.pruner.applied([0.5] * digits_bench.space.dim), pytest.raises(SpecError, match=r"recovery\.distill"):
        try:
            recovery.run()
        finally:
            recovery.restore()
    after = _state(digits_bench.loaded.model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_spec_accepts_recovery_and_rejects_bad_values() -> None:
    spec = SearchSpec.from_dict(minilm_spec_dict(recovery={"steps": 100, "distill": True, "schedule": "cyclic"}))
    assert spec.recovery.steps == 100 and spec.recovery.schedule == "cyclic"
    with pytest.raises(SpecError, match=r"recovery\.schedule"):
        SearchSpec.from_dict(minilm_spec_dict(recovery={"steps": 1, "schedule": "sometimes"}))
    with pytest.raises(SpecError, match=r"recovery\.lr"):
        SearchSpec.from_dict(minilm_spec_dict(recovery={"steps": 1, "lr": 0}))
