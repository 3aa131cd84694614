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
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({k: v.contiguous().cpu() for k, v in scores.items()}, str(tmp))
        os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
        return path
