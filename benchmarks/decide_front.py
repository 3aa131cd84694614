"""Decide the front search's settings on the validation split, from recorded runs only.

``pareto_front.py --score-split validation --options JSON`` runs the evolutionary front
search with the given options and scores every front on the validation split (REPORT is
not read). This script reads those files for one model and budget, and applies
``decide_defaults.decide`` (the rule of every default decided here: the lowest mean over
seeds replaces the default only when it leads it by more than the larger half-range over
seeds of the two) to one score per seed: the validation ``1 - fidelity`` of the front at
the front levels (best on the front at that size or smaller), averaged over the levels.
The default is the setting with the options the code used when the default was
contested (``--default``, a JSON object; ``{}`` is the code's defaults at the time).

    .venv/bin/python benchmarks/decide_front.py --budget 256 --default '{"fill": 0.25}'

Writes ``benchmarks/results/decide_front-<model>-b<budget>.json`` (per setting: per-seed
scores, per-level means, validation hypervolume, search seconds; the decision) and ends
with ``RESULT decision=<options> default_stands=<bool>``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, provenance
from decide_defaults import decide

RESULTS = ROOT / "benchmarks" / "results"


def settings(results: Path, model: str, budget: int) -> dict[str, dict[str, Any]]:
    """Options label -> the validation front runs of that setting (the file with most seeds)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(results.glob(f"pareto_front_validation-{model}-*b{budget}-n*.json")):
        if path.name.endswith(".partial.json"):
            continue
        d = json.loads(path.read_text())
        if d["args"]["budget"] != budget or d["quality"] != "fidelity":
            continue
        key = json.dumps(d["args"].get("options") or {}, sort_keys=True)
        if key not in found or len(d["runs"]) > len(found[key]["runs"]):
            found[key] = {**d, "_file": path.name}
    return found


def per_seed_score(run: dict[str, Any]) -> float:
    """Validation ``1 - fidelity`` of the front at its levels, averaged over the levels."""
    levels = [v for v in run["levels"].values() if v is not None]
    if len(levels) != len(run["levels"]):
        raise ValueError(f"seed {run['seed']}: the front has no point at some level: {run['levels']}")
    return 1.0 - statistics.fmean(levels)


def decide_front(results: Path, model: str, budget: int, default: dict[str, Any]) -> dict[str, Any]:
    found = settings(results, model, budget)
    default_key = json.dumps(default, sort_keys=True)
    if default_key not in found or len(found) < 2:
        raise SystemExit(f"--default {default_key}: need its validation file and at least one other for "
                         f"{model} at {budget} evaluations in {results}; found settings {sorted(found)}")
    seeds = min(len(d["runs"]) for d in found.values())
    scores = {k: [per_seed_score(r) for r in d["runs"][:seeds]] for k, d in found.items()}
    verdict = decide(scores, default_key)
    rows = []
    for k, d in found.items():
        runs = d["runs"][:seeds]
        levels = {t: statistics.fmean(1.0 - r["levels"][t] for r in runs) for t in runs[0]["levels"]}
        rows.append({
            "options": json.loads(k), "file": d["_file"], "seeds": [r["seed"] for r in runs],
            "validation_one_minus_fidelity": scores[k], "mean": verdict["means"][k], "spread": verdict["spreads"][k],
            "levels": levels, "hypervolume": statistics.fmean(r["hypervolume"] for r in runs),
            "origins": runs[0]["origins"],
            "search_seconds": statistics.fmean(r["phases"]["search"] for r in runs),
        })
    return {
        "benchmark": "decide_front", "model": model, "budget": budget, "default": default,
        "decision": json.loads(verdict["decision"]), "default_stands": verdict["default_stands"],
        "rule": verdict["rule"], "settings": rows,
        "provenance": provenance({"model": model, "budget": budget, "default": default}),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--budget", type=int, default=256)
    p.add_argument("--default", type=json.loads, default={},
                   help="the options (JSON object) of the setting that is the default being contested")
    args = p.parse_args(argv)
    if not isinstance(args.default, dict):
        p.error(f"--default: a JSON object of evolutionary options; got {args.default!r}")
    result = decide_front(RESULTS, args.model, args.budget, args.default)
    out = RESULTS / f"decide_front-{args.model}-b{args.budget}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    for s in result["settings"]:
        print(f"  {json.dumps(s['options'])}: {s['mean']:.4f} ±{s['spread']:.4f} "
              f"levels {', '.join(f'{t} {v:.4f}' for t, v in s['levels'].items())} hv {s['hypervolume']:.4f}")
    print(f"RESULT decision={json.dumps(result['decision']).replace(' ', '')} "
          f"default_stands={result['default_stands']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
