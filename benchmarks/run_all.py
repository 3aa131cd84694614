"""Run the benchmark set, then regenerate the README's Results section from the JSON.

``make bench`` runs the CPU set (``--set cpu``), sized for 30 to 40 minutes on a 2-core
machine: the naive peer side by side with prunetune, evaluation cost, recovery,
structured export, store, scale, search quality at 0.7 with 64 evaluations over 3
seeds, and reconstruction on a causal LM (against llm-compressor where its environment
is set up: ``benchmarks/peers/llmcompressor/setup.sh``). ``make bench-full`` (``--set full``) adds what does not fit: multi-fidelity
screening (120 s per arm, 4 arms), search quality at 0.5 with 64 evaluations and at 0.5
and 0.7 with 256 evaluations over 3 seeds, Pareto-mode hypervolume at 64 and 256 evaluations over 3 seeds,
the search over reconstructed levels at 0.5/64, 0.7/64 and 0.7/256 over 3 seeds, the
front search (``pareto_front.py``: MiniLM at 64 and 256 evaluations, the causal LM at 64,
3 seeds each) and the demo spec's report phase (several hours on 2 cores).

Each script runs as its own process, holding ``--lock`` (an exclusive ``flock``, default
``/tmp/prunetune-heavy.lock``) for its duration so that timing runs get the cores to
themselves on a shared machine. The README is regenerated after every step, so an
interrupted run leaves it consistent with the JSON that exists, and ``--resume`` continues
it: the steps already finished are kept (with the provenance of each sitting), the rest run
(``--resume --only a,b``: a sitting that runs just those, when they are unfinished). A
search-quality step stopped part way goes on from its last finished seed, in Pareto mode its
last finished strategy of a seed (``search_quality.py --resume``), so a step longer than a
sitting spans several. Writes
``benchmarks/results/run_all-<set>.json`` (steps, wall times, RESULT lines) and ends with::

    RESULT steps=<n> failed=<n> wall_s=<s>
"""

from __future__ import annotations

import argparse
import fcntl
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_tables
import reproduce
from _common import ROOT, provenance

PY = sys.executable
SQ = "benchmarks/search_quality.py"
CPU: list[tuple[str, list[str]]] = [
    ("naive_optuna", ["benchmarks/peers/naive_optuna.py"]),
    ("eval_cost", ["benchmarks/eval_cost.py"]),
    ("recovery", ["benchmarks/recovery.py"]),
    ("structured_export", ["benchmarks/structured_export.py"]),
    ("store", ["benchmarks/store.py"]),
    ("scale", ["benchmarks/scale.py"]),
    ("search_quality_0.7_b64_n3", [SQ, "--sparsity", "0.7", "--budget", "64", "--seeds", "3"]),
    ("causal_lm", ["benchmarks/causal_lm.py"]),
    ("oneshot", ["benchmarks/oneshot.py"]),
    ("levels_build", ["benchmarks/levels_build.py"]),
]
FULL: list[tuple[str, list[str]]] = [
    ("multifidelity", ["benchmarks/multifidelity.py", "--seconds", "120"]),
    *[(f"search_quality_{s}_b{b}_n3", [SQ, "--sparsity", s, "--budget", b, "--seeds", "3"])
      for b, s in (("64", "0.5"), ("256", "0.5"), ("256", "0.7"))],
    *[(f"search_quality_pareto_b{b}_n3", [SQ, "--pareto", "--budget", b, "--seeds", "3"]) for b in ("64", "256")],
    ("naive_optuna_evolutionary", ["benchmarks/peers/naive_optuna.py", "--strategies", "bayesian,evolutionary"]),
    *[(f"search_quality_sparsegpt_{s}_b{b}_n3", [SQ, "--reconstruction", "sparsegpt", "--sparsity", s,
                                                 "--budget", b, "--seeds", "3"])
      for b, s in (("64", "0.5"), ("64", "0.7"), ("256", "0.7"))],
    # The front search against the uniform sweeps above (a search_quality --pareto file of
    # the same budget, any seed count: the sweep is deterministic), and the demo's report phase.
    *[(f"pareto_front_minilm_b{b}_n3", ["benchmarks/pareto_front.py", "--budget", b, "--seeds", "3",
                                        "--uniform-from", f"latest:search_quality-pareto-b{b}"])
      for b in ("64", "256")],
    ("pareto_front_llama_b64_n3", ["benchmarks/pareto_front.py", "--model", "llama", "--budget", "64", "--seeds", "3"]),
    ("report_phase", ["benchmarks/report_phase.py"]),
]
SETS = {"cpu": CPU, "full": FULL}
RESULTS = ROOT / "benchmarks" / "results"


@contextmanager
def held(lock: str | None) -> Iterator[None]:
    if not lock:
        yield
        return
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_step(name: str, cmd: list[str], lock: str | None) -> dict[str, object]:
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    waited = time.perf_counter()
    with held(lock):  # None when the whole run already holds it (--hold)
        start = time.perf_counter()
        proc = subprocess.Popen([PY, *cmd], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        last = ""
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if line.startswith("RESULT "):
                last = line.strip()
        rc = proc.wait()
        wall = time.perf_counter() - start
    print(f"== {name}: rc={rc} {wall:.0f}s", flush=True)
    return {"step": name, "command": cmd, "rc": rc, "wall_seconds": round(wall, 1),
            "lock_wait_seconds": round(start - waited, 1), "result": last}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", choices=sorted(SETS), default="cpu")
    p.add_argument("--only", default="", help="comma-separated step names (default: the whole set)")
    p.add_argument("--lock", default="/tmp/prunetune-heavy.lock", help="flock file ('' to run without)")
    p.add_argument("--hold", action="store_true",
                   help="take the lock once for the whole set instead of once per step")
    p.add_argument("--no-readme", action="store_true", help="do not regenerate README.md")
    p.add_argument("--resume", action="store_true",
                   help="continue benchmarks/results/run_all-<set>.json: keep its finished steps "
                        "(rc 0) and their reproduction rows, run the others (a set longer than a "
                        "sitting, e.g. full, is run over several); with --only, run just those of "
                        "the named steps that are unfinished")
    args = p.parse_args(argv)
    steps = SETS[args.set]
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {n for n, _ in steps}
        if unknown:
            p.error(f"--only: unknown steps {sorted(unknown)}; set {args.set} has {[n for n, _ in steps]}")
        steps = [s for s in steps if s[0] in wanted]

    with held(args.lock if args.hold else None):
        return run_steps(args, steps)


def run_steps(args: argparse.Namespace, steps: list[tuple[str, list[str]]]) -> int:
    start, started_at = time.perf_counter(), time.time()
    results = RESULTS
    recorded = reproduce.figures(results)  # what the README showed before this run
    # The model and CPU each of those files records.
    recorded_settings = reproduce.settings(results, reproduce.read_from(recorded))
    # --only alone is a partial run with its own file; with --resume it is a sitting of the set.
    out = results / f"run_all-{args.set}{'-partial' if args.only and not args.resume else ''}.json"
    rows: list[dict[str, object]] = []
    earlier: dict[str, Any] = {}
    if args.resume and out.exists():
        earlier = json.loads(out.read_text())
        rows = [r for r in earlier["steps"] if r["rc"] == 0]
        done = {r["step"] for r in rows}
        steps = [s for s in steps if s[0] not in done]
        print(f"--resume: {len(done)} steps finished in {out.name}; running {[n for n, _ in steps]}", flush=True)
    kept = {r["figure"]: r for r in earlier.get("reproduction", [])}
    order = [n for n, _ in SETS[args.set]]
    reproduction: list[dict[str, object]] = list(kept.values())
    sittings = [*earlier.get("sittings", []), provenance(vars(args))]
    for name, cmd in steps:
        if args.resume and cmd[0] == SQ:  # a step stopped between seeds goes on from its last seed
            cmd = [*cmd, "--resume"]
        rows.append(run_step(name, cmd, None if args.hold else args.lock or None))
        rows.sort(key=lambda r: order.index(str(r["step"])))
        # Judge only the figures this run wrote anew against what was recorded before it
        # (an earlier sitting's rows stay, unless this one judged the same figure again).
        now = reproduce.figures(results)
        rewritten = {k: v for k, v in now.items() if (results / v[2]).stat().st_mtime >= started_at}
        fresh = {str(r["figure"]): r for r in reproduce.compare(
            recorded, rewritten,
            context=(recorded_settings, reproduce.settings(results, reproduce.read_from(rewritten))))}
        reproduction = sorted({**kept, **fresh}.values(), key=lambda r: str(r["figure"]))
        out.write_text(json.dumps({
            "benchmark": "run_all", "set": args.set, "provenance": provenance(vars(args)),
            "sittings": sittings,
            "wall_seconds": round(float(earlier.get("wall_seconds", 0.0)) + time.perf_counter() - start, 1),
            "steps": rows, "reproduction": reproduction,
        }, indent=2))
        if not args.no_readme:
            readme_tables.main([])
    wall = time.perf_counter() - start
    failed = sum(1 for r in rows if r["rc"] != 0)
    for r in rows:
        print(f"{r['step']:28s} rc={r['rc']} {r['wall_seconds']:7.1f}s  {r['result']}")
    print(f"Against the figures recorded before this run (quality to {reproduce.EXACT_TOLERANCE:g}, "
          f"timing within {reproduce.TIMING_TOLERANCE:.0%}):")
    print(reproduce.render(reproduction))
    print(f"RESULT steps={len(rows)} failed={failed} wall_s={wall:.0f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
