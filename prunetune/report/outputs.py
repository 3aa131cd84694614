"""Job outputs: front.csv, front.json, front.html (the job report, see
:mod:`prunetune.report.html`), trials.csv."""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from prunetune.report.html import ReportData, render_report
from prunetune.search.controller import SearchOutcome


def front_rows(outcome: SearchOutcome) -> list[dict[str, Any]]:
    """One row per front point: search and REPORT-split scores side by side."""
    q = outcome.quality_name
    rows = []
    for r in outcome.front:
        rep = outcome.reports.get(r.number, {})
        row: dict[str, Any] = {
            "trial": r.number,
            "sparsity": round(r.metrics.get("sparsity", float("nan")), 6),
            "nonzero_params": int(r.size) if r.size is not None else None,
            f"search_{q}": r.quality,
            f"report_{q}": rep.get(q),
            "report_scored": r.number in outcome.reports,
        }
        if "latency_seconds" in r.metrics:  # measured on the search split's evaluation
            row["latency_seconds"] = r.metrics["latency_seconds"]
        for k, v in rep.items():
            if k not in (q, "nonzero_params", "sparsity", "eval_seconds", "latency_seconds"):
                row[f"report_{k}"] = v
        row["origin"] = r.candidate.origin
        rows.append(row)
    return rows


def _trial_rows(outcome: SearchOutcome) -> list[dict[str, Any]]:
    names = list(outcome.extra.get("layers", []))  # type: ignore[call-overload]
    rows = []
    for r in outcome.results:
        row: dict[str, Any] = {
            "trial": r.number, "state": r.state.value, "origin": r.candidate.origin,
            "quality": r.quality, "nonzero_params": r.size,
            "sparsity": r.metrics.get("sparsity"), "latency_seconds": r.metrics.get("latency_seconds"),
            "eval_seconds": r.metrics.get("eval_seconds"),
            "error": r.error or "",
        }
        row.update(dict(zip((f"s:{n}" for n in names), r.candidate.sparsities, strict=False)))
        rows.append(row)
    return rows


def _atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv_text(rows: list[dict[str, Any]]) -> str:
    import io

    buf = io.StringIO()
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def front_json(outcome: SearchOutcome) -> dict[str, Any]:
    names = list(outcome.extra.get("layers", []))  # type: ignore[call-overload]
    points = []
    for row, r in zip(front_rows(outcome), outcome.front, strict=True):
        points.append({**{k: _finite(v) for k, v in row.items()},
                       "allocation": dict(zip(names, r.candidate.sparsities, strict=True))})
    return {
        "quality": outcome.quality_name,
        "dense": {k: _finite(v) for k, v in outcome.dense.items()},
        "front": points,
        "trials": len(outcome.results),
        "failed": sum(1 for r in outcome.results if not r.ok),
        "wall_seconds": outcome.wall_seconds,
        "eval_seconds": outcome.eval_seconds,
        **{k: v for k, v in outcome.extra.items() if k != "layers"},
    }


def write_outputs(outcome: SearchOutcome, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in ("front.csv", "front.json", "front.html", "trials.csv")}
    _atomic_write(paths["front.csv"], _csv_text(front_rows(outcome)))
    _atomic_write(paths["trials.csv"], _csv_text(_trial_rows(outcome)))
    _atomic_write(paths["front.json"], json.dumps(front_json(outcome), indent=2, default=str))
    _atomic_write(paths["front.html"], render_report(ReportData.from_outcome(outcome)))
    return paths
