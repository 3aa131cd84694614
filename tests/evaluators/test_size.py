"""Size and cost metrics on hand-made layers whose sizes can be counted by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunetune.evaluators.size import SizeMeter, measure_latency
from prunetune.pruning.layers import discover_layers


class Two(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(8, 4, bias=False)  # prunable: 32 weights
        self.head = nn.Linear(4, 2, bias=True)  # left dense: 8 + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # type: ignore[no-any-return]


def test_formats_and_flops_counted_by_hand() -> None:
    model = Two()
    with torch.no_grad():
        model.body.weight.fill_(1.0)
    meter = SizeMeter(model, discover_layers(model))
    dense = meter.measure()
    assert dense["bytes_fp32"] == 42 * 4 and dense["bytes_fp16"] == 42 * 2
    assert dense["flops_per_token"] == dense["sparse_flops_per_token"] == 2 * (32 + 8)
    with torch.no_grad():
        # 2:4 pattern: keep the first two of every four inputs, in rows 0-2; row 3 all gone.
        model.body.weight[:, 2::4] = 0
        model.body.weight[:, 3::4] = 0
        model.body.weight[3] = 0
    m = meter.measure()
    nnz = 3 * 4
    assert m["bytes_bitmask"] == 10 * 2 + 32 // 8 + nnz * 2
    assert m["bytes_csr"] == 10 * 2 + nnz * 6 + 5 * 4
    assert m["bytes_2_4"] == 10 * 2 + 32 + 32 / 8  # packed: 16 fp16 values + 2-bit indices
    assert m["sparse_flops_per_token"] == 2 * (nnz + 8)
    # Structured view: 3 live rows x 4 live columns.
    assert m["flops_per_token"] == 2 * (3 * 4 + 8)
    with torch.no_grad():
        model.body.weight[0, 2] = 1.0  # three of four kept in one group: not 2:4 any more
    assert meter.measure()["bytes_2_4"] == 10 * 2 + 32 * 2


def test_latency_is_a_median_of_repeats() -> None:
    calls = []
    lat = measure_latency(lambda: calls.append(1), repeats=5)
    assert len(calls) == 6 and lat >= 0  # one warm-up
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(lambda: None, repeats=0)


def test_evaluator_reports_size_and_latency() -> None:
    from helpers import digits_spec_dict

    from prunetune.engine.workbench import build_workbench
    from prunetune.spec import SearchSpec

    task = {"kind": "classification", "data": "digits", "calibration": 64, "search": 50, "report": 50, "latency_repeats": 3}
    bench = build_workbench(SearchSpec.from_dict(digits_spec_dict(task=task)))
    m = bench.evaluator.evaluate([0.5] * bench.space.dim)
    assert m["latency_seconds"] > 0
    assert m["bytes_bitmask"] < m["bytes_fp16"] < m["bytes_fp32"]
    assert m["sparse_flops_per_token"] < m["flops_per_token"]
