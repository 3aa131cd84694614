"""The model a task evaluates, as a model source loaded it (:mod:`prunetune.engine.sources`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass
class LoadedModel:
    """A model ready to prune.

    Attributes:
        model: the module, in eval mode.
        name: a short label for reports.
        tokenizer: the HF tokenizer for text models, else None.
        extras: source-specific data (the digits source keeps its training split here).
    """

    model: nn.Module
    name: str
    tokenizer: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Hash of every parameter's bytes: identifies the exact weights that were scored."""
        h = hashlib.sha256()
        for name, p in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]
