"""Export round trips: ``load_pruned(export(m))`` computes what the masked model
computes, plain ``from_pretrained`` reads the unstructured export, and the compressed
and structured forms are really smaller."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

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

from prunetune.api import export, load_pruned, prune


def _tokens() -> dict[str, torch.Tensor]:
    batch = token_calibration(lm=False).batches[0]
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def _out(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = model(**inputs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


CASES: list[tuple[str, Callable[[], nn.Module], str, float]] = [
    ("llama", tiny_llama, "heads+neurons", 0.5),
    ("llama", tiny_llama, "blocks", 0.5),
    ("gpt2", tiny_gpt2, "heads+neurons", 0.25),
    ("gpt2", tiny_gpt2, "blocks", 0.5),
    ("bert", tiny_bert, "heads+neurons", 0.5),
    ("bert", tiny_bert, "unstructured", 0.6),
    ("llama", tiny_llama, "2:4", 0.5),
    ("gpt2", tiny_gpt2, "4:8", 0.5),
]


@pytest.mark.parametrize(("arch", "build", "granularity", "sparsity"), CASES,
                         ids=[f"{a}-{g}" for a, _, g, _ in CASES])
def test_round_trip_matches_the_masked_model(
    tmp_path: Path, arch: str, build: Callable[[], nn.Module], granularity: str, sparsity: float
) -> None:
    model = build()
    cal = token_calibration(lm=arch != "bert")
    prune(model, sparsity, criterion="taylor", granularity=granularity, calibration=cal)
    inputs = _tokens()
    expected = _out(model, inputs)
    loaded = load_pruned(export(model, tmp_path / "out"))
    got = _out(loaded, inputs)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-5
    manifest = json.loads((tmp_path / "out" / "prunetune.json").read_text())
    if granularity in ("heads+neurons", "blocks"):
        assert manifest["kind"] == "structured"
        assert _params(loaded) < _params(model)
        assert not list((tmp_path / "out").glob("model*.safetensors"))
    else:
        assert manifest["kind"] == "unstructured"


def test_structured_shapes_are_recorded_and_heads_follow_kv_groups(tmp_path: Path) -> None:
    model = tiny_llama()  # 4 query heads in 2 kv groups, head size 8
    prune(model, {"model.layers.0.self_attn": 0.5}, granularity="heads")
    export(model, tmp_path)
    shapes = json.loads((tmp_path / "prunetune.json").read_text())["shapes"]
    assert shapes["model.layers.0.self_attn.q_proj.weight"] == [16, 32]  # 2 of 4 query heads left
    assert shapes["model.layers.0.self_attn.k_proj.weight"] == [8, 32]  # 1 of 2 kv heads left
    assert shapes["model.layers.0.self_attn.o_proj.weight"] == [32, 16]
    assert "model.layers.1.self_attn.q_proj.weight" not in shapes
    loaded = load_pruned(tmp_path)
    assert loaded.model.layers[0].self_attn.q_proj.out_features == 16


def test_unstructured_export_loads_with_plain_from_pretrained(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = tiny_llama()
    prune(model, 0.7, criterion="magnitude")
    export(model, tmp_path)
    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path), local_files_only=True)
    q = plain.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(q, model.model.layers[0].self_attn.q_proj.weight)
    assert (q == 0).float().mean() == pytest.approx(0.7, abs=1e-3)
    inputs = _tokens()
    assert (_out(plain.eval(), inputs) - _out(model, inputs)).abs().max() <= 1e-5


def test_compressed_form_is_smaller_on_disk(tmp_path: Path) -> None:
    model = tiny_bert()
    prune(model, 0.5, granularity="2:4")
    export(model, tmp_path)
    dense = (tmp_path / "model.safetensors").stat().st_size
    compressed = (tmp_path / "compressed.safetensors").stat().st_size
    assert compressed < dense
    # Only the pruned matrices shrink (embeddings stay dense): 32 of 49 KB here.
    assert compressed < 0.9 * dense


def test_cnn_channels_round_trip_through_a_dense_skeleton(tmp_path: Path) -> None:
    model = small_cnn()
    prune(model, {"conv1": 0.5, "conv2": 0.25}, criterion="bn-gamma", granularity="channels")
    x = image_calibration().batches[0][0]
    with torch.no_grad():
        expected = model(x)
    export(model, tmp_path)
    with pytest.raises(ValueError, match="pass model="):
        load_pruned(tmp_path)
    loaded = load_pruned(tmp_path, model=small_cnn())
    assert loaded.conv1.out_channels == 4 and loaded.bn1.num_features == 4
    assert loaded.conv2.in_channels == 4 and loaded.conv2.out_channels == 9
    assert loaded.fc.in_features == 9 * 16
    with torch.no_grad():
        assert (loaded(x) - expected).abs().max() <= 1e-5


def test_cnn_unstructured_round_trip(tmp_path: Path) -> None:
    model = small_cnn()
    prune(model, 0.5, criterion="taylor", calibration=image_calibration())
    x = image_calibration().batches[0][0]
    with torch.no_grad():
        expected = model(x)
        got = load_pruned(export(model, tmp_path), model=small_cnn())(x)
    assert (got - expected).abs().max() <= 1e-5


def test_load_pruned_rejects_a_directory_that_is_not_an_export(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a prunetune export"):
        load_pruned(tmp_path)
    (tmp_path / "prunetune.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="format 'other'"):
        load_pruned(tmp_path)


def test_export_inside_a_search_pruner_is_structured(tmp_path: Path) -> None:
    """What the service's trial export does: apply an allocation, export, restore."""
    from prunetune.pruning.granularity import build_pruner, parse_granularity, search_entries
    from prunetune.pruning.scoring import score_units

    model = tiny_bert()
    gran = parse_granularity("heads+neurons")
    entries, units = search_entries(model, gran)
    pruner = build_pruner(model, gran, entries, units, score_units(model, units, "l2"))
    inputs = _tokens()
    with pruner.applied([0.5, 0.25] * 2):
        expected = _out(model, inputs)
        export(model, tmp_path)
    assert not hasattr(model, "_prunetune_state")
    loaded = load_pruned(tmp_path)
    assert loaded.encoder.layer[0].intermediate.dense.out_features == 48
    assert (_out(loaded, inputs) - expected).abs().max() <= 1e-5
