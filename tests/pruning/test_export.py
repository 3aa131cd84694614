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


def test_unstructured_export_holds_the_weights_once_and_reports_sizes(tmp_path: Path) -> None:
    """One copy of the weights (dense safetensors): no larger than the model itself saved
    by transformers, and each file's size on disk is in the manifest."""
    model = tiny_llama()
    model.save_pretrained(tmp_path / "original")
    prune(model, 0.5, granularity="2:4")
    export(model, tmp_path / "pruned")
    weights = sorted(p.name for p in (tmp_path / "pruned").glob("*.safetensors"))
    assert weights == ["model.safetensors"]
    original = (tmp_path / "original" / "model.safetensors").stat().st_size
    assert (tmp_path / "pruned" / "model.safetensors").stat().st_size <= original
    files = json.loads((tmp_path / "pruned" / "prunetune.json").read_text())["files"]
    assert files == {p.name: p.stat().st_size for p in (tmp_path / "pruned").iterdir() if p.name != "prunetune.json"}
    assert "generation_config.json" in files  # a causal LM's generation settings travel with it


@pytest.mark.parametrize(("granularity", "sparsity", "fmt"), [("2:4", 0.5, "sparse-24-bitmask"),
                                                             ("unstructured", 0.7, "sparse-bitmask")])
def test_compressed_tensors_export_reads_back_to_the_same_weights(
    tmp_path: Path, granularity: str, sparsity: float, fmt: str,
) -> None:
    """compressed-tensors (the format vLLM and llm-compressor read) decompresses the export
    to exactly the pruned weights, and the file is smaller than the dense export."""
    pytest.importorskip("compressed_tensors.compressors.sparse_compressors")
    from compressed_tensors.compressors import ModelCompressor

    model = tiny_llama()
    prune(model, sparsity, granularity=granularity)
    export(model, tmp_path / "dense")
    export(model, tmp_path / "ct", format="compressed-tensors")
    config = json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors"
    assert config["sparsity_config"]["format"] == fmt

    fresh = tiny_llama()  # other weights than the pruned model's until decompressed into it
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    ModelCompressor.from_pretrained(str(tmp_path / "ct")).decompress(str(tmp_path / "ct"), fresh)
    expected = model.state_dict()
    assert all(torch.equal(t, expected[k]) for k, t in fresh.state_dict().items())
    assert torch.equal(load_pruned(tmp_path / "ct").model.layers[1].mlp.up_proj.weight,
                       model.model.layers[1].mlp.up_proj.weight)
    size = (tmp_path / "ct" / "model.safetensors").stat().st_size
    assert size < 0.8 * (tmp_path / "dense" / "model.safetensors").stat().st_size


@pytest.mark.parametrize(("build", "granularity", "message"), [
    (tiny_llama, "heads", "cuts structures out"),
    (small_cnn, "unstructured", "is a plain module"),
])
def test_compressed_tensors_refuses_what_it_cannot_hold(tmp_path: Path, build: Callable[[], nn.Module],
                                                        granularity: str, message: str) -> None:
    model = build()
    prune(model, 0.5, granularity=granularity)
    with pytest.raises(ValueError, match=message):
        export(model, tmp_path, format="compressed-tensors")
    with pytest.raises(ValueError, match=r"format: got 'zip'; allowed: dense, compressed-tensors"):
        export(model, tmp_path, format="zip")


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
