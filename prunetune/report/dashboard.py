"""What ``prunetune dashboard`` serves: optuna-dashboard over the job database, with
each trial's strategy and REPORT-split scores shown as its user attributes.

Why a read-side view rather than writing those attributes into the trials: Optuna
freezes a finished trial (``set_trial_user_attr`` raises ``UpdateFinishedTrialError``),
and which trials make the front, hence need REPORT scores, is known only after the
search, when their trials are long finished. Scoring every trial on the REPORT split
before ``tell`` would double the evaluation cost and leak the held-out split into what
the search sees; writing to Optuna's tables behind its back would break its contract.
So the job keeps one study attribute ``report`` (trial number -> REPORT metrics, written
once after the search) and this storage, used only by the dashboard process, merges it
into each trial as ``report_<metric>`` user attributes (plus ``strategy`` from the
study) when the dashboard reads trials. The stored trials are untouched; the job's own
attributes (``origin``, ``fidelity_level``, every search-split metric) are there as
recorded, and the per-layer sparsities are the trials' parameters.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Container
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from prunetune.store.studies import (
    FIDELITY_KEY,
    LATENCY_NAME,
    REPORT_KEY,
    SIZE_NAME,
    engine_kwargs,
)

# Latency is timed on a calibration batch whatever the split, like the size metrics.
_NOT_SPLIT_METRICS = frozenset({"eval_seconds", FIDELITY_KEY, SIZE_NAME, LATENCY_NAME, "sparsity"})


class DashboardStorage(optuna.storages.RDBStorage):
    """An RDB storage whose trials, as read, carry ``strategy`` and ``report_*`` attrs."""

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = super().get_all_trials(study_id, deepcopy=deepcopy, states=states)
        attrs = self.get_study_user_attrs(study_id)
        return [with_job_attrs(t, attrs) for t in trials]


def with_job_attrs(trial: FrozenTrial, study_attrs: dict[str, Any]) -> FrozenTrial:
    """A copy of ``trial`` with the strategy and its REPORT-split scores as user attrs."""
    extra: dict[str, Any] = {}
    strategy = study_attrs.get("strategy")
    if strategy is not None and "strategy" not in trial.user_attrs:
        extra["strategy"] = strategy
    report = (study_attrs.get(REPORT_KEY) or {}).get(str(trial.number), {})
    for key, value in report.items():
        # Size metrics are the same on every split; show what the REPORT split measured.
        if key in _NOT_SPLIT_METRICS or trial.user_attrs.get(key) == value:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            extra[f"report_{key}"] = value if math.isfinite(value) else str(value)
    if not extra:
        return trial
    out = copy.copy(trial)
    out.user_attrs = {**trial.user_attrs, **extra}
    return out


def open_dashboard_storage(url: str) -> DashboardStorage:
    return DashboardStorage(url, engine_kwargs=engine_kwargs(url))
