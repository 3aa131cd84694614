"""On-disk cache of importance scores, keyed by what determines them.

Scores depend on the model's weights, the criterion and the calibration data; the key
hashes all three, so a stale score can never be read back for a changed input.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def default_cache_dir() -> Path:
    env = os.environ.get("PRUNETUNE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prunetune"


def cache_key(**parts: object) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


class ScoreCache:
    """``get(key)`` / ``put(key, scores)`` of ``{layer name: tensor}`` as safetensors files."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def _path(self, key: str) -> Path:
        return self.directory / f"scores-{key}.safetensors"

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))
        except Exception:  # a truncated file from a killed writer: recompute
            return None

    def put(self, key: str, scores: dict[str, torch.Tensor]) -> Path:
        return save_atomically(scores, self._path(key))


def save_atomically(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` as a safetensors file at ``path`` so that readers see the old file
    or the whole new one, never a part (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path
