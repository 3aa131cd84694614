"""Sparse weights in the compressed-tensors formats that vLLM and llm-compressor read.

A 2:4 model is written as ``sparse-24-bitmask`` (per weight: the kept values, a packed
bitmask and the shape), any other sparsity as ``sparse-bitmask`` (plus row offsets);
``config.json`` carries the ``quantization_config`` that names the format and the
compressed layers. The writing and reading are the ``compressed-tensors`` package's own
(``ModelCompressor``); this module only picks which layers to compress and maps names.
Imported lazily: the package is an optional extra.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

# A layer is compressed when its bitmask form is smaller: below this fraction of zeros
# the bitmask (1 bit per weight) and row offsets cost more than they save.
MIN_SPARSITY = 0.1


def _is_24(weight: torch.Tensor) -> bool:
    if weight.ndim != 2 or weight.shape[1] % 4:
        return False
    return bool(((weight.reshape(weight.shape[0], -1, 4) != 0).sum(-1) <= 2).all())


def sparse_layers(model: nn.Module) -> tuple[str, list[str]]:
    """The format (``sparse-24-bitmask`` when every sparse ``nn.Linear`` is 2:4 along its
    input dimension, else ``sparse-bitmask``) and the ``nn.Linear`` layers to compress."""
    sparse = [(name, m.weight) for name, m in model.named_modules()
              if isinstance(m, nn.Linear) and float((m.weight == 0).float().mean()) >= MIN_SPARSITY]
    if sparse and all(_is_24(w) for _, w in sparse):
        return "sparse-24-bitmask", [n for n, _ in sparse]
    return "sparse-bitmask", [n for n, _ in sparse]


def write_compressed_tensors(model: nn.Module, out: Path, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Write ``tensors`` (the model's state, tied copies dropped) to ``out/model.safetensors``
    in compressed-tensors form, and ``config.json`` with its ``quantization_config``.
    Returns what the manifest records: the format and the compressed layers."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.config import SparsityCompressionConfig

    fmt, layers = sparse_layers(model)
    total = sum(m.weight.numel() for _, m in model.named_modules() if isinstance(m, nn.Linear))
    zeros = sum(int((m.weight == 0).sum()) for _, m in model.named_modules() if isinstance(m, nn.Linear))
    config = SparsityCompressionConfig.load_from_registry(
        fmt, targets=[f"re:^{re.escape(n)}$" for n in layers], ignore=[],
        global_sparsity=zeros / max(total, 1),
        sparsity_structure="2:4" if fmt == "sparse-24-bitmask" else "unstructured",
    )
    compressor = ModelCompressor(sparsity_config=config)
    packed = compressor.compress(model, state_dict={k: v.contiguous() for k, v in tensors.items()})
    save_file({k: v.contiguous() for k, v in packed.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    model.config.save_pretrained(out)  # type: ignore[union-attr,operator]
    compressor.update_config(str(out))
    return {"format": fmt, "layers": layers}


def read_compressed_tensors(directory: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The dense state of a compressed-tensors export, decompressed by the package into
    ``model`` (built from the export's config); returns ``model``'s state dict."""
    try:
        from compressed_tensors.compressors import ModelCompressor
    except ImportError as err:
        raise ImportError(f"{directory} holds compressed-tensors weights: pip install "
                          f"'prunetune[compressed-tensors]' to load it ({err})") from err
    compressor = ModelCompressor.from_pretrained(str(directory), trust_remote_code=False, local_files_only=True)
    if compressor is None:
        raise ValueError(f"{directory}/config.json has no compressed-tensors quantization_config")
    compressor.decompress(str(directory), model)
    return dict(model.state_dict())
