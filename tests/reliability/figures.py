"""Figures of the reliability and security tests, as JSON lines.

Each test calls ``record(name, **figures)``; with ``PRUNETUNE_RECORD=1`` (``make
reliability-figures``) the line goes to ``benchmarks/results/reliability.json``, so an
ordinary test run never changes a tracked file. ``python tests/reliability/figures.py`` prints
the README table from the newest line of every test.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "reliability.json"


def record(test: str, **figures: Any) -> None:
    if os.environ.get("PRUNETUNE_RECORD") != "1":
        return
    line = {"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": f"{platform.machine()} {platform.system()}", **figures}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as fh:
        fh.write(json.dumps(line, sort_keys=True, default=str) + "\n")


def latest() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if RESULTS.exists():
        for raw in RESULTS.read_text().splitlines():
            if raw.strip():
                row = json.loads(raw)
                out[row["test"]] = row
    return out


def totals(rows: dict[str, dict[str, Any]]) -> dict[str, int]:
    keys = ("concurrent_submissions", "faults_injected", "faults_survived", "fuzzed_inputs",
            "schemathesis_cases", "trials_lost", "trials_duplicated", "checks", "escapes_tried", "escaped",
            "answers_5xx", "owner_isolation_cases", "crossed")
    return {k: sum(int(r.get(k, 0)) for r in rows.values()) for k in keys}


def main() -> None:
    rows = latest()
    for name, row in sorted(rows.items()):
        figures = {k: v for k, v in row.items() if k not in ("test", "at", "machine")}
        print(f"| `{name}` | {', '.join(f'{k}={v}' for k, v in sorted(figures.items()))} |")
    print(json.dumps(totals(rows), indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
