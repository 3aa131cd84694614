"""The search's hot path: masks from cached scores applied in place, restored exactly."""

from __future__ import annotations

import pytest
import torch
from pruning.tiny import tiny_gpt2, tiny_llama, token_calibration

from prunetune.pruning.granularity import build_pruner, parse_granularity, search_entries
from prunetune.pruning.masks import Pruner, nm_pruned_index
from prunetune.pruning.scoring import score_layers, score_units


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("granularity", ["heads", "neurons", "blocks", "heads+neurons", "4:8", "unstructured"])
def test_apply_then_restore_is_bit_exact_and_changes_the_output(granularity: str) -> None:
    model = tiny_gpt2()
    gran = parse_granularity(granularity)
    entries, units = search_entries(model, gran)
    scores = score_units(model, units, "l2") if units else score_layers(model, entries, "magnitude")
    pruner = build_pruner(model, gran, entries, units, scores)
    batch = token_calibration(lm=False).batches[0]
    dense_params = _snapshot(model)
    with torch.no_grad():
        dense = model(input_ids=batch["input_ids"]).logits
        for _ in range(2):  # twice: a second candidate starts from the dense model again
            with pruner.applied([0.5] * len(entries)):
                pruned = model(input_ids=batch["input_ids"]).logits
            assert not torch.allclose(pruned, dense)
        after = model(input_ids=batch["input_ids"]).logits
    assert torch.equal(after, dense)
    for n, p in model.named_parameters():
        assert torch.equal(p, dense_params[n]), n


def test_structured_keep_masks_follow_the_scores() -> None:
    model = tiny_llama()
    gran = parse_granularity("heads")
    entries, units = search_entries(model, gran)
    scores = {u.name: torch.tensor([2.0, 1.0]) for u in units}
    masks = build_pruner(model, gran, entries, units, scores).keep_masks([0.5, 0.0])
    assert masks[units[0].name].tolist() == [True, False]  # the lower-scored kv group goes
    assert masks[units[1].name].tolist() == [True, True]


def test_nm_index_keeps_the_top_n_of_each_group() -> None:
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.0, 9.0, 8.0, 7.0]])
    rows, cols = nm_pruned_index(scores, 2, 4)
    assert sorted(cols.tolist()) == [1, 3, 4, 7]
    assert rows.tolist() == [0, 0, 0, 0]


def test_pruner_reports_nm_achieved_sparsity() -> None:
    model = tiny_llama()
    entries, _ = search_entries(model, parse_granularity("2:4"))
    pruner = Pruner(model, entries, score_layers(model, entries, "magnitude"), pattern="2:4")
    achieved = pruner.achieved([0.3] + [0.0] * (len(entries) - 1))
    assert achieved[0] == 0.5 and set(achieved[1:]) == {0.0}


def test_build_pruner_over_units_is_structured() -> None:
    """What a Ray actor does (workbench.assemble): build_pruner for a structured job."""
    from prunetune.pruning.structured import StructuredPruner

    model = tiny_llama()
    gran = parse_granularity("heads+neurons")
    entries, units = search_entries(model, gran)
    scores = score_units(model, units, "magnitude")
    pruner = build_pruner(model, gran, entries, units, scores, groups="row")
    assert isinstance(pruner, StructuredPruner)
    assert [u.name for u in pruner.units] == [e.name for e in entries]
    with pruner.applied([0.5] * len(entries)):
        assert (model.model.layers[0].mlp.up_proj.weight == 0).all(dim=1).sum() == 32
    assert (model.model.layers[0].mlp.up_proj.weight != 0).all()
