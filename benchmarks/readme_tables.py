"""Build the README's ``## Results`` section from ``benchmarks/results/*.json`` only.

Replaces what lies between ``<!-- results:start -->`` and ``<!-- results:end -->`` in
README.md (inserted before ``## Evaluators`` the first time) and draws
``docs/results-fronts.png``. Every figure comes from a JSON file a benchmark wrote; a
table whose file is missing says "not yet run". Where prunetune does not beat a
baseline the text says so, decided from the same numbers.

    .venv/bin/python benchmarks/readme_tables.py [--check]

``--check`` exits 1 when README.md is not what the JSON files produce. Ends with
``RESULT tables=<n> missing=<n>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
FIGURE = ROOT / "docs" / "results-fronts.png"
START, END = "<!-- results:start -->", "<!-- results:end -->"
STRATEGIES = ("uniform", "owl", "random", "evolutionary", "bayesian", "policy-gradient")
BASELINES = ("uniform", "owl")
GOALS = {(0.7, 256): 0.20}  # (sparsity, evaluations) -> how far below uniform the best search must be
# How far a rerun's figures may move and still reproduce (benchmarks/reproduce.py judges by these).
TIMING_NOISE = 0.15  # relative, between repeated timing runs on the shared 2-core machine
QUALITY_TOLERANCE = 1e-4  # absolute: quality figures are deterministic given code, data and seeds
NOISE = ("Timing figures are medians on a shared 2-core machine; repeated runs differ by about "
         f"±{TIMING_NOISE:.0%}, so timing ratios within that band are a tie. Quality figures are deterministic "
         "given the seeds (same code, data hashes and seeds give the same numbers).")


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except json.JSONDecodeError:
        return None


def day(d: dict[str, Any]) -> str:
    when = d.get("date") or d.get("started") or (d.get("provenance") or {}).get("date") or ""
    return str(when)[:16].replace("T", " ") + (" UTC" if when else "")


def where(d: dict[str, Any]) -> str:
    prov = d.get("provenance") or {}
    m = d.get("machine")
    return str(prov.get("machine") or (m if isinstance(m, str) and m.strip() else m and m.get("platform")) or "?")


def stamp(d: dict[str, Any], script: str) -> str:
    prov = d.get("provenance") or {}
    tag = f", config `{prov['config_hash']}`" if prov.get("config_hash") else ""
    tag += f", spec `{prov['spec_hash']}`" if prov.get("spec_hash") else ""
    return f"_`{script}`, {day(d)}, {where(d)}{tag}._"


# -- search quality ------------------------------------------------------------------


def search_runs(results: Path = RESULTS) -> list[dict[str, Any]]:
    """Every readable search_quality result in ``results``, oldest first."""
    out = []
    for path in sorted(results.glob("search_quality-*.json")):
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        d["_file"] = path.name
        out.append(d)
    return sorted(out, key=lambda d: d.get("started", ""))


def reconstruction_of(d: dict[str, Any]) -> str:
    """The run's ``--reconstruction`` ("none": Wanda masks)."""
    return str(d.get("reconstruction") or "none")


def best_cells(runs: list[dict[str, Any]], mode: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """(sparsity or 'pareto', budget, strategy) -> summary cell from the run with the most
    seeds, the latest among equals."""
    cells: dict[tuple[Any, ...], dict[str, Any]] = {}
    for d in runs:
        if d.get("mode") != mode:
            continue
        a = d["args"]
        level = a["sparsity"] if mode == "budget" else "pareto"
        for s, v in d["summary"].items():
            key = (level, a["budget"], s)
            cell = dict(v, date=day(d), file=d["_file"], retrieval=(d.get("retrieval") or {}).get(s))
            if key not in cells or v["n"] >= cells[key]["n"]:
                cells[key] = cell
    return cells


def fmt_cell(c: dict[str, Any] | None, digits: int = 3) -> str:
    if c is None:
        return ""
    spread = f" ±{c['spread']:.{digits}f}" if c["n"] > 1 else ""
    return f"{c['mean']:.{digits}f}{spread} (n={c['n']:.0f})"


def block_profile(path: str, strategy: str) -> dict[int, float]:
    """Mean layer sparsity per block (the first number in a layer's name) of a strategy's
    best allocations in one result file, averaged over its seeds."""
    import re

    rows = [r for r in json.loads((RESULTS / Path(path).name).read_text())["runs"]
            if r["strategy"] == strategy and r.get("allocation")]
    sums: dict[int, list[float]] = {}
    for r in rows:
        for name, v in r["allocation"].items():
            m = re.search(r"\.(\d+)\.", name)
            if m:
                sums.setdefault(int(m.group(1)), []).append(float(v))
    return {b: sum(v) / len(v) for b, v in sorted(sums.items())}


def owl_sentence(level: float, budget: int, owl: dict[str, Any], top: str, best: dict[str, Any]) -> list[str]:
    """Where OWL and the best search disagree, read from their allocations: the blocks OWL
    prunes most against the blocks the search prunes least."""
    o, b = block_profile(owl["file"], "owl"), block_profile(best["file"], top)
    if len(o) < 4 or set(o) != set(b):
        return []
    most_owl = sorted(o, key=lambda k: -o[k])[:2]
    least_best = sorted(b, key=lambda k: b[k])[:2]
    shared = sorted(set(most_owl) & set(least_best))
    text = (f"- Allocations at {level} with {budget} evaluations: OWL prunes blocks "
            f"{' and '.join(f'{k} ({o[k]:.2f})' for k in most_owl)} most; {top}'s best prunes blocks "
            f"{' and '.join(f'{k} ({b[k]:.2f})' for k in least_best)} least (mean layer sparsity per block)")
    if shared:
        return [text + f": OWL prunes hardest block{'s' if len(shared) > 1 else ''} "
                f"{' and '.join(map(str, shared))}, which the search keeps the most."]
    return [text + "."]


def wall_seconds(path: str, strategy: str) -> float | None:
    """Mean wall time of a strategy's runs in one result file (search and its REPORT scoring)."""
    rows = [r["wall_seconds"] for r in json.loads((RESULTS / Path(path).name).read_text())["runs"]
            if r["strategy"] == strategy and isinstance(r.get("wall_seconds"), (int, float))]
    return sum(rows) / len(rows) if rows else None


def wall_table(cells: dict[tuple[Any, ...], dict[str, Any]], rows: list[tuple[Any, Any]]) -> list[str]:
    """Wall time beside the evaluations: equal evaluations are not equal time (screening
    and the strategies' own work differ), so each cell's seconds, and as a multiple of the
    row's fastest search strategy."""
    searched = [s for s in STRATEGIES if s not in BASELINES]
    out = ["Wall time of each search (seconds, mean over seeds; the search and the REPORT scoring of its "
           "best), and in brackets as a multiple of the fastest search strategy in the row:", "",
           "| sparsity | evaluations | " + " | ".join(searched) + " |", "|---|---|" + "---|" * len(searched)]
    for level, budget in rows:
        secs = {s: wall_seconds(c["file"], s) for s in searched if (c := cells.get((level, budget, s)))}
        known = [v for v in secs.values() if v]
        if not known:
            continue
        fastest = min(known)
        out.append(f"| {level} | {budget} | " + " | ".join(
            f"{secs[s]:.0f} ({secs[s] / fastest:.2f}x)" if secs.get(s) else "" for s in searched) + " |")
    return [*out, ""]


def quality_section(runs: list[dict[str, Any]]) -> list[str]:
    cells = best_cells(runs, "budget")
    rows = sorted({(k[0], k[1]) for k in cells}, key=lambda r: (r[1], r[0]))
    lines = ["### Search quality: REPORT-split `1 - fidelity` (lower is better)", ""]
    if not rows:
        return [*lines, "Not yet run (`benchmarks/search_quality.py`).", ""]
    lines += [
        "Budget mode, MiniLM, Wanda scores, every strategy with the same number of evaluations of "
        "the search split (a screen at fraction f counts f). Each cell: mean over seeds, ± half the "
        "range where n > 1, and n = the number of seeds (uniform and OWL are deterministic: one run "
        "stands for every seed). Best per row in bold. "
        f"Evolutionary screens offspring at fraction {runs[-1]['args'].get('screen', 0)} (0 = off).", "",
        "| sparsity | evaluations | " + " | ".join(STRATEGIES) + " | run |",
        "|---|---|" + "---|" * len(STRATEGIES) + "---|",
    ]
    verdicts = []
    for level, budget in rows:
        row = {s: cells.get((level, budget, s)) for s in STRATEGIES}
        present = {s: c for s, c in row.items() if c}
        best = min(present, key=lambda s: present[s]["mean"])
        shown = [("**" + fmt_cell(c) + "**" if s == best else fmt_cell(c)) for s, c in row.items()]
        dates = sorted({c["date"][:10] for c in present.values()})
        lines.append(f"| {level} | {budget} | " + " | ".join(shown) + f" | {', '.join(dates)} |")
        base = row.get("uniform")
        if base:
            for s, c in present.items():
                if s in BASELINES:
                    continue
                rel = (c["mean"] - base["mean"]) / base["mean"]
                if c["mean"] >= base["mean"]:
                    verdicts.append(f"- At {level} with {budget} evaluations, **{s} does not beat uniform** "
                                    f"({c['mean']:.3f} against {base['mean']:.3f}).")
                else:
                    verdicts.append(f"- At {level} with {budget} evaluations, {s} is {-rel:.1%} below uniform.")
            goal = GOALS.get((level, budget))
            searched = {s: c for s, c in present.items() if s not in BASELINES}
            if goal and searched:
                top = min(searched, key=lambda s: searched[s]["mean"])
                need = base["mean"] * (1 - goal)
                got = searched[top]["mean"]
                verdicts.append(
                    f"- Goal at {level} with {budget} evaluations: the best search strategy at least {goal:.0%} "
                    f"below uniform (at most {need:.4f}). The best, {top}, reaches {got:.4f}: "
                    + ("**met**." if got <= need else f"**not met**, {got - need:.4f} short.")
                )
            owl = row.get("owl")
            if owl and owl["mean"] >= base["mean"]:
                verdicts.append(f"- At {level}, the OWL baseline is worse than uniform ({owl['mean']:.3f} "
                                f"against {base['mean']:.3f}).")
            if owl and searched:
                top = min(searched, key=lambda s: searched[s]["mean"])
                verdicts += owl_sentence(level, budget, owl, top, searched[top])
    missing = [f"{lv}/{b}: {', '.join(s for s in STRATEGIES if (lv, b, s) not in cells)}" for lv, b in rows
               if any((lv, b, s) not in cells for s in STRATEGIES)]
    lines += ["", *wall_table(cells, rows), *verdicts]
    if missing:
        lines += [f"- Not run (sparsity/evaluations: strategies): {'; '.join(missing)}."]
    if all(c["n"] < 3 for c in cells.values()):
        lines += ["- Every cell is one seed: the 3-seed runs (`make bench-full`) have not been run yet, "
                  "so differences between families are single draws."]
    elif single := sorted({f"{k[0]}/{k[1]}" for k, c in cells.items() if c["n"] < 3 and k[2] not in BASELINES}):
        lines += [f"- Rows (sparsity/evaluations) {', '.join(single)} have single-seed cells: differences "
                  "there are single draws."]
    lines += ["", *hypervolume_section(runs)]
    return lines


def hypervolume_section(runs: list[dict[str, Any]]) -> list[str]:
    cells = best_cells(runs, "pareto")
    lines = ["### Pareto mode: hypervolume of the REPORT-split front (higher is better)", ""]
    if not cells:
        return [*lines, "Not yet run: `benchmarks/search_quality.py --pareto --budget 64` and `--budget 256` "
                "are in `make bench-full`.", ""]
    budgets = sorted({k[1] for k in cells})
    lines += ["Quality = fidelity, size = nonzero parameters / model parameters, reference point "
              "(fidelity 0, size 1).", "",
              "| evaluations | " + " | ".join(STRATEGIES) + " |", "|---|" + "---|" * len(STRATEGIES)]
    verdicts = []
    for b in budgets:
        lines.append(f"| {b} | " + " | ".join(fmt_cell(cells.get(("pareto", b, s)), 4) for s in STRATEGIES) + " |")
        base = cells.get(("pareto", b, "uniform"))
        for s in STRATEGIES[1:]:
            c = cells.get(("pareto", b, s))
            if base and c and c["mean"] <= base["mean"]:
                verdicts.append(f"- With {b} evaluations, **{s} does not beat the uniform front** "
                                f"({c['mean']:.4f} against {base['mean']:.4f}).")
            elif base and c:
                verdicts.append(f"- With {b} evaluations, {s}'s front exceeds the uniform sweep's by "
                                f"{c['mean'] / base['mean'] - 1:.1%} ({c['mean']:.4f} against {base['mean']:.4f}"
                                f"{', one seed' if c['n'] < 2 else ''}).")
    lines += ["", *verdicts] if verdicts else []
    for b in (64, 256):
        if b not in budgets:
            lines.append(f"\n{b} evaluations: not yet run.")
    return [*lines, ""]


# -- the naive peer --------------------------------------------------------------------


def naive_section() -> list[str]:
    d = load("naive_optuna")
    lines = ["### Against the naive alternative (same data, budget and projection)", ""]
    if d is None:
        return [*lines, "Not yet run (`benchmarks/peers/naive_optuna.py`).", ""]
    a = d["args"]
    lines += [
        f"Optuna TPE over {len(d['runs'][0]['allocation'])} per-layer amounts, each trial projected exactly "
        f"onto sparsity {a['sparsity']} (`prunetune.spaces.budget`), `copy.deepcopy` + "
        "`torch.nn.utils.prune.l1_unstructured` per layer, search texts tokenised per trial; "
        f"beside prunetune in the same run, {a['budget']} evaluations each, seed {a['seed']}.", "",
        "| side | seconds per evaluation | REPORT `1 - fidelity` | retrieval@1 (dense "
        f"{d['dense']['retrieval_at_1']:.3f}) |", "|---|---|---|---|",
    ]
    naive = d["runs"][0]
    for r in d["runs"]:
        name = "naive Optuna + torch.nn.utils.prune" if r["side"] == "naive" else f"prunetune `{r['side']}`"
        lines.append(f"| {name} | {r['seconds_per_evaluation']:.2f} | {r['one_minus_fidelity']:.3f} | "
                     f"{r['retrieval_at_1']:.3f} |")
    lines.append("")
    for r in d["runs"][1:]:
        speed = naive["seconds_per_evaluation"] / r["seconds_per_evaluation"]
        better = r["one_minus_fidelity"] < naive["one_minus_fidelity"]
        lines.append(f"- prunetune `{r['side']}`: {speed:.2f}x the naive loop's evaluations per second; "
                     + (f"REPORT `1 - fidelity` {r['one_minus_fidelity']:.3f} against {naive['one_minus_fidelity']:.3f}."
                        if better else f"**does not beat the naive loop on quality** ({r['one_minus_fidelity']:.3f} "
                        f"against {naive['one_minus_fidelity']:.3f})."))
        if speed < 1.15:
            lines.append("  The speed difference is inside the ±15% timing noise.")
        masks = [x for x in search_runs() if reconstruction_of(x) == "none"]  # the naive side prunes masks too
        same = best_cells(masks, "budget").get((a["sparsity"], a["budget"], r["side"]))
        if same:
            lines.append(f"  The same search in `search_quality.py` ({same['date'][:16]}): {same['mean']:.3f}"
                         + (" (identical: quality is deterministic given the seed)."
                            if abs(same["mean"] - r["one_minus_fidelity"]) < 5e-4 else "."))
    n_layers = len(naive["allocation"])
    lines += [
        "- The same on both sides: the calibration, search and REPORT splits, the exact projection onto "
        "the target, the number of evaluations, and the REPORT scoring (prunetune's task). Every difference:",
        "  - criterion: the naive side prunes by weight magnitude (`l1_unstructured`, the weights of a whole "
        "layer compared with each other); prunetune by Wanda scores (|weight| times the input's norm, "
        "computed once and cached), compared within each output row;",
        f"  - search space: TPE over the {n_layers} raw per-layer amounts; prunetune's Bayesian strategy over "
        "one amount per block (its default grouping), its evolutionary strategy by level switches between "
        "layers and blocks;",
        "  - start: the naive study samples from its first trial; prunetune's strategies evaluate the uniform "
        "allocation first (their default warm start);",
        "  - evaluation: the naive loop deep-copies the model, adds `torch.nn.utils.prune` reparametrisations "
        "and re-tokenises the search texts in their given order every trial; prunetune applies masks in "
        "place over pre-tokenised, length-sorted batches.",
        "- So the quality gap is the criterion, the space and the start together; the time gap is the "
        "evaluation path.",
    ]
    return [*lines, "", stamp(d, "benchmarks/peers/naive_optuna.py"), ""]


# -- cost, scale, service ---------------------------------------------------------------


def cost_section() -> list[str]:
    d = load("eval_cost")
    lines = ["### Cost of an evaluation against the forward-pass floor", ""]
    if d is None:
        return [*lines, "Not yet run (`benchmarks/eval_cost.py`).", ""]
    f = d["median_forward_s"]
    lines += [f"MiniLM, {d['search_chunks']} search chunks, medians of {len(d['rounds']) - 1} rounds "
              "(a warm-up round dropped), the three variants rotated within each round.", "",
              "| path | seconds | / forward (median of per-round ratios) |", "|---|---|---|",
              f"| dense forward pass (the floor) | {f:.3f} | 1.00 |",
              f"| prunetune evaluation (masks in place, score, size metrics, restore) | "
              f"{d['median_evaluation_s']:.3f} | **{d['eval_over_forward']:.2f}** |",
              f"| naive: deepcopy + `torch.nn.utils.prune` + forward | {d['median_naive_s']:.3f} | "
              f"{d['naive_over_forward']:.2f} |",
              *([f"| prunetune evaluation with reconstruction (levels assembled from the database, score, "
                 f"size metrics) | {d['median_reconstructed_s']:.3f} | **{d['recon_over_forward']:.2f}** |"]
                if "recon_over_forward" in d else []),
              *([f"| the reconstructed model's own forward pass | {d['median_reconstructed_forward_s']:.3f} | "
                 f"{d['median_reconstructed_forward_s'] / f:.2f} (evaluation / this pass: "
                 f"**{d['recon_over_own_forward']:.2f}**) |"] if "recon_over_own_forward" in d else []), "",
              f"Apply {d['apply_s'] * 1e3:.0f} ms, restore {d['restore_s'] * 1e3:.1f} ms, size metrics "
              f"{d['size_metrics_s'] * 1e3:.0f} ms; the rest is the forward pass."
              + (f" With reconstruction, assembling a candidate that moves every layer and restoring it: "
                 f"{d['recon_apply_restore_s'] * 1e3:.0f} ms (level database "
                 f"{d['levels_nbytes'] / 1e6:.0f} MB in memory)." if "recon_over_forward" in d else ""),
              "", stamp(d, "benchmarks/eval_cost.py"), ""]
    return lines


def scale_section() -> list[str]:
    d = load("scale")
    lines = ["### Scale with workers", ""]
    if d is None:
        return [*lines, "Not yet run (`benchmarks/scale.py`).", ""]
    s = d["summary"]
    e = s["evals_per_minute"]
    lines += ["| evaluator | evaluations per minute | ratio (median of per-round ratios) |", "|---|---|---|",
              f"| in-process | {e['in_process']:.1f} | 1.00 |",
              f"| Ray, 1 actor | {e['ray_1']:.1f} | {s['ray_1_over_in_process']:.2f} |",
              f"| Ray, 2 actors | {e['ray_2']:.1f} | {s['speedup_2_over_1']:.2f} x 1 actor |", "",
              f"Controller overhead per trial (wall time outside evaluations / wall time): "
              f"{s['controller_overhead']:.1%}. Ray start {s['ray_start_seconds']:.1f} s, actors ready "
              f"{s['actors_ready_seconds']['ray_2']:.1f} s (not in the rates). Medians of "
              f"{len(d.get('rounds', []))} rounds; one torch thread per evaluator."
              + (f" **Two actors did not reach 2x on 2 cores in this run** ({s['speedup_2_over_1']:.2f}x): "
                 "anything else running on the machine takes from the second actor first."
                 if s["speedup_2_over_1"] < 1.7 else ""), "",
              stamp(d, "benchmarks/scale.py"), ""]
    return lines


def store_section() -> list[str]:
    d = load("store")
    lines = ["### Store and service", ""]
    if d is None:
        return [*lines, "Not yet run (`benchmarks/store.py`).", ""]
    first = d["submit_to_first_trial"]
    lines += ["| measure | median |", "|---|---|",
              f"| trial records per second, SQLite (file) | {d['sqlite']['median']:.1f} |",
              f"| trial records per second, PostgreSQL (loopback) | {d['postgres']['median']:.1f} |",
              f"| submit (HTTP) to first evaluated trial, digits model, worker polling every "
              f"{first['worker_poll_s']:.0f} s | {first['median']:.2f} s |", "",
              f"Medians of {d['sqlite']['repeats']} runs of {d['sqlite']['trials']} records and of "
              f"{first['jobs']} jobs.", "", stamp(d, "benchmarks/store.py"), ""]
    return lines


def recovery_section() -> list[str]:
    d = load("recovery")
    lines = ["### Recovery fine-tuning", ""]
    if d is None:
        return [*lines, "Not yet run (`benchmarks/recovery.py`).", ""]
    b, a, r = d["report_before"], d["report_after"], d["recovery"]
    lines += [f"{d['allocation']}, {r['steps']} steps, distillation {r['distill']}, lr {r['lr']}.", "",
              "| REPORT split | before | after |", "|---|---|---|",
              f"| fidelity | {b['fidelity']:.3f} | **{a['fidelity']:.3f}** |",
              f"| retrieval@1 | {b['retrieval_at_1']:.3f} | {a['retrieval_at_1']:.3f} |", "",
              f"Recovery took {a['recovery_seconds']:.0f} s of the {a['eval_seconds']:.0f} s evaluation "
              "(the search evaluations above use none).", "", stamp(d, "benchmarks/recovery.py"), ""]
    return lines


def structured_section() -> list[str]:
    d = load("structured_export")
    lines = ["### Structured export", ""]
    if d is None:
        return [*lines, "Not yet run (`benchmarks/structured_export.py`).", ""]
    emb = d["dense_params"] - d["dense_encoder_params"]
    lines += [f"{d['fraction_requested']:.0%} of heads and MLP neurons per block removed "
              f"(achieved: heads {d['heads_removed_fraction']:.1%}, neurons {d['neurons_removed_fraction']:.1%}), "
              "exported and loaded back with `prunetune.load_pruned`; ratios against dense, forward speed "
              "measured side by side.", "",
              "| model | encoder-block parameters | all parameters | safetensors bytes | CPU forward speedup "
              "| REPORT fidelity |", "|---|---|---|---|---|---|",
              f"| dense | {d['dense_encoder_params'] / 1e6:.2f} M | {d['dense_params'] / 1e6:.2f} M | "
              f"{d['dense_bytes'] / 1e6:.1f} MB | 1.00 | 1.000 |",
              f"| heads+neurons {d['fraction_requested']:.0%} | {d['pruned_encoder_params'] / 1e6:.2f} M "
              f"(**x{d['encoder_params_ratio']:.3f}**) | {d['pruned_params'] / 1e6:.2f} M (x{d['params_ratio']:.3f}) | "
              f"{d['pruned_bytes'] / 1e6:.1f} MB (x{d['file_ratio']:.3f}) | {d['speedup_median']:.2f} "
              f"({d['speedup_min']:.2f}-{d['speedup_max']:.2f}) | {d['fidelity_export']:.3f} |"]
    trim = d.get("vocabulary_trim")
    if trim and "trimmed_params" in d:
        lines.append(
            f"| heads+neurons {d['fraction_requested']:.0%} + vocabulary trimmed | "
            f"{d['trimmed_encoder_params'] / 1e6:.2f} M | {d['trimmed_params'] / 1e6:.2f} M "
            f"(x{d['trimmed_params_ratio']:.3f}) | {d['trimmed_bytes'] / 1e6:.1f} MB (**x{d['trimmed_file_ratio']:.3f}**) "
            f"| {d['trimmed_speedup_median']:.2f} ({d['trimmed_speedup_min']:.2f}-{d['trimmed_speedup_max']:.2f}) "
            f"| {d['fidelity_trimmed']:.3f} |")
    lines += ["", f"- Heads and neurons alone shrink the encoder blocks to x{d['encoder_params_ratio']:.3f} but the "
              f"file only to **x{d['file_ratio']:.3f}**: the {emb / 1e6:.1f} M parameters outside the blocks "
              "(almost all the word-embedding table) are untouched by head and neuron pruning, so on MiniLM no "
              "head/neuron fraction near 30% can make the file 25% smaller."]
    if trim and "trimmed_params" in d:
        lines.append(
            f"- Vocabulary trimming (`prunetune.export(..., tokenizer=, vocabulary=texts)`) keeps the embedding "
            f"rows of the {trim['kept_tokens']} of {trim['original_tokens']} tokens the corpus uses "
            f"({trim['corpus']}) and writes the matching WordPiece tokenizer: outputs on those texts are unchanged (REPORT "
            f"fidelity {d['fidelity_trimmed']:.3f} both ways), but text outside the corpus can meet pieces "
            "that are gone (they become `[UNK]`). Use it when the deployment's text is known.")
    return [*lines, "", stamp(d, "benchmarks/structured_export.py"), ""]


def multifidelity_section() -> list[str]:
    d = load("multifidelity")
    lines = ["### Multi-fidelity screening at equal wall time", ""]
    if d is None:
        return [*lines, "Not yet run (`benchmarks/multifidelity.py`).", ""]
    lines += [f"{d.get('strategy', 'random').capitalize()} search, same seed in both arms, "
              f"{d['seconds_per_arm']:.0f} s per arm, {d['search_chunks']} search chunks, "
              f"screens at fraction {d['fraction']}; the front from full-fidelity results only.", "",
              "| mode | candidates (full / screened) | full evaluations (full / screened) | candidates ratio "
              "| hypervolume ratio |", "|---|---|---|---|---|"]
    for mode, key in (("Pareto", "pareto"), ("budget 0.7", "budget_0.7")):
        if key in d:
            f, sc = d[key]["full"], d[key]["screened"]
            lines.append(f"| {mode} | {f['candidates']} / {sc['candidates']} | {f['full_fidelity_evaluations']} / "
                         f"{sc['full_fidelity_evaluations']} | {d[key]['candidates_ratio']:.2f} | "
                         f"{d[key]['hypervolume_ratio']:.3f} |")
    lines.append("")
    for mode, key in (("Pareto", "pareto"), ("budget", "budget_0.7")):
        if key not in d:
            continue
        cand, hv = d[key]["candidates_ratio"], d[key]["hypervolume_ratio"]
        if cand > 1.0 and hv >= 1.0:
            lines.append(f"- {mode} mode: screening evaluated {cand:.2f}x the candidates for a front at least as "
                         f"good (hypervolume ratio {hv:.3f}).")
        else:
            lines.append(f"- {mode} mode: **screening did not pay** in this run ({cand:.2f}x candidates, "
                         f"hypervolume ratio {hv:.3f}).")
    return [*lines, "", stamp(d, "benchmarks/multifidelity.py"), ""]


# -- the figure -----------------------------------------------------------------------


def figure(runs: list[dict[str, Any]]) -> str | None:
    """Fronts (Pareto runs) or the best allocation at each sparsity (budget runs) per
    strategy against the uniform and OWL baselines; None when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    pareto = [d for d in runs if d.get("mode") == "pareto"]
    if pareto:
        budget = max(d["args"]["budget"] for d in pareto)
        for s in STRATEGIES:  # each strategy's latest seed-0 front at the largest budget
            rows = [r for d in pareto if d["args"]["budget"] == budget
                    for r in d["runs"] if r["strategy"] == s and r["seed"] == 0][-1:]
            if not rows:
                continue
            pts = sorted((p["size"] / 1e6, p["report"].get("fidelity")) for p in rows[0]["front"]
                         if p["report"].get("fidelity") is not None)
            style = "--" if s in BASELINES else "-"
            ax.plot([x for x, _ in pts], [y for _, y in pts], style, marker="o", ms=3, label=s)
        ax.set_xlabel("nonzero parameters (millions)")
        ax.set_ylabel("fidelity, REPORT split")
        ax.set_title(f"Pareto fronts, {budget} evaluations")
    else:
        cells = best_cells(runs, "budget")
        budget = 64
        for s in STRATEGIES:
            pts = sorted((k[0], 1 - c["mean"]) for k, c in cells.items() if k[2] == s and k[1] == budget)
            if not pts:
                continue
            style = "--" if s in BASELINES else "-"
            ax.plot([x for x, _ in pts], [y for _, y in pts], style, marker="o", label=s)
        ax.set_xlabel("overall sparsity (budget mode)")
        ax.set_ylabel("fidelity of the best allocation, REPORT split")
        ax.set_title(f"MiniLM: each strategy's best at {budget} evaluations vs. uniform and OWL (dashed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, metadata={"Software": None})  # no version stamp: the PNG changes only with the data
    plt.close(fig)
    return FIGURE.relative_to(ROOT).as_posix()


# -- assembly ---------------------------------------------------------------------------


def reproduction_section() -> list[str]:
    d = load("run_all-cpu")
    rows = (d or {}).get("reproduction") or []
    lines = ["### Does `make bench` reproduce these figures?", ""]
    if not rows:
        return [*lines, "Not yet run: `make bench` compares each figure it rewrites with the one recorded "
                "before it (`benchmarks/reproduce.py`).", ""]
    assert d is not None
    outside = [r for r in rows if not r["within"]]
    exact = [r for r in rows if r["kind"] == "exact"]
    ran = sum(float(r["wall_seconds"]) for r in d["steps"])
    waited = sum(float(r.get("lock_wait_seconds", 0.0)) for r in d["steps"])
    lines += [f"The last `make bench` ({day(d)}, {where(d)}; its steps ran {ran / 60:.0f} min"
              + (f", plus {waited / 60:.0f} min waiting for the shared benchmark lock" if waited >= 60 else "")
              + ") against the "
              f"figures recorded before it (`benchmarks/reproduce.py`: quality figures must agree to "
              f"{QUALITY_TOLERANCE:g}, timing figures within ±{TIMING_NOISE:.0%}): {len(rows) - len(outside)} of {len(rows)} within, "
              f"{sum(1 for r in exact if r['within'])} of {len(exact)} quality figures exact.", ""]
    if outside:
        lines += ["| figure | recorded | this run | change |", "|---|---|---|---|"]
        lines += [f"| {r['figure']} | {r['reference']:.4g} | {r['candidate']:.4g} | {r['delta']} |" for r in outside]
        lines += ["", "The rows above fall outside that band; the tables in this section show the newer figures."]
    return [*lines, ""]


def reconstruction_section(recon: list[dict[str, Any]], masks: list[dict[str, Any]]) -> list[str]:
    lines = ["### Search over reconstructed levels: REPORT-split `1 - fidelity` (lower is better)", ""]
    cells = best_cells(recon, "budget")
    if not cells:
        return [*lines, "Not yet run: `benchmarks/search_quality.py --reconstruction sparsegpt`.", ""]
    mask_cells = best_cells(masks, "budget")
    rows = sorted({(k[0], k[1]) for k in cells}, key=lambda r: (r[1], r[0]))
    lines += ["Budget mode, MiniLM, the same splits and evaluations as above, but every candidate (and the "
              "uniform and OWL baselines) assembled from the level database: each layer pruned and re-fitted "
              "by SparseGPT at every grid level from the dense model's calibration inputs. The last two "
              "columns are the mask-only search's uniform and best cell from the table above.", "",
              "| sparsity | evaluations | " + " | ".join(STRATEGIES) + " | masks: uniform | masks: best | run |",
              "|---|---|" + "---|" * (len(STRATEGIES) + 2) + "---|"]
    verdicts = []
    said: set[float] = set()
    for level, budget in rows:
        row = {s: cells.get((level, budget, s)) for s in STRATEGIES}
        present = {s: c for s, c in row.items() if c}
        best = min(present, key=lambda s: present[s]["mean"])
        shown = [("**" + fmt_cell(c) + "**" if s == best else fmt_cell(c)) for s, c in row.items()]
        m_uniform = mask_cells.get((level, budget, "uniform"))
        m_searched = {s: c for (lv, b, s), c in mask_cells.items() if (lv, b) == (level, budget) and s not in BASELINES}
        m_best = min(m_searched.values(), key=lambda c: c["mean"]) if m_searched else None
        dates = sorted({c["date"][:10] for c in present.values()})
        lines.append(f"| {level} | {budget} | " + " | ".join(shown)
                     + f" | {fmt_cell(m_uniform)} | {fmt_cell(m_best)} | {', '.join(dates)} |")
        base = row.get("uniform")
        searched = {s: c for s, c in present.items() if s not in BASELINES}
        if base and searched:
            top = min(searched, key=lambda s: searched[s]["mean"])
            beaten = [s for s, c in searched.items() if c["mean"] < base["mean"]]
            missed = [s for s in searched if s not in beaten]
            verdicts.append(
                f"- At {level} with {budget} evaluations, {top} reaches {searched[top]['mean']:.4f}, "
                f"{1 - searched[top]['mean'] / base['mean']:.1%} below uniform with reconstruction ({base['mean']:.4f})"
                + (f"; below it: {', '.join(beaten)}" if beaten else "")
                + (f"; **not below it: {', '.join(missed)}**" if missed else "") + "."
                + (f" Against uniform Wanda masks ({m_uniform['mean']:.4f}) that is "
                   f"{1 - searched[top]['mean'] / m_uniform['mean']:.1%} lower." if m_uniform else ""))
            goal = GOALS.get((level, budget))
            if goal:
                need = base["mean"] * (1 - goal)
                got = searched[top]["mean"]
                verdicts.append(f"- Goal at {level} with {budget} evaluations: at least {goal:.0%} below uniform with "
                                f"reconstruction (at most {need:.4f}): "
                                + ("**met**." if got <= need else f"**not met**, {got - need:.4f} short."))
        if m_uniform and base and level not in said:
            said.add(level)
            verdicts.append(f"- At {level}, uniform with reconstruction alone is {1 - base['mean'] / m_uniform['mean']:.1%} "
                            f"below uniform Wanda masks ({base['mean']:.4f} against {m_uniform['mean']:.4f}).")
    build = load("levels_build")
    if build:
        verdicts.append(f"- The level database for MiniLM ({build['levels']} levels over {build['layers']} layers, "
                        f"{build['nbytes'] / 1e6:.0f} MB: a bitmask, half-precision kept values and the row and top-up "
                        f"orders per layer and level) takes {build['levels_seconds']:.0f} s to build on 2 cores "
                        f"(calibration pass with input Hessians, then the solves; `benchmarks/levels_build.py`), once: "
                        "later jobs on the same model and calibration data read it from the cache.")
    if any(c["n"] < 3 for c in cells.values()):
        single = sorted({f"{k[0]}/{k[1]}" for k, c in cells.items() if c["n"] < 3})
        verdicts.append(f"- Rows (sparsity/evaluations) {', '.join(single)} have single-seed cells.")
    return [*lines, "", *verdicts, ""]


def causal_lm_section() -> list[str]:
    d = load("causal_lm")
    lines = ["### Reconstruction on a causal LM: REPORT-split perplexity (lower is better)", ""]
    if d is None:
        return [*lines, "Not yet run (`benchmarks/causal_lm.py`).", ""]
    names = {
        "wanda": "prunetune uniform Wanda", "wanda_sequential": "prunetune uniform Wanda, sequential",
        "sparsegpt": "prunetune uniform SparseGPT (level database)",
        "sparsegpt_sequential": "prunetune uniform SparseGPT, sequential one-shot",
        "sparsegpt_sequential_layer": "prunetune uniform SparseGPT, sequential one-shot, `groups: layer`",
        "searched": "prunetune evolutionary search over the level database",
        "searched_masks": "prunetune evolutionary search over Wanda masks",
        "llmcompressor_sparsegpt": "llm-compressor `SparseGPTModifier`",
        "llmcompressor_wanda": "llm-compressor `WandaPruningModifier`",
        "llmcompressor_wanda_owl": "llm-compressor Wanda with its OWL profile",
    }
    levels = list(d["methods"])
    a = d["args"]
    lines += [f"A Llama with grouped-query attention (4 blocks, hidden 128, byte vocabulary) trained "
              f"{a['steps']} steps on pydoc text outside every split; {a['calibration']} calibration windows of "
              f"128 tokens, {a['search']} search, {a['report']} report; searches get {a['budget']} evaluations. "
              f"Dense perplexity {d['dense']:.2f}.", "",
              "| method | " + " | ".join(f"sparsity {lv}" for lv in levels) + " |",
              "|---|" + "---|" * len(levels)]
    for key, label in names.items():
        cells = [d["methods"][lv].get(key) for lv in levels]
        if not any(cells):
            continue
        shown = [f"{c['perplexity']:.2f}" if c and "perplexity" in c else ("failed" if c else "") for c in cells]
        lines.append(f"| {label} | " + " | ".join(shown) + " |")
    return [*lines, "", stamp(d, "benchmarks/causal_lm.py"), ""]


def oneshot_section() -> list[str]:
    d = load("oneshot")
    lines = ["### One-shot on MiniLM: independent against sequential calibration", ""]
    if d is None:
        return [*lines, "Not yet run (`benchmarks/oneshot.py`).", ""]
    runs = d["runs"]
    levels = sorted({r["sparsity"] for r in runs.values()})
    methods = list(dict.fromkeys(r["method"] for r in runs.values()))
    lines += ["`prunetune.prune` at uniform sparsity, statistics from the dense model (independent) or block by "
              "block on the outputs of the blocks already pruned (sequential). REPORT-split `1 - fidelity` "
              "(search split in brackets, seconds of the call after).", "",
              "| method | " + " | ".join(f"sparsity {lv}" for lv in levels) + " |", "|---|" + "---|" * len(levels)]
    for m in methods:
        cells = [runs.get(f"{m}_{lv}") for lv in levels]
        lines.append(f"| {m.replace('_', ', ')} | " + " | ".join(
            f"{c['one_minus_fidelity']:.4f} ({c['search_one_minus_fidelity']:.4f}), {c['seconds']:.0f} s" if c else ""
            for c in cells) + " |")
    lines.append("")
    for lv in levels:
        for base in ("wanda", "sparsegpt"):
            a, b = runs.get(f"{base}_{lv}"), runs.get(f"{base}_sequential_{lv}")
            if a and b:
                better = "sequential" if b["search_one_minus_fidelity"] < a["search_one_minus_fidelity"] else "independent"
                lines.append(f"- {base} at {lv}: {better} statistics are better on the search split "
                             f"({b['search_one_minus_fidelity']:.4f} sequential, {a['search_one_minus_fidelity']:.4f} "
                             "independent).")
    return [*lines, "", stamp(d, "benchmarks/oneshot.py"), ""]


def front_search_section() -> list[str]:
    """The front search against uniform and against budget-mode searches, per front level."""
    lines = ["### Pareto mode: the front search against uniform, level by level", ""]
    files = sorted(RESULTS.glob("pareto_front-*.json"))
    if not files:
        return [*lines, "Not yet run (`benchmarks/pareto_front.py`).", ""]
    lines += ["`benchmarks/pareto_front.py`: the evolutionary front search (`front: levels`) with the budget below, "
              "every front point scored on REPORT. Per front level: the best REPORT quality on the front at that "
              "size or smaller, uniform at that level (REPORT), and a budget-mode evolutionary search given a "
              "quarter of the budget at that level (REPORT, its best). Means over seeds; **bold** where the front "
              "is at least as good as the quarter-budget search and better than uniform.", ""]
    verdicts = []
    for path in files:
        d = json.loads(path.read_text())
        a, summ = d["args"], d["summary"]
        q = d["quality"]
        lower = q == "neg_perplexity"  # stored negated (higher is better); shown as perplexity
        seeds = a["seeds"]
        title = (f"{'MiniLM, 1 - fidelity' if q == 'fidelity' else 'Llama (causal LM), perplexity'}, "
                 f"{a['budget']} evaluations, {seeds} seed{'s' if seeds > 1 else ''}"
                 + (f", {a['reconstruction']} levels" if a.get("reconstruction", "none") != "none" else ""))
        lines += [f"{title}:", "", "| sparsity | front | uniform | budget mode, quarter budget |", "|---|---|---|---|"]

        def shown(v: float | None, lower: bool = lower) -> str:
            if v is None:
                return "not run"
            return f"{-v:.2f}" if lower else f"{1 - v:.4f}"

        wins = 0
        for level, row in summ["levels"].items():
            f, u, b = row["front"], row["uniform"], row["budget_quarter"]
            # Stored qualities are higher-is-better on both tasks (perplexity is stored negated).
            ok = f is not None and u is not None and f > u and (b is None or not b > f)
            wins += ok
            cell = f"**{shown(f)}**" if ok else shown(f)
            lines.append(f"| {level} | {cell} | {shown(u)} | {shown(b)} |")
        total = len(summ["levels"])
        extra = []
        if "hypervolume" in summ:
            hv = summ["hypervolume"]
            uni = summ.get("uniform_sweep")
            extra.append(f"hypervolume (REPORT) {hv:.4f}" + (
                f" against the uniform sweep's {uni['hypervolume']:.4f} ({uni['points']} levels, "
                f"{hv / uni['hypervolume'] - 1:+.1%}; the sweep from `{Path(uni['file']).name}`)" if uni else ""))
        extra.append(f"search {summ['search_seconds']:.0f} s and REPORT scoring of the whole front "
                     f"{summ['report_seconds']:.0f} s per run")
        lines += ["", "; ".join(extra) + ".", ""]
        unrun = all(row["budget_quarter"] is None for row in summ["levels"].values())
        verdicts.append(f"- {title}: the front wins at {wins} of {total} levels"
                        + (" against uniform (the quarter-budget searches were not run)" if unrun else "")
                        + ("" if wins == total else " (**not at every level**)") + ".")
    rp = load("report_phase")
    if rp is not None:
        verdicts.append(f"- The report phase on the demo spec (`{rp['spec']}`: {rp['trials']} evaluations, "
                        f"{rp['report_points']} front points and {rp['baseline_points']} baseline points on REPORT) "
                        f"took {rp['report_seconds']:.0f} s against {rp['search_seconds']:.0f} s of search: "
                        f"{rp['report_share']:.0%} (`benchmarks/report_phase.py`).")
    return [*lines, *verdicts, ""]


def section() -> tuple[str, int]:
    every = search_runs()
    runs = [d for d in every if reconstruction_of(d) == "none"]
    recon = [d for d in every if reconstruction_of(d) != "none"]
    parts = [quality_section(runs), front_search_section(), reconstruction_section(recon, runs), causal_lm_section(),
             oneshot_section(),
             naive_section(), cost_section(), scale_section(), store_section(),
             recovery_section(), structured_section(), multifidelity_section(), reproduction_section()]
    missing = sum(1 for p in parts if any(line.startswith("Not yet run") for line in p))
    dates = [day(d) for d in every] + [day(d) for n in ("naive_optuna", "eval_cost", "scale", "store", "recovery",
                                                          "structured_export", "multifidelity", "causal_lm", "oneshot", "levels_build")
                                        if (d := load(n))]
    machines = sorted({where(d) for d in runs[-1:]} | {where(d) for n in ("naive_optuna", "eval_cost") if (d := load(n))})
    fig = figure(runs)
    head = [START, "<!-- generated by benchmarks/readme_tables.py from benchmarks/results/*.json; do not edit by hand -->",
            "## Results", "",
            "The table of record: every figure below is read from the JSON files in "
            "`benchmarks/results/` (each with its provenance: config or spec hash, model fingerprint, "
            "data-split hashes, seeds, package versions, date and machine). `make bench` reruns the CPU "
            "set (30 to 40 minutes on 2 cores), regenerates this section and checks each figure it rewrote "
            "against the recorded one (the last subsection); `make bench-full` adds the "
            "3-seed, 256-evaluation, Pareto and multi-fidelity runs.", "",
            f"Runs from {min(dates)[:10] if dates else '?'} to {max(dates) if dates else '?'} on "
            f"{'; '.join(machines) or '?'}. {NOISE}", ""]
    if fig:
        head += [f"![fronts against the uniform and OWL baselines]({fig})", ""]
    body = [line for p in parts for line in p]
    text = "\n".join([*head, *body]).rstrip() + "\n" + END
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text, missing


def splice(readme: str, block: str) -> str:
    if START in readme and END in readme:
        pre, rest = readme.split(START, 1)
        return pre + block + rest.split(END, 1)[1]
    anchor = "\n## Evaluators"
    if anchor in readme:
        i = readme.index(anchor)
        return readme[:i] + "\n" + block + "\n" + readme[i:]
    return readme.rstrip() + "\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    args = p.parse_args(argv)
    block, missing = section()
    old = README.read_text()
    new = splice(old, block)
    tables = block.count("\n|---")
    if args.check:
        print(f"RESULT tables={tables} missing={missing} up_to_date={int(new == old)}")
        return 0 if new == old else 1
    README.write_text(new)
    print(f"RESULT tables={tables} missing={missing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
