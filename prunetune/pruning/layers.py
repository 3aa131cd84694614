"""Discovery of prunable layers in a model, and the weight view each one is pruned in.

A prunable layer is a 2-D weight matrix that we view as ``(out_features, in_features)``:
``nn.Linear`` stores it that way; Hugging Face's ``Conv1D`` (GPT-2) stores ``(in, out)``,
so its view is the transpose; an ``nn.Conv2d`` ``(out, in, kh, kw)`` is viewed as
``(out, in * kh * kw)``, the layout of its unfolded input patches. Embeddings and output heads are excluded by default, since
pruning them changes the vocabulary or the task head rather than the network's body.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence

import torch
from torch import nn

from prunetune.spaces.space import PrunableLayer

# Names of modules that are heads or poolers, never pruned unless included explicitly.
_HEAD_NAMES = re.compile(r"(^|\.)(lm_head|classifier|score|pooler|qa_outputs|head|cls)(\.|$)")
_BLOCK_INDEX = re.compile(r"\.(?:layer|layers|h|blocks|block)\.(\d+)\.")
_TYPE_PATTERNS = (  # first match wins, so "o" is tried before "down"
    ("qkv", re.compile(r"(c_attn|qkv_proj|query_key_value|Wqkv)$")),
    ("q", re.compile(r"(query|q_proj)$")),
    ("k", re.compile(r"(key|k_proj)$")),
    ("v", re.compile(r"(value|v_proj)$")),
    ("o", re.compile(r"(attention\.output\.dense|o_proj|out_proj|attn\.c_proj)$")),
    ("gate", re.compile(r"gate_proj$")),
    ("up", re.compile(r"(intermediate\.dense|up_proj|c_fc|fc1)$")),
    ("down", re.compile(r"(output\.dense|down_proj|mlp\.c_proj|fc2)$")),
)


def _conv1d_type() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # transformers is a dependency, but keep discovery usable without it
        return None
    return Conv1D


def weight_matrix(module: nn.Module, layer: PrunableLayer) -> torch.Tensor:
    """The ``(out, in)`` view of a layer's weight; writes through to the parameter."""
    w: torch.Tensor = module.weight.data  # type: ignore[union-attr,assignment]
    if w.dim() == 4:  # Conv2d: a view, since parameters are contiguous
        return w.view(w.shape[0], -1)
    return w.t() if layer.transposed else w


def _layer_kind(name: str) -> str:
    for kind, pattern in _TYPE_PATTERNS:
        if pattern.search(name):
            return kind
    return "other"


def discover_layers(
    model: nn.Module,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[PrunableLayer]:
    """List the prunable layers of ``model`` in module order.

    Args:
        include: glob patterns over module names; when given, only matching layers are
            kept, and a matching head is kept too.
        exclude: glob patterns of layers to leave dense.

    Raises:
        ValueError: when a pattern matches no layer (a misspelt name would otherwise
            silently prune nothing), or when no layer is left.
    """
    conv1d = _conv1d_type()
    found: list[PrunableLayer] = []
    candidates: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            rows, cols = module.weight.shape
            transposed = False
        elif conv1d is not None and isinstance(module, conv1d):
            cols, rows = module.weight.shape  # type: ignore[attr-defined]
            transposed = True
        elif isinstance(module, nn.Conv2d) and module.groups == 1:
            rows, cols = module.weight.shape[0], module.weight[0].numel()
            transposed = False
        else:
            continue
        candidates.append(name)
        is_head = bool(_HEAD_NAMES.search(name))
        if include:
            if not any(fnmatch.fnmatchcase(name, p) for p in include):
                continue
        elif is_head:
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        m = _BLOCK_INDEX.search(name + ".")
        found.append(
            PrunableLayer(
                name=name,
                rows=int(rows),
                cols=int(cols),
                transposed=transposed,
                block=int(m.group(1)) if m else -1,
                kind=_layer_kind(name),
            )
        )
    for field, patterns in (("space.include", include), ("space.exclude", exclude)):
        for p in patterns:
            if not any(fnmatch.fnmatchcase(n, p) for n in candidates):
                raise ValueError(
                    f"{field}: pattern {p!r} matches no Linear/Conv1D/Conv2d layer; "
                    f"layers are named like {candidates[:3]}"
                )
    if not found:
        raise ValueError("no prunable layer found (nn.Linear, nn.Conv2d or transformers Conv1D)")
    return found
