"""Calibration statistics, gathered once per job by hooks that are always removed.

Follows the accumulator shape of SparseGPT: ``add_batch`` per forward, read the totals,
and the hooks vanish when the ``with`` block ends, also on error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunetune.spaces.space import PrunableLayer


@dataclass
class InputStats:
    """Per-input-feature statistics of one layer's input over calibration tokens.

    ``sq_sum[j]`` is the sum over tokens of ``x_j ** 2``; ``tokens`` the number of tokens.
    ``gram`` (only when asked for) is the sum over tokens of ``x xᵀ``, ``(in, in)``: the
    layer-wise Hessian of the squared reconstruction error, up to a factor 2, whose
    diagonal is ``sq_sum``.
    """

    sq_sum: torch.Tensor
    tokens: int = 0
    gram: torch.Tensor | None = None

    @property
    def norm(self) -> torch.Tensor:
        """‖X_j‖₂ over all calibration tokens (Wanda's activation norm)."""
        return self.sq_sum.sqrt()


class InputNormAccumulator:
    """Context manager that records the squared input norms of each layer.

    Padding tokens are excluded when the caller sets ``token_mask`` (a bool tensor shaped
    like the batch's leading dimensions) before each forward. With ``gram=True`` each
    layer's ``x xᵀ`` sum is kept too (for reconstruction), accumulated on ``device``.
    """

    def __init__(
        self, model: nn.Module, layers: Sequence[PrunableLayer], gram: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        self._modules = dict(model.named_modules())
        self.layers = list(layers)
        self.stats = {
            layer.name: InputStats(
                torch.zeros(layer.cols, dtype=torch.float64),
                gram=torch.zeros(layer.cols, layer.cols, dtype=torch.float64, device=device) if gram else None,
            )
            for layer in self.layers
        }
        self.token_mask: torch.Tensor | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        # q, k and v read one tensor: its x xᵀ is computed once (held, so `is` is safe).
        self._last_gram: tuple[torch.Tensor, torch.Tensor] | None = None

    def _gram_of(self, raw: torch.Tensor, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        if self._last_gram is not None and self._last_gram[0] is raw:
            return self._last_gram[1]
        x = x.to(device, torch.float32)
        gram = (x.t() @ x).double()
        self._last_gram = (raw, gram)
        return gram

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            raw = x = args[0].detach()
            if isinstance(module, nn.Conv2d):  # patches, in the order of the weight's view
                cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # type: ignore[arg-type]
                x = cols.transpose(1, 2)
            elif self.token_mask is not None and x.shape[:-1] == self.token_mask.shape:
                x = x[self.token_mask]
            x = x.reshape(-1, x.shape[-1])
            stats = self.stats[name]
            x64 = x.to(torch.float64)
            stats.sq_sum += (x64 * x64).sum(dim=0).cpu()
            stats.tokens += x.shape[0]
            if stats.gram is not None:
                stats.gram += self._gram_of(raw if not isinstance(module, nn.Conv2d) else x, x, stats.gram.device)

        return hook

    def __enter__(self) -> InputNormAccumulator:
        for layer in self.layers:
            module = self._modules[layer.name]
            self._handles.append(module.register_forward_pre_hook(self._hook(layer.name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._last_gram = None


def collect_input_stats(
    model: nn.Module,
    layers: Sequence[PrunableLayer],
    batches: Iterable[Any],
    forward: Callable[[nn.Module, Any], Any],
    token_mask: Callable[[Any], torch.Tensor | None] = lambda batch: None,
    gram: bool = False,
) -> dict[str, InputStats]:
    """Run ``forward(model, batch)`` over ``batches`` and return each layer's input stats
    (with ``gram=True``, each layer's ``x xᵀ`` sum as well)."""
    with InputNormAccumulator(model, layers, gram=gram) as acc, torch.inference_mode():
        for batch in batches:
            acc.token_mask = token_mask(batch)
            forward(model, batch)
    return acc.stats


def default_forward(model: nn.Module, batch: Any) -> Any:
    """``model(**batch)`` for a mapping (a dict, a tokenizer's ``BatchEncoding``),
    ``model(*batch)`` for a tuple/list, else ``model(batch)``."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


@dataclass
class Calibration:
    """Calibration data and how to run it.

    Attributes:
        batches: the calibration batches (reused by every statistic).
        forward: ``forward(model, batch)``; defaults to :func:`default_forward`.
        loss: ``loss(model, batch) -> scalar tensor``; needed by gradient criteria. When
            None, a forward output with a ``loss`` attribute (HF models given labels) is used.
        token_mask: ``token_mask(batch)``: which positions are real tokens, or None.
    """

    batches: Sequence[Any]
    forward: Callable[[nn.Module, Any], Any] = default_forward
    loss: Callable[[nn.Module, Any], torch.Tensor] | None = None
    token_mask: Callable[[Any], torch.Tensor | None] = lambda batch: None

    def loss_of(self, model: nn.Module, batch: Any) -> torch.Tensor:
        if self.loss is not None:
            try:
                return self.loss(model, batch)
            except NotImplementedError as err:  # a Task without a loss
                raise ValueError(f"this criterion needs a loss, and the task has none: {err}") from None
        out = self.forward(model, batch)
        loss = getattr(out, "loss", None)
        if loss is None and isinstance(out, dict):
            loss = out.get("loss")
        if not isinstance(loss, torch.Tensor):
            raise ValueError(
                "this criterion needs a loss: pass loss=callable(model, batch) -> tensor, "
                "or calibration batches with labels so the model returns .loss"
            )
        return loss


def collect_grad_stats(
    model: nn.Module, params: dict[str, nn.Parameter], calibration: Calibration
) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Mean ``|g|``, mean ``g²`` and mean ``|w·g|`` over calibration batches for ``params``.

    Only the named parameters get gradients (the others are frozen for the pass), the
    model runs in eval mode (no dropout noise), and every ``requires_grad`` flag and
    ``.grad`` is put back afterwards, also on error.
    """
    if not calibration.batches:
        raise ValueError("calibration has no batches; gradient criteria need at least one")
    flags = {id(p): p.requires_grad for p in model.parameters()}
    grads = {id(p): p.grad for p in model.parameters()}
    wanted = {id(p) for p in params.values()}
    sums = {n: [torch.zeros_like(p, dtype=torch.float32) for _ in range(3)] for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in wanted)
            p.grad = None
        for batch in calibration.batches:
            with torch.enable_grad():
                loss = calibration.loss_of(model, batch)
                loss.backward()
            for name, p in params.items():
                g = torch.zeros_like(p, dtype=torch.float32) if p.grad is None else p.grad.detach().float()
                a, s, t = sums[name]
                a += g.abs()
                s += g * g
                t += (g * p.detach().float()).abs()
                p.grad = None
    finally:
        for p in model.parameters():
            p.requires_grad_(flags[id(p)])
            p.grad = grads[id(p)]
        model.train(was_training)
    n = len(calibration.batches)
    return {name: (a / n, s / n, t / n) for name, (a, s, t) in sums.items()}


def collect_nonpositive_fractions(
    model: nn.Module, consumers: dict[str, int], calibration: Calibration
) -> dict[str, torch.Tensor]:
    """For each consumer module (name -> input feature/channel count), the fraction of
    calibration positions where each input feature is <= 0 (APoZ of the producer).

    Conv inputs ``(N, C, H, W)`` count per channel; others per last-dim feature, over real
    tokens when the calibration gives a token mask.
    """
    modules = dict(model.named_modules())
    zeros = {name: torch.zeros(width, dtype=torch.float64) for name, width in consumers.items()}
    counts = dict.fromkeys(consumers, 0)
    token_mask: list[torch.Tensor | None] = [None]

    def hook(name: str) -> Callable[..., None]:
        def fn(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach()
            if isinstance(module, nn.Conv2d):
                x = x.transpose(0, 1).reshape(x.shape[1], -1).t()
            else:
                mask = token_mask[0]
                if mask is not None and x.shape[:-1] == mask.shape:
                    x = x[mask]
                x = x.reshape(-1, x.shape[-1])
            zeros[name] += (x <= 0).sum(dim=0).double().cpu()
            counts[name] += x.shape[0]

        return fn

    handles = [modules[name].register_forward_pre_hook(hook(name)) for name in consumers]
    try:
        with torch.inference_mode():
            for batch in calibration.batches:
                token_mask[0] = calibration.token_mask(batch)
                calibration.forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    return {name: zeros[name] / max(counts[name], 1) for name in consumers}
