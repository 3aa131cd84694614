"""Every supported criterion x granularity pair, on tiny real models: the achieved
structure is what was asked for (exact counts per comparison group, N:M groups, whole
heads / neurons / blocks / channels gone)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from pruning.tiny import (
    image_calibration,
    small_cnn,
    tiny_bert,
    tiny_gpt2,
    tiny_llama,
    token_calibration,
)
from torch import nn

from prunetune.api import prune
from prunetune.pruning.calibration import Calibration
from prunetune.pruning.export import STATE_ATTR
from prunetune.pruning.granularity import SUPPORTED
from prunetune.pruning.layers import discover_layers, weight_matrix

# family -> (granularity name, model builder, calibration builder)
SETUPS: dict[str, tuple[str, Callable[[], nn.Module], Callable[[], Calibration]]] = {
    "unstructured": ("unstructured", tiny_gpt2, token_calibration),
    "N:M": ("2:4", tiny_llama, token_calibration),
    "heads": ("heads", tiny_llama, token_calibration),
    "neurons": ("neurons", tiny_bert, lambda: token_calibration(lm=False)),
    "blocks": ("blocks", tiny_bert, lambda: token_calibration(lm=False)),
    "channels": ("channels", small_cnn, image_calibration),
}
PAIRS = [(c, f) for c, fams in SUPPORTED.items() for f in SETUPS if f in fams]
OPTIONS = {"monte-carlo": {"samples": 4, "rate": 0.3}}


def _state(model: nn.Module):  # type: ignore[no-untyped-def]
    return getattr(model, STATE_ATTR)


@pytest.mark.parametrize(("criterion", "family"), PAIRS, ids=[f"{c}-{f}" for c, f in PAIRS])
def test_pair_achieves_the_structure(criterion: str, family: str) -> None:
    granularity, build, calibration = SETUPS[family]
    model = build()
    report = prune(model, 0.5, criterion=criterion, granularity=granularity, calibration=calibration(),
                   criterion_options=OPTIONS.get(criterion))
    assert report.layers and all(r.achieved == pytest.approx(0.5) for r in report.layers)
    assert report.params_after < report.params_before
    modules = dict(model.named_modules())
    if family in ("unstructured", "N:M"):
        for layer in discover_layers(model):
            w = weight_matrix(modules[layer.name], layer)
            if family == "unstructured":  # row groups: every row loses exactly half
                assert torch.all((w == 0).sum(dim=1) == layer.cols // 2), layer.name
            else:  # at most (here exactly) 2 nonzeros in every group of 4 inputs
                assert torch.all((w.reshape(layer.rows, -1, 4) != 0).sum(-1) == 2), layer.name
        return
    state = _state(model)
    tensors = dict(model.named_parameters())
    for unit in state.units:
        gone = state.removed[unit.name]
        assert len(gone) == unit.count // 2, unit.name
        if unit.kind == "blocks":
            seen: dict[int, bool] = {}
            for j, name in enumerate(unit.blocks):
                modules[name].register_forward_hook(
                    lambda m, a, kw, out, j=j, seen=seen: seen.__setitem__(j, torch.equal(out, a[0] if a else kw["hidden_states"])),
                    with_kwargs=True,
                )
            batch = token_calibration(lm=False).batches[0]
            with torch.no_grad():
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            assert sorted(j for j, same in seen.items() if same) == gone
            continue
        kept = [j for j in range(unit.count) if j not in gone]
        for sl in unit.slices:
            if not sl.zero:
                continue
            t = tensors[sl.tensor]
            assert torch.all(t.index_select(sl.dim, torch.tensor(sl.index(gone))) == 0), sl.tensor
            if sl.tensor.endswith("weight"):
                assert torch.any(t.index_select(sl.dim, torch.tensor(sl.index(kept))) != 0), sl.tensor


def test_every_registered_criterion_has_a_test() -> None:
    assert {c for c, _ in PAIRS} == set(SUPPORTED)


def test_conv_layers_prune_unstructured_on_their_patch_view() -> None:
    model = small_cnn()
    prune(model, 0.5, criterion="wanda", calibration=image_calibration(), include=("conv*",))
    w = model.conv2.weight.reshape(12, -1)
    assert torch.all((w == 0).sum(dim=1) == w.shape[1] // 2)
    assert torch.count_nonzero(model.fc.weight) == model.fc.weight.numel()
