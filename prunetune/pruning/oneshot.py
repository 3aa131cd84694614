"""One-shot pruning of a model's layers in place, with reconstruction and sequential
calibration as options (what ``prunetune.prune(..., reconstruction=, sequential=)`` runs).

*Independent* statistics come from one calibration pass over the dense model, as a search
needs them (any combination of layers stays valid). *Sequential* statistics go block by
block: each block's layers see the outputs of the blocks before it already pruned, so a
block compensates for what was lost upstream (SparseGPT's and llm-compressor's one-shot
order). That costs one calibration pass per block.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

import torch
from torch import nn

from prunetune.pruning.calibration import Calibration, collect_input_stats
from prunetune.pruning.importance import Criterion
from prunetune.pruning.layers import weight_matrix
from prunetune.pruning.masks import Groups, Pruner
from prunetune.pruning.reconstruction import LayerSolver, SparseGPTConfig
from prunetune.pruning.scoring import score_layers
from prunetune.spaces.space import PrunableLayer


def block_groups(layers: Sequence[PrunableLayer]) -> list[list[PrunableLayer]]:
    """Consecutive layers of one transformer block together (a layer outside blocks is a
    group of its own), in model order: the unit of sequential calibration."""
    out: list[list[PrunableLayer]] = []
    for block, group in groupby(layers, key=lambda layer: layer.block):
        members = list(group)
        out.extend([members] if block >= 0 else [[m] for m in members])
    return out


def prune_in_place(
    model: nn.Module,
    layers: Sequence[PrunableLayer],
    counts: Sequence[int],
    calibration: Calibration,
    *,
    criterion: Criterion | None = None,
    reconstruction: SparseGPTConfig | None = None,
    pattern: tuple[int, int] | None = None,
    groups: Groups = "row",
    sequential: bool = False,
) -> None:
    """Prune ``counts[i]`` weights of ``layers[i]`` (N:M ``pattern``: every layer with a
    nonzero count), permanently.

    With ``reconstruction`` the layer is re-fitted by SparseGPT from its input Hessian;
    otherwise the ``criterion``'s lowest scores go (top-k by ``groups``, as masks do).
    """
    if (criterion is None) == (reconstruction is None):
        raise ValueError("give exactly one of criterion or reconstruction")
    if not calibration.batches:
        raise ValueError("calibration has no batches; reconstruction and sequential pruning need some")
    by_name = dict(zip((layer.name for layer in layers), counts, strict=True))
    modules = dict(model.named_modules())
    for group in block_groups(layers) if sequential else [list(layers)]:
        todo = [layer for layer in group if by_name[layer.name]]
        if not todo:
            continue
        if reconstruction is not None:
            stats = collect_input_stats(model, todo, calibration.batches, calibration.forward,
                                        calibration.token_mask, gram=True)
            for layer in todo:
                w = weight_matrix(modules[layer.name], layer)
                gram = stats[layer.name].gram
                if gram is None:  # pragma: no cover - collected with gram=True above
                    raise RuntimeError("calibration statistics lack the gram matrix")
                solved = LayerSolver(w, gram, reconstruction).prune(by_name[layer.name], pattern)
                with torch.no_grad():
                    w.copy_(solved.to(w.dtype))
        elif criterion is not None:
            scores = score_layers(model, todo, criterion, calibration)
            pruner = Pruner(model, todo, scores, groups=groups, pattern=pattern)
            pruner.apply([by_name[layer.name] / layer.numel for layer in todo])
            pruner.commit()
