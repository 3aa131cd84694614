"""Re-decide the contested strategy defaults on the validation split, never on REPORT.

Each contested option runs at its current default (read from the code) and at its main
alternative, one option changed at a time, on the project's usual MiniLM task in budget
mode (``search_quality.py``'s defaults: sparsity 0.7, 64 evaluations of the search split,
evolutionary offspring screened on a quarter of it), 3 seeds each. A configuration's
quality per seed is the validation-split ``1 - fidelity`` of its best allocation (lower
is better); the decision for an option is the value with the lowest mean over seeds when
it leads the default by more than the seed-to-seed spread (the larger half-range over
seeds of the two); a smaller lead is a tie, and a tie keeps the default. The
configurations that leave every option at its default are run once per strategy and
stand as the default of each of its options.

The runner still scores each search's best trial on REPORT in its report phase; that
score stays in the run's temporary database and is read by nothing here.

    flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/decide_defaults.py

``--redecide FILE`` applies the rule again to a file's recorded runs (nothing runs).

Writes ``benchmarks/results/decide_defaults.json`` (per option value: per-seed validation
quality, mean, spread, wall time; the decision and whether the current default stands)
and ends with::

    RESULT evolutionary.step_scales=<value> evolutionary.partitions=<value> bayesian.grouping=<value> changed=<n>
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import search_quality
from _common import ROOT, provenance

from prunetune.engine.workbench import build_workbench
from prunetune.search.registry import strategy_class

OUT = ROOT / "benchmarks" / "results" / "decide_defaults.json"


@dataclass(frozen=True)
class Contest:
    """One contested option of one strategy and the values it is decided between (the
    current default joins them if it is not among them)."""

    strategy: str
    option: str
    values: tuple[Any, ...]


CONTESTS = (
    # a fixed switch size against Pareto mode's mix of sizes
    Contest("evolutionary", "step_scales", ([1.0], [0.5, 1.0, 2.0])),
    # switches between layers and blocks, or between layer roles (all value projections, ...) too
    Contest("evolutionary", "partitions", (["layer", "block"], ["layer", "block", "kind"])),
    # one offset per block, or one per block plus one per layer role
    Contest("bayesian", "grouping", ("per-block", "block+type")),
)


def plain(value: Any) -> Any:
    """A JSON-comparable form of an option value: tuples as lists, numbers in lists as floats."""
    if isinstance(value, (list, tuple)):
        return [float(v) if isinstance(v, (int, float)) else v for v in value]
    return value


def label(value: Any) -> str:
    return json.dumps(plain(value))


def current_default(strategy: str, option: str, space: Any) -> Any:
    """The value the code uses today when the option is left out of the spec (a default
    of None is resolved by building the strategy on ``space``, as ``step_scales`` is by mode)."""
    cls = strategy_class(strategy)
    value = inspect.signature(cls).parameters[option].default
    if value is None:
        value = getattr(cls(space, seed=0), option)
    return plain(value)


def alternatives(contest: Contest, default: Any) -> list[Any]:
    return [plain(v) for v in contest.values if plain(v) != default]


def configurations(contests: Sequence[Contest], defaults: Mapping[tuple[str, str], Any]) -> list[dict[str, Any]]:
    """Per strategy one configuration with every contested option at its default, then one
    per alternative value with that option changed. Every contested option is passed
    explicitly, so a later change of default does not change what a configuration runs."""
    configs: list[dict[str, Any]] = []
    for strategy in dict.fromkeys(c.strategy for c in contests):
        own = [c for c in contests if c.strategy == strategy]
        base = {c.option: defaults[(strategy, c.option)] for c in own}
        configs.append({"name": f"{strategy}-defaults", "strategy": strategy, "varies": None, "options": base})
        for c in own:
            for alt in alternatives(c, base[c.option]):
                configs.append({"name": f"{strategy}-{c.option}={label(alt)}", "strategy": strategy,
                                "varies": c.option, "options": {**base, c.option: alt}})
    return configs


def config_for(configs: Sequence[dict[str, Any]], contest: Contest, value: Any, default: Any) -> str:
    """The name of the configuration that ran ``value`` of ``contest``'s option."""
    varies = None if value == default else contest.option
    return next(c["name"] for c in configs if c["strategy"] == contest.strategy and c["varies"] == varies
                and c["options"][contest.option] == value)


RULE = ("the lowest mean over seeds replaces the default only when it leads it by more than the larger "
        "half-range over seeds of the two; otherwise the default stands")


def decide(scores: Mapping[str, Sequence[float]], default: str) -> dict[str, Any]:
    """The value with the lowest mean ``1 - fidelity`` over seeds, if it leads the default
    by more than the seed-to-seed spread (the larger half-range over seeds of the two);
    otherwise, a tie, the default.

    Args:
        scores: option value (as its JSON label) -> per-seed validation ``1 - fidelity``.
        default: the label of the current default, one of ``scores``' keys.

    Raises:
        ValueError: when a value has no scores or ``default`` is not among the values.
    """
    if default not in scores or any(not v for v in scores.values()):
        raise ValueError(f"decide: every value needs scores and the default {default!r} must be one of "
                         f"{sorted(scores)}; got {dict(scores)!r}")
    means = {k: statistics.fmean(v) for k, v in scores.items()}
    spreads = {k: (max(v) - min(v)) / 2 for k, v in scores.items()}
    best = min(means, key=lambda k: (means[k], k != default))
    # A lead inside the seed-to-seed spread is a tie, and a tie keeps the default.
    margin = means[default] - means[best]
    if best != default and margin <= max(spreads[best], spreads[default]):
        best = default
    return {"means": means, "spreads": spreads, "decision": best, "default": default,
            "default_stands": best == default, "rule": RULE}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--redecide", type=Path, default=None,
                   help="decide again from this result file's recorded runs (nothing runs); writes --out")
    own, rest = p.parse_known_args(argv)
    if own.redecide:
        write(redecide(own.redecide), Path(own.out))
        return 0
    # The task, budget and screening are search_quality.py's (its flags pass through).
    args = search_quality.build_parser().parse_args([*rest, "--score-split", "validation"])
    if args.pareto:
        p.error("decide_defaults.py decides in budget mode; drop --pareto")
    started = datetime.now(timezone.utc)
    bench = build_workbench(search_quality.make_spec(args, "uniform", 0, args.budget, {}))
    defaults = {(c.strategy, c.option): current_default(c.strategy, c.option, bench.space) for c in CONTESTS}
    configs = configurations(CONTESTS, defaults)
    total, done, spent = len(configs) * own.seeds, 0, 0.0
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(own.seeds):
            for i, cfg in enumerate(configs):
                args.options = {cfg["strategy"]: cfg["options"]}
                t = time.perf_counter()
                row = search_quality.run_one(args, bench, cfg["strategy"], seed, f"sqlite:///{tmp}/c{i}-{seed}.db")
                spent += time.perf_counter() - t
                row.pop("_timeline", None)
                done += 1
                rows.append({"config": cfg["name"], **row})
                print(f"{cfg['name']:48s} seed={seed} 1-fid={row['one_minus_fidelity']:.4f} (validation) "
                      f"{row['wall_seconds']}s; about {spent / done * (total - done) / 60:.0f} min left",
                      flush=True)

    result = {
        "benchmark": "decide_defaults", "score_split": "validation", "quality": "one_minus_fidelity",
        "started": started.isoformat(), "args": {**vars(args), "seeds": own.seeds},
        "provenance": provenance({**vars(args), "seeds": own.seeds, "configs": configs}, bench=bench,
                                 seeds=list(range(own.seeds))),
        "dense": bench.task.dense_reference(), "configs": configs,
        "decisions": decisions_for(configs, rows, defaults), "runs": rows,
    }
    write(result, Path(own.out))
    return 0


def decisions_for(configs: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]],
                  defaults: Mapping[tuple[str, str], Any]) -> list[dict[str, Any]]:
    """Per contested option: each value's per-seed validation scores and :func:`decide`'s verdict."""
    by_config = {cfg["name"]: [r for r in rows if r["config"] == cfg["name"]] for cfg in configs}
    decisions = []
    for c in CONTESTS:
        default = defaults[(c.strategy, c.option)]
        values = [default, *alternatives(c, default)]
        names = [config_for(configs, c, v, default) for v in values]
        scores = {label(v): [r["one_minus_fidelity"] for r in by_config[n]] for v, n in zip(values, names, strict=True)}
        verdict = decide(scores, label(default))
        decisions.append({
            "strategy": c.strategy, "option": c.option, "current_default": default,
            "decision": json.loads(verdict["decision"]), "default_stands": verdict["default_stands"],
            "rule": verdict["rule"],
            "values": [{"value": v, "config": n, "validation_one_minus_fidelity": scores[label(v)],
                        "mean": verdict["means"][label(v)], "spread": verdict["spreads"][label(v)],
                        "wall_seconds": [r["wall_seconds"] for r in by_config[n]]}
                       for v, n in zip(values, names, strict=True)],
        })
    return decisions


def redecide(path: Path) -> dict[str, Any]:
    """Apply :func:`decide` again to the runs a result file recorded (the defaults they ran
    against are the file's), without running anything."""
    result = json.loads(path.read_text())
    defaults = {(d["strategy"], d["option"]): d["current_default"] for d in result["decisions"]}
    result["decisions"] = decisions_for(result["configs"], result["runs"], defaults)
    return result


def write(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    decisions = result["decisions"]
    for d in decisions:
        cells = ", ".join(f"{label(v['value'])} {v['mean']:.4f} ±{v['spread']:.4f}" for v in d["values"])
        print(f"  {d['strategy']}.{d['option']}: {cells} -> {label(d['decision'])}"
              f"{'' if d['default_stands'] else ' (default changes)'}")
    print("RESULT " + " ".join(f"{d['strategy']}.{d['option']}={label(d['decision']).replace(' ', '')}"
                               for d in decisions)
          + f" changed={sum(not d['default_stands'] for d in decisions)}")


if __name__ == "__main__":
    sys.exit(main())
