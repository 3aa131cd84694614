"""What the report phase costs beside the search, on the demo spec (``make demo``).

Runs ``examples/minilm.yaml`` (or ``--spec``) end to end through ``run_job`` on a fresh
SQLite study and records the wall time of each phase: the search (every evaluation of
the search split), the front's REPORT scoring (at most ``report.points`` points), and the
baselines' REPORT scoring. Writes ``benchmarks/results/report_phase.json`` and ends with
``RESULT search_seconds=<s> report_seconds=<s> report_share=<report / search>``.

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/report_phase.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import ROOT, project_path, provenance

# run_job imports these when it needs them: load them now, before the tree can change.
import prunetune.engine.baselines
import prunetune.report.outputs  # noqa: F401
from prunetune.engine.runner import run_job
from prunetune.engine.workbench import build_workbench
from prunetune.spec import SearchSpec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", type=Path, default=ROOT / "examples" / "minilm.yaml")
    args = p.parse_args(argv)
    spec = SearchSpec.from_yaml(args.spec)
    bench = build_workbench(spec)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = run_job(spec, db=f"sqlite:///{tmp}/job.db", bench=bench)
        wall = time.perf_counter() - start
    phases = dict(out.extra["phases"])  # type: ignore[call-overload]
    report = phases["report_front"] + phases["report_baselines"]
    result = {
        "benchmark": "report_phase", "spec": project_path(args.spec),
        "trials": len(out.results), "front_points": len(out.front), "report_points": len(out.reports),
        "baseline_points": sum(len(v) for v in (out.extra.get("baselines") or {}).values()),  # type: ignore[attr-defined]
        "phases": phases, "search_seconds": phases["search"], "report_seconds": report,
        "report_share": report / phases["search"], "wall_seconds": wall, "workbench": bench.timings,
        "levels": out.extra.get("levels"),
        "provenance": provenance({"spec": spec.to_dict()}, bench=bench, spec=spec, seeds=[spec.seed]),
    }
    path = ROOT / "benchmarks" / "results" / "report_phase.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {path}")
    print(f"RESULT search_seconds={phases['search']:.1f} report_seconds={report:.1f} "
          f"report_share={result['report_share']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
