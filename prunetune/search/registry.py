"""Names a spec may use for strategies, mapped lazily to their classes.

Kept free of heavy imports so that spec validation does not import torch or DEAP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prunetune.lazy import load_entry

if TYPE_CHECKING:
    from prunetune.search.base import Strategy

# name -> "module:Class"; adding a strategy is adding one file and one line here.
STRATEGIES: dict[str, str] = {
    "random": "prunetune.search.strategies.random:RandomSearch",
    "uniform": "prunetune.search.strategies.uniform:UniformSweep",
    "owl": "prunetune.search.strategies.owl:OWLBaseline",
    "evolutionary": "prunetune.search.strategies.evolutionary:EvolutionarySearch",
    "bayesian": "prunetune.search.strategies.bayesian:BayesianSearch",
    "policy-gradient": "prunetune.search.strategies.policy_gradient:PolicyGradient",
}


def strategy_class(name: str) -> type[Strategy]:
    """Return the strategy class registered under ``name``; raises ``KeyError`` naming the choices."""
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; allowed: {', '.join(sorted(STRATEGIES))}")
    return load_entry(STRATEGIES, name)  # type: ignore[no-any-return]
