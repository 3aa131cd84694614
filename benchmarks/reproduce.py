"""Does a benchmark run reproduce the recorded figures? Compare two results folders.

Each headline figure of the README's Results section is read from both folders and judged
by its kind:

- ``exact``: quality figures (REPORT ``1 - fidelity``, hypervolume, fidelity after
  export, size ratios). They are deterministic given the code, data hashes and seeds, so
  they must agree to ``--exact-tolerance`` (default 1e-4).
- ``timing``: seconds, rates and ratios of timings. They move with the machine's load; the
  README states about ±15% between repeated runs on the shared 2-core machine, which is
  the default ``--timing-tolerance`` (relative).

Only figures present in both folders are compared; for search quality the key is
(mode, sparsity, budget, strategy, seed), taken from the latest file that has it.
``run_all.py`` calls :func:`compare` on the figures it rewrote. Run by hand::

    .venv/bin/python benchmarks/reproduce.py --reference <old results dir> --candidate benchmarks/results

Ends with ``RESULT compared=<n> within=<n> outside=<n>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_tables
from _common import provenance

EXACT, TIMING = "exact", "timing"
EXACT_TOLERANCE = readme_tables.QUALITY_TOLERANCE
TIMING_TOLERANCE = readme_tables.TIMING_NOISE  # the README's stated noise between repeated runs
# file -> [(figure name, path into the JSON, kind)]; a path element "side=naive" picks the
# list entry whose "side" is "naive".
FIGURES: dict[str, list[tuple[str, tuple[str, ...], str]]] = {
    "naive_optuna.json": [
        ("naive s/evaluation", ("runs", "side=naive", "seconds_per_evaluation"), TIMING),
        ("bayesian s/evaluation", ("runs", "side=bayesian", "seconds_per_evaluation"), TIMING),
        ("naive 1 - fidelity", ("runs", "side=naive", "one_minus_fidelity"), EXACT),
        ("bayesian 1 - fidelity", ("runs", "side=bayesian", "one_minus_fidelity"), EXACT),
    ],
    "eval_cost.json": [
        ("evaluation / forward", ("eval_over_forward",), TIMING),
        ("naive / forward", ("naive_over_forward",), TIMING),
        ("reconstructed evaluation / forward", ("recon_over_forward",), TIMING),
        ("reconstructed fidelity, first round", ("rounds", "round=0", "reconstructed_fidelity"), EXACT),
    ],
    "recovery.json": [
        ("fidelity before recovery", ("report_before", "fidelity"), EXACT),
        ("fidelity after recovery", ("report_after", "fidelity"), EXACT),
    ],
    "structured_export.json": [
        ("file ratio", ("file_ratio",), EXACT),
        ("parameter ratio, vocabulary trimmed", ("trimmed_params_ratio",), EXACT),
        ("fidelity of the export", ("fidelity_export",), EXACT),
        ("forward speedup", ("speedup_median",), TIMING),
    ],
    "store.json": [
        ("sqlite trials/s", ("sqlite", "median"), TIMING),
        ("postgres trials/s", ("postgres", "median"), TIMING),
        ("submit to first trial s", ("submit_to_first_trial", "median"), TIMING),
    ],
    "causal_lm.json": [("dense perplexity", ("dense",), EXACT)],  # and every method: see figures()
    "scale.json": [
        ("2 workers / 1 worker", ("summary", "speedup_2_over_1"), TIMING),
    ],
    "report_phase.json": [
        ("report phase / search", ("report_share",), TIMING),
    ],
}
# The front-search benchmark (pareto_front.py): hypervolume and the front read at each level.
PARETO_FRONT_FILES = ("pareto_front-minilm-b64-n3.json", "pareto_front-minilm-b256-n3.json",
                      "pareto_front-llama-b64-n3.json")
for _name in PARETO_FRONT_FILES:
    FIGURES[_name] = [
        ("hypervolume", ("summary", "hypervolume"), EXACT),
        *[(f"front at {t}", ("summary", "levels", t, "front"), EXACT) for t in ("0.5", "0.6", "0.7", "0.8")],
        *[(f"quarter-budget search at {t}", ("summary", "levels", t, "budget_quarter"), EXACT)
          for t in ("0.5", "0.6", "0.7", "0.8")],
    ]


def _dig(d: Any, path: tuple[str, ...]) -> float | None:
    for part in path:
        if isinstance(d, list):
            key, _, value = part.partition("=")
            d = next((x for x in d if isinstance(x, dict) and str(x.get(key)) == value), None)
        elif isinstance(d, dict):
            d = d.get(part)
        else:
            return None
        if d is None:
            return None
    return float(d) if isinstance(d, (int, float)) else None


def _leaves(d: dict[str, Any], leaf: str, prefix: str = "") -> list[tuple[str, float]]:
    """(path, value) of every ``leaf`` number below ``d``: {"0.7": {"sparsegpt": {leaf: v}}}
    gives ("sparsegpt at 0.7", v)."""
    out = []
    for key, sub in d.items():
        if not isinstance(sub, dict):
            continue
        if isinstance(sub.get(leaf), (int, float)):
            out.append((f"{key}{prefix}", float(sub[leaf])))
        else:
            out += _leaves(sub, leaf, f" at {key}")
    return out


def figures(results: Path, only: set[str] | None = None) -> dict[str, tuple[float, str, str]]:
    """Figure name -> (value, kind, file name) for the results in ``results``; with ``only``,
    from those files alone (a figure several files hold is then read from the named one,
    not from whichever sorts last)."""
    def wanted(name: str) -> bool:
        return only is None or name in only

    out: dict[str, tuple[float, str, str]] = {}
    for name, specs in FIGURES.items():
        path = results / name
        if not wanted(name) or not path.exists():
            continue
        d = json.loads(path.read_text())
        for label, where, kind in specs:
            value = _dig(d, where)
            if value is not None:
                out[f"{name.removesuffix('.json')}: {label}"] = (value, kind, name)
    # Every method of the one-shot benchmarks, whichever the file holds.
    for name, table, leaf in (("causal_lm.json", "methods", "perplexity"), ("oneshot.json", "runs", "one_minus_fidelity")):
        path = results / name
        if wanted(name) and path.exists():
            for label, value in _leaves(json.loads(path.read_text()).get(table) or {}, leaf):
                out[f"{name.removesuffix('.json')}: {label} {leaf.replace('_', ' ')}"] = (value, EXACT, name)
    # Per seed, from every front-search file (so a rerun of fewer seeds is judged run by run).
    for path in sorted(results.glob("pareto_front-*.json")):
        if path.name.endswith(".partial.json") or not wanted(path.name):
            continue
        d = json.loads(path.read_text())
        a = d["args"]
        setting = a["model"] + (f" {a['reconstruction']}" if a.get("reconstruction", "none") != "none" else "")
        setting += "".join(f" {k}={v}" for k, v in sorted((a.get("options") or {}).items()))
        for r in d["runs"]:
            key = f"pareto_front: {setting} b{a['budget']} seed {r['seed']}"
            if r.get("hypervolume") is not None:
                out[f"{key} hypervolume"] = (float(r["hypervolume"]), EXACT, path.name)
            for t, v in (r.get("levels") or {}).items():
                if v is not None:
                    out[f"{key} front at {t}"] = (float(v), EXACT, path.name)
    for d in readme_tables.search_runs(results):  # oldest first, so later files win
        name, a = d["_file"], d["args"]
        if not wanted(name):
            continue
        level = "pareto" if d["mode"] == "pareto" else f"s{a['sparsity']}"
        if readme_tables.reconstruction_of(d) != "none":
            level += f" {readme_tables.reconstruction_of(d)}"
        metric = "hypervolume" if d["mode"] == "pareto" else "one_minus_fidelity"
        for r in d["runs"]:
            if r.get(metric) is not None:
                key = f"search_quality: {level} b{a['budget']} {r['strategy']} seed {r['seed']}"
                out[key] = (float(r[metric]), EXACT, name)
    return out


def settings(results: Path, names: set[str] | None = None) -> dict[str, dict[str, str]]:
    """File name -> the model fingerprint and CPU its provenance records (those it records);
    with ``names``, of those files alone (e.g. the files :func:`figures` read)."""
    out = {}
    for path in sorted(results.glob("*.json")):
        if names is not None and path.name not in names:
            continue
        try:
            prov = json.loads(path.read_text()).get("provenance")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(prov, dict):
            out[path.name] = {k: str(prov[k]) for k in ("model_fingerprint", "cpu") if prov.get(k)}
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> str | None:
    """What differs between two files' settings, in words ("another model: fingerprint
    2366a215 -> f8a1bdfb"); None when nothing both record differs."""
    said = []
    if before.get("model_fingerprint") and after.get("model_fingerprint") and \
            before["model_fingerprint"] != after["model_fingerprint"]:
        said.append(f"another model: fingerprint {before['model_fingerprint'][:8]} -> {after['model_fingerprint'][:8]}")
    if before.get("cpu") and after.get("cpu") and before["cpu"] != after["cpu"]:
        said.append(f"another CPU: {before['cpu']} -> {after['cpu']}")
    return "; ".join(said) or None


def read_from(figs: dict[str, tuple[float, str, str]]) -> set[str]:
    """The result files the figures of :func:`figures` were read from."""
    return {file for _, _, file in figs.values()}


def compare(reference: dict[str, tuple[float, str, str]], candidate: dict[str, tuple[float, str, str]],
            *, exact_tolerance: float = EXACT_TOLERANCE, timing_tolerance: float = TIMING_TOLERANCE,
            context: tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]] | None = None,
            ) -> list[dict[str, Any]]:
    """One row per figure both sides hold. With ``context`` (:func:`settings` of the reference
    folder and of the candidate's), a row whose two files record another model or CPU says
    so under ``"cause"``: its figures were not made by the same computation."""
    rows = []
    for key in sorted(reference.keys() & candidate.keys()):
        (ref, kind, ref_file), (new, _, new_file) = reference[key], candidate[key]
        if kind == EXACT:
            within = abs(new - ref) <= exact_tolerance
            delta = f"{new - ref:+.4g}"
        else:
            within = ref != 0 and abs(new / ref - 1.0) <= timing_tolerance
            delta = f"{(new / ref - 1.0) * 100:+.1f}%" if ref else "n/a"
        row: dict[str, Any] = {"figure": key, "kind": kind, "reference": ref, "candidate": new,
                               "delta": delta, "within": within}
        cause = context and changed(context[0].get(ref_file, {}), context[1].get(new_file, {}))
        if cause:
            row["cause"] = cause
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'figure':58s} {'kind':6s} {'reference':>10s} {'this run':>10s} {'delta':>9s}"]
    for r in rows:
        mark = ("" if r["within"] else "  OUTSIDE") + (f" ({r['cause']})" if r.get("cause") else "")
        lines.append(f"{r['figure']:58s} {r['kind']:6s} {r['reference']:10.4f} {r['candidate']:10.4f} "
                     f"{r['delta']:>9s}{mark}")
    outside = sum(1 for r in rows if not r["within"])
    lines.append(f"RESULT compared={len(rows)} within={len(rows) - outside} outside={outside}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", type=Path, required=True, help="results folder of the recorded run")
    p.add_argument("--candidate", type=Path, default=Path("benchmarks/results"), help="results folder of the new run")
    p.add_argument("--exact-tolerance", type=float, default=EXACT_TOLERANCE)
    p.add_argument("--timing-tolerance", type=float, default=TIMING_TOLERANCE)
    p.add_argument("--files", default="",
                   help="comma-separated result file names: judge only the candidate's figures read from these "
                        "(the files a partial rerun wrote)")
    p.add_argument("--out", type=Path, default=None,
                   help="also write the comparison as JSON, with the commit and date of each file compared")
    args = p.parse_args(argv)
    for field in ("reference", "candidate"):
        if not getattr(args, field).is_dir():
            p.error(f"--{field}: {getattr(args, field)} is not a folder")
    wanted = set(args.files.split(",")) if args.files else None
    if wanted:
        absent = sorted(n for n in wanted if not (args.candidate / n).is_file())
        if absent:
            p.error(f"--files: {absent} are not files in --candidate {args.candidate}; give the names of the "
                    "result files the rerun wrote there, comma-separated")
    candidate = figures(args.candidate, wanted)
    reference = figures(args.reference)
    rows = compare(reference, candidate, exact_tolerance=args.exact_tolerance,
                   timing_tolerance=args.timing_tolerance,
                   context=(settings(args.reference, read_from(reference)), settings(args.candidate, read_from(candidate))))
    print(render(rows))
    if args.out:
        args.out.write_text(json.dumps({
            "benchmark": "reproduce", "rows": rows,
            "files": {side: origins(getattr(args, side), {figs[str(r["figure"])][2] for r in rows})
                      for side, figs in (("reference", reference), ("candidate", candidate))},
            "provenance": provenance({k: str(v) for k, v in vars(args).items()}),
        }, indent=2))
        print(f"wrote {args.out}")
    return 0


def origins(folder: Path, names: set[str]) -> dict[str, dict[str, str]]:
    """The commit and date each compared file records in its provenance."""
    out = {}
    for name in sorted(names):
        path = folder / name
        if path.exists():
            d = json.loads(path.read_text())
            prov = {**d, **(d.get("provenance") or {})}  # search_quality files keep these at the top
            out[path.name] = {"git_commit": str(prov.get("git_commit", "?")),
                              "date": str(prov.get("date") or prov.get("started") or "?")}
    return out


if __name__ == "__main__":
    sys.exit(main())
