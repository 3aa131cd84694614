"""Registries of names a spec may use, mapped lazily to "module:attribute" targets, so
that validating a spec imports none of the heavy modules behind the names."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def load_entry(table: Mapping[str, str], name: str) -> Any:
    """The attribute ``table[name]`` points at (``"package.module:Attribute"``), imported
    on first use; raises ``KeyError`` when ``name`` is not in ``table``."""
    module, _, attr = table[name].partition(":")
    return getattr(importlib.import_module(module), attr)
