"""Layer discovery on tiny real architectures: views, kinds, blocks, patterns."""

from __future__ import annotations

import pytest
import torch
from pruning.tiny import small_cnn, tiny_bert, tiny_gpt2, tiny_llama

from prunetune.pruning.layers import discover_layers, weight_matrix


def test_gpt2_conv1d_is_viewed_as_out_by_in_and_writes_through() -> None:
    model = tiny_gpt2()
    layers = {layer.name: layer for layer in discover_layers(model)}
    c_attn = layers["transformer.h.0.attn.c_attn"]
    assert (c_attn.rows, c_attn.cols, c_attn.transposed, c_attn.kind, c_attn.block) == (96, 32, True, "qkv", 0)
    assert layers["transformer.h.1.mlp.c_proj"].kind == "down"
    assert layers["transformer.h.1.attn.c_proj"].kind == "o"
    module = model.transformer.h[0].attn.c_attn
    view = weight_matrix(module, c_attn)
    view[5, 7] = 0.0
    assert module.weight[7, 5] == 0.0
    assert "lm_head" not in layers  # heads stay dense unless included


def test_llama_kinds_and_grouped_query_shapes() -> None:
    layers = discover_layers(tiny_llama())
    kinds = [layer.kind for layer in layers if layer.block == 1]
    assert kinds == ["q", "k", "v", "o", "gate", "up", "down"]
    q, k = layers[0], layers[1]
    assert (q.rows, k.rows) == (32, 16)  # 4 query heads, 2 key/value heads of 8


def test_bert_kinds() -> None:
    kinds = {layer.name.split("layer.0.")[-1]: layer.kind for layer in discover_layers(tiny_bert()) if layer.block == 0}
    assert kinds == {"attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
                     "attention.output.dense": "o", "intermediate.dense": "up", "output.dense": "down"}


def test_conv2d_is_viewed_as_out_by_patch() -> None:
    model = small_cnn()
    layers = {layer.name: layer for layer in discover_layers(model)}
    conv2 = layers["conv2"]
    assert (conv2.rows, conv2.cols) == (12, 8 * 9)
    view = weight_matrix(model.conv2, conv2)
    view[0].zero_()
    assert torch.all(model.conv2.weight[0] == 0)


def test_patterns_that_match_nothing_are_named() -> None:
    with pytest.raises(ValueError, match=r"space.exclude: pattern 'model.layers.7.\*' matches no"):
        discover_layers(tiny_llama(), exclude=("model.layers.7.*",))
    kept = discover_layers(tiny_llama(), include=("*.mlp.*", "lm_head"))
    assert {layer.kind for layer in kept} == {"gate", "up", "down", "other"}
