"""Brief recovery fine-tuning of a pruned candidate, optionally distilled from the dense model.

AdamW on the calibration split (disjoint from the search and report splits). Pruned
weights stay exactly zero: their gradients are zeroed before each step (so AdamW's
moments stay zero too) and the masks are re-applied after it. Training runs in eval
mode (no dropout; normalisation statistics frozen), so buffers never change and
restoring the parameters restores the model. Recovery changes every parameter it trains,
not only the pruned layers, so it keeps its own dense copy of each and puts all of them
back in ``restore``.

Schedules: ``whole`` trains every parameter for ``steps``; ``layer-wise`` trains one
transformer block at a time from the top block down, ``steps // blocks`` each (other
parameters frozen); ``cyclic`` repeats whole-model rounds of ``steps`` while the loss on
a held-out calibration batch improves, at most ``rounds``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from prunetune.errors import EvaluationError, SpecError
from prunetune.evaluators.tasks import Task
from prunetune.spaces.space import PrunableLayer
from prunetune.spec import RecoverySpec

_BLOCK = re.compile(r"\.(?:layer|layers|h|blocks|block)\.(\d+)\.")


class Recovery:
    """Fine-tunes the live model after masks are applied; ``restore`` undoes it."""

    def __init__(
        self, model: nn.Module, task: Task, layers: Sequence[PrunableLayer], spec: RecoverySpec, seed: int = 0
    ) -> None:
        self.model, self.task, self.spec, self.seed = model, task, spec, seed
        self.kind = task.distill_kind(spec.distill_loss) if spec.distill else None
        self._params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self._dense = [p.detach().clone() for _, p in self._params]
        modules = dict(model.named_modules())
        self._layers = [(layer, modules[layer.name].weight) for layer in layers]
        self._batches = list(task.train_batches(spec.batch_size))
        if not self._batches:
            raise SpecError("task.calibration", 0, "recovery trains on the calibration split; give it examples")
        self._targets: list[Any] | None = None

    def prepare(self) -> None:
        """Record the dense model's outputs on the training batches (call while dense)."""
        if self.kind is None or self._targets is not None:
            return
        with torch.no_grad():
            self._targets = [self.task.distill_target(self.model, b, self.kind) for b in self._batches]

    # -- one candidate -------------------------------------------------------------------

    def _loss(self, i: int) -> torch.Tensor:
        batch = self._batches[i]
        if self.kind is None:
            try:
                return self.task.loss(self.model, batch)
            except NotImplementedError as err:
                raise SpecError("recovery.distill", False, str(err)) from None
        assert self._targets is not None
        return self.task.distill_loss(self.model, batch, self._targets[i], self.kind, self.spec.temperature)

    def _regulariser(self, trained: set[int]) -> torch.Tensor | float:
        if not (self.spec.l1 or self.spec.l2):
            return 0.0
        terms: list[torch.Tensor] = []
        for _, w in self._layers:
            if id(w) in trained:
                terms.append(self.spec.l1 * w.abs().mean() + self.spec.l2 * w.pow(2).mean())
        return torch.stack(terms).sum() if terms else 0.0

    def _stages(self) -> list[list[nn.Parameter]]:
        if self.spec.schedule != "layer-wise":
            return [[p for _, p in self._params]]
        blocks: dict[int, list[nn.Parameter]] = {}
        for name, p in self._params:
            m = _BLOCK.search("." + name)
            if m:
                blocks.setdefault(int(m.group(1)), []).append(p)
        return [blocks[b] for b in sorted(blocks, reverse=True)] or [[p for _, p in self._params]]

    def _train(self, params: list[nn.Parameter], steps: int, batches: Sequence[int],
               masks: list[tuple[torch.Tensor, torch.Tensor, bool]], gen: torch.Generator) -> list[float]:
        trained = {id(p) for p in params}
        opt = torch.optim.AdamW(params, lr=self.spec.lr, weight_decay=0.0)
        losses: list[float] = []
        order: list[int] = []
        for _ in range(steps):
            if not order:
                order = [batches[int(j)] for j in torch.randperm(len(batches), generator=gen)]
            loss = self._loss(order.pop()) + self._regulariser(trained)
            if not torch.isfinite(loss):
                raise EvaluationError(f"recovery loss became {float(loss)} (lower recovery.lr?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for w, pruned, transposed in masks:
                if w.grad is not None:
                    (w.grad.t() if transposed else w.grad).masked_fill_(pruned, 0.0)
            opt.step()
            with torch.no_grad():
                for w, pruned, transposed in masks:
                    (w.data.t() if transposed else w.data).masked_fill_(pruned, 0.0)
            losses.append(float(loss.detach()))
        return losses

    def run(self) -> dict[str, float]:
        """Fine-tune the pruned live model in place; the weights that are zero now in the
        pruned layers (whatever pruning made them so) stay exactly zero.

        Returns recovery metrics: steps taken, first and last training loss, seconds.
        """
        start = time.perf_counter()
        self.prepare()
        masks = [(w, (w.data.t() if layer.transposed else w.data) == 0, layer.transposed)
                 for layer, w in self._layers]
        gen = torch.Generator().manual_seed(self.seed)
        flags = [p.requires_grad for _, p in self._params]
        n = len(self._batches)
        train_idx = list(range(n - 1)) if self.spec.schedule == "cyclic" and n > 1 else list(range(n))
        losses: list[float] = []
        rounds = 0
        try:
            with torch.enable_grad():
                if self.spec.schedule == "cyclic":
                    best = math.inf
                    for rounds in range(1, self.spec.rounds + 1):  # noqa: B007 - reported below
                        losses += self._train([p for _, p in self._params], self.spec.steps, train_idx, masks, gen)
                        with torch.no_grad():
                            held = float(self._loss(n - 1))
                        if held >= best:
                            break
                        best = held
                else:
                    stages = self._stages()
                    per_stage = max(1, self.spec.steps // len(stages))
                    for params in stages:
                        ids = {id(p) for p in params}
                        for _, p in self._params:
                            p.requires_grad_(id(p) in ids)
                        losses += self._train(params, per_stage, train_idx, masks, gen)
        finally:
            for (_, p), flag in zip(self._params, flags, strict=True):
                p.requires_grad_(flag)
                p.grad = None
        out = {"recovery_steps": float(len(losses)), "recovery_seconds": time.perf_counter() - start}
        if losses:
            out["recovery_loss_first"], out["recovery_loss_last"] = losses[0], losses[-1]
        if rounds:
            out["recovery_rounds"] = float(rounds)
        return out

    def restore(self) -> None:
        """Put back every parameter recovery may have changed (bit-identical)."""
        with torch.no_grad():
            for (_, p), dense in zip(self._params, self._dense, strict=True):
                p.copy_(dense)
