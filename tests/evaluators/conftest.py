"""Tiny real models for the evaluator tests: a Llama trained for a few seconds on pydoc
bytes, saved as a local Hugging Face directory (no tokenizer: the task reads bytes)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch


def train_tiny_llama(out: Path, steps: int = 300, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from prunetune.evaluators.data import pydoc_chunks

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    # Train on the end of the shuffled corpus; the task's splits come from its start.
    chunks = pydoc_chunks()
    random.Random(seed).shuffle(chunks)
    data = torch.tensor(list(" \n\n".join(chunks[-600:]).encode()), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - 65, (16,), generator=gen)
        x = torch.stack([data[s : s + 65] for s in starts])
        loss = model(input_ids=x[:, :-1], labels=x[:, :-1]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
