"""A job's front read back from its Optuna study, and the comparison of two fronts.

The comparison is the hypervolume of each front (quality up, nonzero parameters down)
against one fixed reference point, on the REPORT split when every point of both fronts
has a REPORT score (else on the search split, and it says so). The reference point is
fixed by the model and the metric, not by the fronts, so numbers from different nights
of one schedule are comparable: size = the dense model's parameter count, quality = 0
for metrics bounded below by 0 (accuracy, fidelity), else the worst quality of the two
fronts (stored with the comparison).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from prunetune.pareto import hypervolume
from prunetune.store import studies
from prunetune.store.studies import (
    LATENCY_NAME,
    ORIGIN_KEY,
    SIZE_NAME,
    study_objectives,
    trial_size,
)

# Quality metrics whose values are >= 0, so 0 is a reference no front can fall below.
BOUNDED_AT_ZERO = frozenset({"accuracy", "fidelity", "retrieval_at_1"})
# |delta| at most this fraction of the previous hypervolume counts as "equal".
EQUAL_TOLERANCE = 1e-9


@dataclass(frozen=True)
class FrontPoint:
    trial: int
    quality: float
    size: float
    sparsity: float | None
    report: dict[str, float]
    allocation: dict[str, float]
    origin: str = ""
    latency: float | None = None  # measured seconds (task.latency_repeats), when measured

    def report_quality(self, name: str) -> float | None:
        v = self.report.get(name)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


@dataclass(frozen=True)
class StudyFront:
    """What a finished job's study says about its front."""

    study_name: str
    quality_name: str
    points: list[FrontPoint]
    trials: list[FrontPoint]  # every complete full-fidelity trial (the cloud behind the front)
    attrs: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[str, ...] = (SIZE_NAME,)  # what the front minimises besides quality

    @property
    def total_params(self) -> float | None:
        v = self.attrs.get("params_total")
        return float(v) if isinstance(v, (int, float)) else None

    def allocations(self) -> list[dict[str, float]]:
        return [dict(p.allocation) for p in self.points]


def _point(t: FrozenTrial, size: float, report: dict[str, float]) -> FrontPoint:
    values = t.values or [float("nan")]
    sparsity, latency = t.user_attrs.get("sparsity"), t.user_attrs.get(LATENCY_NAME)
    return FrontPoint(t.number, float(values[0]), float(size),
                      float(sparsity) if isinstance(sparsity, (int, float)) else None,
                      dict(report), dict(t.params), str(t.user_attrs.get(ORIGIN_KEY, "")),
                      float(latency) if isinstance(latency, (int, float)) else None)


def load_front(storage: optuna.storages.BaseStorage | str, study_name: str) -> StudyFront:
    """The Pareto front (budget mode: the best trial) of full-fidelity complete trials.

    Raises:
        KeyError: no such study.
    """
    study = optuna.load_study(study_name=study_name, storage=storage)
    attrs = dict(study.user_attrs)
    reports = studies.reports(study)
    names = study.metric_names or ["quality"]
    objectives = study_objectives(study)

    def point(t: FrozenTrial) -> FrontPoint:
        size = trial_size(t, objectives)
        return _point(t, float("nan") if size is None else size, reports.get(t.number, {}))

    cloud = [point(t) for t in studies.trials(study, complete=True)]
    chosen = [point(t) for t in studies.front(study)]
    return StudyFront(study_name, names[0], chosen, cloud, attrs, objectives or (SIZE_NAME,))


def reference_point(current: StudyFront, previous: StudyFront, split: str) -> dict[str, float]:
    sizes = [p.size for p in current.trials + previous.trials]
    total = max([v for v in (current.total_params, previous.total_params) if v is not None]
                or [max(sizes, default=1.0) + 1.0])
    if current.quality_name in BOUNDED_AT_ZERO:
        q_ref = 0.0
    else:
        qs = [_quality(p, current.quality_name, split) for p in current.points + previous.points]
        q_ref = min(qs, default=0.0) - 1.0
    return {"quality": q_ref, "size": float(total)}


def _quality(p: FrontPoint, name: str, split: str) -> float:
    if split == "report":
        q = p.report_quality(name)
        if q is not None:
            return q
    return p.quality


def front_hypervolume(front: StudyFront, split: str, reference: dict[str, float]) -> float:
    pts = [(_quality(p, front.quality_name, split), p.size) for p in front.points]
    return hypervolume(pts, (reference["quality"], reference["size"]))


def compare_fronts(current: StudyFront, previous: StudyFront) -> dict[str, Any]:
    """improved / equal / regressed, by how much (absolute and relative hypervolume).

    The verdict is on the search split: both fronts are selected on it and it is the same
    data every run, so a warm start (which re-evaluates the previous front) can never look
    worse by chance. REPORT-split hypervolumes are added alongside where every point has
    a REPORT score; a front chosen on the search split may lose a little there."""
    if current.quality_name != previous.quality_name:
        raise ValueError(
            f"cannot compare fronts of different metrics: {current.quality_name!r} vs {previous.quality_name!r}"
        )
    name = current.quality_name
    with_report = all(p.report_quality(name) is not None for p in current.points + previous.points)
    split = "search"
    ref = reference_point(current, previous, split)
    hv = front_hypervolume(current, split, ref)
    hv_prev = front_hypervolume(previous, split, ref)
    delta = hv - hv_prev
    tol = EQUAL_TOLERANCE * max(abs(hv_prev), 1.0)
    verdict = "equal" if abs(delta) <= tol else "improved" if delta > 0 else "regressed"
    report: dict[str, float] = {}
    if with_report and current.points and previous.points:
        ref_r = reference_point(current, previous, "report")
        report = {"report_hypervolume": front_hypervolume(current, "report", ref_r),
                  "previous_report_hypervolume": front_hypervolume(previous, "report", ref_r)}
    return {
        **report,
        "verdict": verdict,
        "split": split,
        "hypervolume": hv,
        "previous_hypervolume": hv_prev,
        "delta": delta,
        "relative_delta": delta / hv_prev if hv_prev > 0 else None,
        "reference": {**ref, "quality_name": name, "size_name": "nonzero_params"},
    }
