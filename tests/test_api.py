"""The one-shot API: prune(...) reports, allocation modes, and bad input named clearly."""

from __future__ import annotations

import pytest
import torch
from pruning.tiny import small_cnn, tiny_bert, tiny_gpt2, tiny_llama, token_calibration
from torch import nn

import prunetune
from prunetune.pruning.layers import discover_layers, weight_matrix


def _zeros(model: nn.Module) -> dict[str, float]:
    modules = dict(model.named_modules())
    return {
        layer.name: float((weight_matrix(modules[layer.name], layer) == 0).float().mean())
        for layer in discover_layers(model)
    }


def test_report_counts_parameters_per_layer() -> None:
    model = tiny_gpt2()
    report = prunetune.prune(model, {"transformer.h.0.mlp.c_fc": 0.5, "transformer.h.1.attn.c_attn": 0.25})
    rows = {r.name: r for r in report.layers}
    assert rows["transformer.h.0.mlp.c_fc"].params_before == 32 * 128
    assert rows["transformer.h.0.mlp.c_fc"].params_after == 32 * 128 // 2
    assert rows["transformer.h.1.attn.c_attn"].achieved == pytest.approx(0.25)
    assert rows["transformer.h.0.attn.c_proj"].requested == 0.0 == rows["transformer.h.0.attn.c_proj"].achieved
    assert report.params_before - report.params_after == 32 * 64 + 96 * 32 // 4
    assert "overall sparsity" in str(report)
    assert report.rows()[0]["name"] == "transformer.h.0.attn.c_attn"


def test_global_mode_meets_the_target_with_uneven_layers() -> None:
    model = tiny_bert()
    report = prunetune.prune(model, 0.6, mode="global", criterion="wanda", calibration=token_calibration(lm=False))
    assert report.sparsity == pytest.approx(0.6, abs=1e-3)
    achieved = [r.achieved for r in report.layers]
    assert max(achieved) - min(achieved) > 0.05  # one threshold, not a uniform split


def test_global_mode_over_structures_weighs_by_parameters() -> None:
    model = tiny_llama()
    report = prunetune.prune(model, 0.4, mode="global", granularity="neurons")
    assert report.sparsity == pytest.approx(0.4, abs=0.02)


def test_threshold_mode_prunes_below_the_normalised_threshold() -> None:
    model = tiny_gpt2()
    low = prunetune.prune(tiny_gpt2(), 0.5, mode="threshold").sparsity
    high = prunetune.prune(model, 1.0, mode="threshold").sparsity
    assert 0.0 < low < high < 1.0


def test_progressive_mode_reaches_the_target_and_keeps_pruned_weights_zero() -> None:
    model = tiny_llama()
    calls: list[int] = []

    def recover(m: nn.Module, step: int) -> None:  # stands in for fine-tuning: moves every weight
        calls.append(step)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.01)

    report = prunetune.prune(model, 0.6, mode="progressive", steps=3, recover=recover)
    assert calls == [1, 2, 3]
    assert all(z == pytest.approx(0.6, abs=1e-3) for z in _zeros(model).values())
    assert report.sparsity == pytest.approx(0.6, abs=1e-3)


def test_progressive_structured_removes_more_each_step() -> None:
    model = tiny_bert()
    seen: list[int] = []

    def recover(m: nn.Module, step: int) -> None:
        state = m._prunetune_state
        seen.append(sum(len(v) for v in state.removed.values()))

    prunetune.prune(model, 0.5, granularity="neurons", mode="progressive", steps=2, recover=recover)
    assert seen == [32, 64]  # 2 units x 64 neurons: a quarter, then half


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"allocation": 1.2}, r"must be in \[0, 1\); got 1.2"),
        ({"allocation": -0.1}, r"must be in \[0, 1\); got -0.1"),
        ({"allocation": {"model.layers.9.mlp.up_proj": 0.5}}, "unknown layer 'model.layers.9.mlp.up_proj'"),
        ({"allocation": [0.5, 0.5]}, "2 entries for 14 layers"),
        ({"allocation": 0.25, "granularity": "heads"}, "removing 1 of 4 query heads is incompatible with 2 key/value groups"),
        ({"allocation": 0.3, "granularity": "2:4"}, "gives sparsity 0.5 per layer; got 0.3"),
        ({"allocation": 0.5, "granularity": "5:3"}, "0 < N < M"),
        ({"allocation": 0.5, "granularity": "rows"}, "granularity 'rows' is unknown"),
        ({"allocation": 0.5, "criterion": "bn-gamma", "granularity": "heads"}, "does not support granularity 'heads'"),
        ({"allocation": 0.5, "mode": "cubic"}, "mode 'cubic' is unknown"),
        ({"allocation": 0.5, "criterion": "taylor"}, "needs calibration data"),
        ({"allocation": 0.5, "granularity": "channels"}, "has no Conv2d"),
    ],
)
def test_bad_input_is_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prunetune.prune(tiny_llama(), **kwargs)


def test_m_that_does_not_divide_the_input_dimension_is_named() -> None:
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"M=4 does not divide the input dimension 6 of '0'"):
        prunetune.prune(model, 0.5, granularity="2:4")


def test_apoz_on_heads_says_which_granularities_it_takes() -> None:
    with pytest.raises(ValueError, match="supports: neurons, channels"):
        prunetune.prune(small_cnn(), 0.5, criterion="apoz", granularity="heads")


def test_calibration_takes_what_a_tokenizer_returns_a_dataloader_and_tensors() -> None:
    """A tokenizer's BatchEncoding (alone or in a list) gives the masks a plain dict gives,
    and so does a DataLoader of dicts; a tensor batch calibrates a plain module."""
    from pydoc_data.topics import topics

    from torch.utils.data import DataLoader
    from transformers import BertModel, BertTokenizerFast

    from prunetune.engine.sources import minilm_path

    tok = BertTokenizerFast.from_pretrained(minilm_path(), local_files_only=True)
    enc = tok([topics[k][:400] for k in sorted(topics)[:8]], return_tensors="pt", padding=True)

    def pruned(calibration: object) -> dict[str, torch.Tensor]:
        model = BertModel.from_pretrained(minilm_path(), local_files_only=True).eval()
        prunetune.prune(model, 0.5, criterion="wanda", calibration=calibration)
        return {k: v.clone() for k, v in model.state_dict().items()}

    as_dict = pruned([dict(enc)])
    for form in ([enc], enc, DataLoader([dict(enc)], batch_size=None)):
        got = pruned(form)
        assert all(torch.equal(got[k], as_dict[k]) for k in as_dict)

    x = torch.randn(8, 16)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    report = prunetune.prune(model, 0.5, criterion="wanda", calibration=x)
    assert report.sparsity == pytest.approx(0.5)


@pytest.mark.parametrize(("calibration", "message"), [
    ("data.txt", r"calibration: got str; allowed: a batch or a list of batches"),
    (42, r"calibration: got int; allowed: .*DataLoader"),
    (["some text"], r"calibration\[0\]: got str; each batch is a BatchEncoding"),
])
def test_calibration_of_another_form_is_named(calibration: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        prunetune.prune(tiny_bert(), 0.5, criterion="wanda", calibration=calibration)
