"""Spec builders shared by tests (importable as `helpers`: tests/ is on pythonpath)."""

from __future__ import annotations


def minilm_spec_dict(**overrides: object) -> dict:
    """A small MiniLM job: real model, small real splits (a few seconds per evaluation)."""
    spec: dict = {
        "name": "minilm-test",
        "model": {"source": "minilm"},
        "task": {"kind": "embedding", "calibration": 16, "search": 32, "report": 32, "batch_size": 16},
        "space": {"criterion": "wanda", "max": 0.9, "step": 0.05},
        "budget": {"trials": 4},
        "strategy": {"name": "random"},
        "seed": 0,
    }
    spec.update(overrides)
    return spec


def digits_spec_dict(**overrides: object) -> dict:
    spec: dict = {
        "name": "digits-test",
        "model": {"source": "digits"},
        "task": {"kind": "classification", "data": "digits", "calibration": 128, "search": 200, "report": 300},
        "space": {"criterion": "wanda", "max": 0.95, "step": 0.05},
        "budget": {"trials": 8},
        "strategy": {"name": "random"},
        "seed": 0,
    }
    spec.update(overrides)
    return spec
