"""prunetune: AutoML search for pruning policies.

Give it a pretrained network, a quality metric and a budget; it searches per-layer
sparsity allocations and returns the Pareto front of quality against size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from prunetune.api import PruneReport, export, load_pruned, prune
    from prunetune.client import Client
    from prunetune.spec import SearchSpec

__all__ = ["Client", "PruneReport", "SearchSpec", "__version__", "export", "load_pruned", "prune"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import prunetune` stays cheap and does not import torch.
    if name == "SearchSpec":
        from prunetune.spec import SearchSpec

        return SearchSpec
    if name == "Client":
        from prunetune.client import Client

        return Client
    if name in ("prune", "export", "load_pruned", "PruneReport"):
        from prunetune import api

        return getattr(api, name)
    raise AttributeError(f"module 'prunetune' has no attribute {name!r}")
