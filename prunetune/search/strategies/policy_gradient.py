"""REINFORCE with a learned baseline: a budget-conditioned policy over per-layer sparsity.

The policy is a small network shared by all layers: it maps a layer's features (relative
depth, type, log size, OWL outlier ratio of its block) and the overall budget to the mean
of a Gaussian over that layer's sparsity offset from the budget; one learned log standard
deviation is shared. A sample is projected exactly onto the budget and its reward is the
quality at that budget. The baseline is a small network of the budget alone, fitted to
the rewards, so one policy covers the whole front in Pareto mode (budgets are sampled).

Every candidate keeps its sampled offsets in ``info``; learning happens in batches of
``batch`` told results, so replaying the stored trials (``restore``) reproduces the same
weights. With ``policy_path`` the weights are saved after every update and a later job
starts from them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunetune.errors import OptionError
from prunetune.search.base import Candidate, SearchContext, Strategy, TrialResult
from prunetune.search.strategies.owl_stats import block_outlier_ratios
from prunetune.spaces.space import SearchSpace

_KINDS = ("q", "k", "v", "qkv", "o", "gate", "up", "down", "other")


def layer_features(space: SearchSpace, context: SearchContext | None) -> np.ndarray:
    """``(layers, features)``: depth, type one-hot, standardised log size and outlier ratio."""
    blocks = [layer.block for layer in space.layers]
    if all(b >= 0 for b in blocks) and max(blocks) > 0:
        depth = np.array(blocks, dtype=np.float64) / max(blocks)
    else:
        depth = np.arange(space.dim) / max(space.dim - 1, 1)
    kinds = np.zeros((space.dim, len(_KINDS)))
    for i, layer in enumerate(space.layers):
        kinds[i, _KINDS.index(layer.kind) if layer.kind in _KINDS else -1] = 1.0

    def standard(v: np.ndarray) -> np.ndarray:
        return (v - v.mean()) / v.std() if v.std() > 0 else np.zeros_like(v)

    size = standard(np.log(np.asarray(space.numels, dtype=np.float64)))
    if context is not None and len(context.stats) == space.dim:
        outlier = standard(np.asarray(block_outlier_ratios(space, context.stats, 5.0)))
    else:
        outlier = np.zeros(space.dim)
    return np.column_stack([depth, kinds, size, outlier])


class PolicyGradient(Strategy):
    """Options:
        batch: results per policy update, default 8.
        lr: Adam learning rate, default 0.05.
        sigma: initial standard deviation of the per-layer offsets (fraction), default 0.04.
        hidden: hidden units of the policy network, default 16.
        policy_path: file to load the starting weights from (if it exists) and to save the
            weights to after every update; default none.
        warm_start: allocations to evaluate first ("uniform", "owl" or lists); default ["uniform"].
    """

    name = "policy-gradient"
    uses_context = True

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int = 0,
        budget: int = 64,
        context: SearchContext | None = None,
        batch: int = 8,
        lr: float = 0.05,
        sigma: float = 0.04,
        hidden: int = 16,
        policy_path: str | None = None,
        warm_start: Sequence[Any] = ("uniform",),
    ) -> None:
        super().__init__(space, seed=seed, budget=budget, context=context)
        if not (isinstance(batch, int) and batch >= 2):
            raise OptionError("batch", batch, "must be an integer >= 2")
        if not 0.0 < lr <= 1.0:
            raise OptionError("lr", lr, "must be in (0, 1]")
        if not 0.0 < sigma <= 0.5:
            raise OptionError("sigma", sigma, "must be in (0, 0.5]")
        if not (isinstance(hidden, int) and hidden >= 1):
            raise OptionError("hidden", hidden, "must be an integer >= 1")
        self.batch, self.lr = batch, lr
        self.policy_path = Path(policy_path) if policy_path else None
        self._features = torch.tensor(layer_features(space, context), dtype=torch.float32)
        gen = torch.Generator().manual_seed(seed)
        f = self._features.shape[1] + 1
        self.policy = nn.Sequential(nn.Linear(f, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.baseline = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        with torch.no_grad():
            for p in [*self.policy.parameters(), *self.baseline.parameters()]:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            last = self.policy[2]
            assert isinstance(last, nn.Linear)
            last.weight.zero_()  # start at the uniform allocation
            last.bias.zero_()
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma)))
        if self.policy_path is not None and self.policy_path.is_file():
            self._load(torch.load(self.policy_path, weights_only=True)["state"])
        self._start = self._state()
        self._reset_optimisers()
        self._buffer: list[TrialResult] = []
        self.warm_start_named(warm_start)

    # -- weights -------------------------------------------------------------------------

    def _params(self) -> list[nn.Parameter]:
        return [*self.policy.parameters(), self.log_sigma]

    def _state(self) -> dict[str, torch.Tensor]:
        state = {f"policy.{k}": v.detach().clone() for k, v in self.policy.state_dict().items()}
        state.update({f"baseline.{k}": v.detach().clone() for k, v in self.baseline.state_dict().items()})
        state["log_sigma"] = self.log_sigma.detach().clone()
        return state

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        self.policy.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("policy.")})
        self.baseline.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("baseline.")})
        with torch.no_grad():
            self.log_sigma.copy_(state["log_sigma"])

    def _reset_optimisers(self) -> None:
        self._opt = torch.optim.Adam(self._params(), lr=self.lr)
        self._opt_b = torch.optim.Adam(self.baseline.parameters(), lr=0.05)

    def save(self, path: str | Path) -> None:
        """Write the current weights (atomically) for a later job to start from."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"state": self._state(), "start": self._start}, tmp)
        os.replace(tmp, path)

    # -- policy ----------------------------------------------------------------------------

    def _mean(self, budget: float) -> torch.Tensor:
        b = torch.full((self._features.shape[0], 1), budget, dtype=torch.float32)
        return self.policy(torch.cat([self._features, b], dim=1)).squeeze(1)

    def _value(self, budget: float) -> torch.Tensor:
        return self.baseline(torch.tensor([[budget, budget * budget]], dtype=torch.float32)).squeeze()

    def _propose(self, index: int) -> Candidate:
        sp = self.space
        rng = np.random.default_rng([self.seed, index])
        b = sp.target if sp.target is not None else float(rng.uniform(sp.lo + sp.step, sp.hi))
        with torch.no_grad():
            mean = self._mean(b).double().numpy()
            sigma = float(self.log_sigma.exp())
        z = mean + sigma * rng.standard_normal(sp.dim)
        sparsities = sp.project(b + z, target=b)
        return Candidate(tuple(sparsities), origin="policy", info={"budget": b, "z": [float(v) for v in z]})

    def _update(self, batch: list[TrialResult]) -> None:
        sampled = [r for r in batch if "z" in r.candidate.info and "budget" in r.candidate.info]
        budgets = [float(r.candidate.info.get("budget", r.candidate.info.get("level", 0.0))) for r in batch]
        rewards = torch.tensor([float(r.quality) for r in batch])  # type: ignore[arg-type]
        values = torch.stack([self._value(b) for b in budgets])
        self._opt_b.zero_grad()
        ((values - rewards) ** 2).mean().backward()
        self._opt_b.step()
        if len(sampled) < 2:
            return
        with torch.no_grad():
            adv = torch.tensor([float(r.quality) for r in sampled]) - torch.stack(  # type: ignore[arg-type]
                [self._value(float(r.candidate.info["budget"])) for r in sampled]
            )
            adv = adv / adv.std().clamp(min=1e-8) if len(adv) > 1 else adv
        self._opt.zero_grad()
        loss = torch.zeros(())
        for a, r in zip(adv, sampled, strict=True):
            z = torch.tensor(r.candidate.info["z"], dtype=torch.float32)
            dist = torch.distributions.Normal(self._mean(float(r.candidate.info["budget"])), self.log_sigma.exp())
            loss = loss - a * dist.log_prob(z).sum()
        (loss / len(sampled)).backward()
        self._opt.step()
        with torch.no_grad():
            self.log_sigma.clamp_(math.log(0.005), math.log(0.3))

    def tell(self, results: Sequence[TrialResult]) -> None:
        for r in results:
            if not r.ok or r.candidate.fidelity < 1.0:
                continue  # failed and NaN trials teach nothing
            self._buffer.append(r)
            if len(self._buffer) >= self.batch:
                self._update(self._buffer)
                self._buffer = []
                if self.policy_path is not None:
                    self.save(self.policy_path)

    def restore(self, results: Sequence[TrialResult]) -> None:
        # Replay from the weights this job started with, so the updates are not applied
        # twice. A job resumed with stored trials finds its own latest weights in
        # ``policy_path``; the file also keeps the weights that job started from.
        start = self._start
        if results and self.policy_path is not None and self.policy_path.is_file():
            start = torch.load(self.policy_path, weights_only=True).get("start", start)
        self._load(start)
        self._reset_optimisers()
        self._buffer = []
        super().restore(results)
