"""Tiny real models built from config or code (no downloads), and calibration for them."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from prunetune.pruning.calibration import Calibration

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_llama() -> nn.Module:
    """Llama with grouped-query attention: 4 query heads share 2 key/value heads."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2() -> nn.Module:
    """GPT-2: Conv1D layers (weights stored (in, out)) and a fused c_attn."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return GPT2LMHeadModel(cfg).eval()


def tiny_bert() -> nn.Module:
    """BERT encoder (MiniLM's architecture, smaller)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    return BertModel(cfg).eval()


class SmallCNN(nn.Module):
    """Two conv + BatchNorm + ReLU stages, a channel-major flatten and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12)
        self.fc = nn.Linear(12 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.flatten(1))  # type: ignore[no-any-return]


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = SmallCNN()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
        for bn in (model.bn1, model.bn2):
            bn.weight.uniform_(0.2, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


def token_calibration(vocab: int = 96, batches: int = 2, lm: bool = True) -> Calibration:
    gen = torch.Generator().manual_seed(1)
    data = []
    for _ in range(batches):
        ids = torch.randint(0, vocab, (2, 12), generator=gen)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if lm:
            batch["labels"] = ids
        data.append(batch)
    if lm:
        return Calibration(data)

    def loss(model: nn.Module, batch: dict) -> torch.Tensor:
        h = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return (h.mean(1) ** 2).sum()

    return Calibration(data, loss=loss)


def image_calibration(batches: int = 2) -> Calibration:
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(4, 1, 8, 8, generator=gen), torch.randint(0, 10, (4,), generator=gen)) for _ in range(batches)]

    def loss(model: nn.Module, batch: tuple) -> torch.Tensor:
        return F.cross_entropy(model(batch[0]), batch[1])

    return Calibration(data, forward=lambda m, b: m(b[0]), loss=loss)
