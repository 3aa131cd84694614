"""Reconstruction on a causal LM: perplexity of a small Llama at 0.5 and 0.7 sparsity.

A Llama with grouped-query attention and SwiGLU (byte vocabulary, built from config),
trained for ``--steps`` steps on pydoc text that none of the task's splits contain (the
tail of the task's own shuffled stream) and saved as a local Hugging Face directory, is
pruned at each sparsity by the methods below. At the default recipe it is the committed
model in ``benchmarks/models/llama-pydoc`` (``--retrain`` trains it here instead; the
training moves with the processor, see ``train_llama``). The methods:

- ``wanda``: uniform Wanda masks (per-row groups, statistics from the dense model);
- ``wanda_sequential``: uniform Wanda, calibrated block by block on the outputs of the
  already-pruned blocks (``prunetune.prune(..., sequential=True)``);
- ``sparsegpt``: uniform, assembled from the level database (each layer reconstructed
  from the dense model's inputs, as the search sees it);
- ``sparsegpt_sequential``: uniform one-shot SparseGPT calibrated block by block;
- ``sparsegpt_sequential_layer``: the same with ``groups="layer"`` (each column block's
  least salient weights, whichever rows: llm-compressor's mask choice);
- ``searched``: the evolutionary search over the level database in budget mode
  (``--budget`` evaluations of the search split);
- ``llmcompressor_sparsegpt``, ``llmcompressor_wanda``, ``llmcompressor_wanda_owl``: the
  peer's one-shot modifiers on the same model and calibration windows, run in their own
  environment (``benchmarks/peers/llmcompressor/setup.sh``; skipped when it is absent).

Every model is scored by prunetune's causal-LM task on the REPORT split (perplexity).
Writes ``benchmarks/results/causal_lm.json``; the last line printed is::

    RESULT dense=<ppl> wanda_0.7=<ppl> sparsegpt_0.7=<ppl> searched_0.7=<ppl> ... (every method and sparsity)

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/causal_lm.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import ROOT, provenance

from prunetune.api import prune
from prunetune.engine.runner import run_job
from prunetune.engine.workbench import Workbench, build_workbench
from prunetune.evaluators.data import SPLIT_SEED, text_chunks
from prunetune.pruning.calibration import Calibration
from prunetune.spec import SearchSpec

PEER = ROOT / "benchmarks" / "peers" / "llmcompressor"
PEER_METHODS = ("sparsegpt", "wanda", "wanda-owl")


# Training from scratch amplifies the last bits in which float kernels differ: the same code
# trained another Llama at torch's AVX512 kernels than at its AVX2 ones, and every figure moved
# with the model. So the training runs in a child with ATen's kernels and threads pinned.
# That holds the model across the kernel levels torch may pick, not across processors whose
# MKL takes another code path for the matrix products: pinned, an Intel Xeon (2026-12-07)
# trained another model (e467c7be) than AMD EPYCs (f8a1bdfb), and none of MKL_CBWR=AVX2, AVX,
# SSE4_2 or COMPATIBLE gave the EPYCs' losses there. Such a rerun's figures say so: the
# provenance records the model fingerprint and the CPU, and reproduce names them as the cause.
TRAIN_KERNELS = "avx2"  # ATen's kernel level: every x86-64 machine of the last decade has it
TRAIN_THREADS = 2
# So the recorded figures score a committed model: the one `train_llama` trained on an AMD
# EPYC under the recipe in its recipe.json. `llama` hands it out for that recipe and trains
# another model for any other (or when asked to retrain).
LLAMA_DIR = ROOT / "benchmarks" / "models" / "llama-pydoc"
# The Llama trains on the stream from this many bytes past the splits' text on. Only
# calibration, search and report are counted: a validation split (cut after report) lies
# in the training text, so the Llama's validation scores are not held out (see
# pareto_front.py, which refuses --score-split validation for it).
TRAIN_TEXT_GAP = 1024


def text_bytes(calibration: int, search: int, report: int, window: int = 128) -> int:
    """Bytes of the pydoc stream the task's calibration, search and report windows take
    (byte tokens, one window every ``window`` bytes): the ``used_bytes`` of a recipe."""
    return window * (calibration + search + report)


def llama(out: Path, steps: int, used_bytes: int, seed: int = 0, retrain: bool = False) -> Path:
    """The benchmarks' Llama: the committed ``LLAMA_DIR`` when (``steps``, ``used_bytes``,
    ``seed``) is its recipe and ``retrain`` is off; else one trained into ``out``."""
    recipe = json.loads((LLAMA_DIR / "recipe.json").read_text())
    if not retrain and (recipe["steps"], recipe["used_bytes"], recipe["seed"]) == (steps, used_bytes, seed):
        print(f"  the committed Llama ({LLAMA_DIR.relative_to(ROOT)}, fingerprint {recipe['fingerprint']})",
              flush=True)
        return LLAMA_DIR
    return train_llama(out, steps, used_bytes, seed)


def train_llama(out: Path, steps: int, used_bytes: int, seed: int = 0) -> Path:
    """A small Llama trained on the part of the task's text stream its splits do not use:
    in a child process on x86 (ATen kernels pinned to ``TRAIN_KERNELS``, ``TRAIN_THREADS``
    threads) so that the model does not depend on the kernel level torch picks on the
    machine (it still depends on the processor's MKL code path, see above); in this process
    elsewhere."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return _train_llama(out, steps, used_bytes, seed)
    here = str(Path(__file__).resolve().parent)
    code = (f"import sys; sys.path.insert(0, {here!r}); from pathlib import Path; from causal_lm import _train_llama; "
            f"_train_llama(Path({str(out)!r}), {steps}, {used_bytes}, {seed})")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": TRAIN_KERNELS}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return out


def _train_llama(out: Path, steps: int, used_bytes: int, seed: int) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(TRAIN_THREADS)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=344, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    chunks = text_chunks("pydoc", "causal-lm")
    random.Random(SPLIT_SEED).shuffle(chunks)  # the task's order: its splits are the stream's start
    stream = list("".join(c + "\n\n" for c in chunks).encode())
    data = torch.tensor(stream[used_bytes + TRAIN_TEXT_GAP :], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    model.train()
    for step in range(steps):
        starts = torch.randint(0, len(data) - 129, (16,), generator=gen)
        x = torch.stack([data[s : s + 129] for s in starts])
        loss = model(input_ids=x[:, :-1], labels=x[:, :-1]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"  train step {step}: loss {float(loss):.3f}", flush=True)
    model.eval()
    model.save_pretrained(out)
    return out


def make_spec(model_dir: Path, args: argparse.Namespace, reconstruction: str | None,
              target: float | None = None) -> SearchSpec:
    data: dict[str, Any] = {
        "name": "bench-causal-lm", "model": {"path": str(model_dir)},
        "task": {"kind": "causal-lm", "data": "pydoc", "calibration": args.calibration, "search": args.search,
                 "report": args.report, "max_length": 128, "batch_size": 16},
        "space": {"criterion": "wanda", "max": 0.9, "step": 0.05, "reconstruction": reconstruction},
        "budget": {"trials": args.budget}, "strategy": {"name": "evolutionary"},
        "resources": {"workers": 0, "threads": args.threads}, "seed": 0,
    }
    if target is not None:
        data["target"] = {"sparsity": target}
    return SearchSpec.from_dict(data)


def report_ppl(bench: Workbench, model: torch.nn.Module | None = None) -> float:
    return bench.task.score(model if model is not None else bench.loaded.model, "report")["perplexity"]


def one_shot(bench: Workbench, sparsity: float, **kwargs: Any) -> tuple[float, float]:
    """Report perplexity and seconds of ``prunetune.prune`` on a fresh copy of the model."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(bench.spec.model.path).eval()
    cal = Calibration(list(bench.task.calibration_batches()), forward=bench.task.forward)
    start = time.perf_counter()
    prune(model, sparsity, calibration=cal, **kwargs)
    return report_ppl(bench, model), time.perf_counter() - start


def peer(bench: Workbench, method: str, sparsity: float, tmp: Path) -> dict[str, Any] | None:
    python = PEER / ".venv" / "bin" / "python"
    if not python.exists():
        return None
    from transformers import AutoModelForCausalLM

    cal = tmp / "calibration.json"
    if not cal.exists():
        rows = [row.tolist() for b in bench.task.calibration_batches() for row in b["input_ids"]]
        cal.write_text(json.dumps({"input_ids": rows}))
    out = tmp / f"peer-{method}-{sparsity}"
    proc = subprocess.run([str(python), str(PEER / "oneshot.py"), "--model", str(bench.spec.model.path),
                           "--calibration", str(cal), "--method", method, "--sparsity", str(sparsity),
                           "--out", str(out)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"  peer {method} failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
        return {"error": proc.stderr.strip()[-2000:]}
    meta = json.loads((out / "peer.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    return {"perplexity": report_ppl(bench, model), "seconds": meta.get("seconds"),
            "achieved": meta.get("sparsity_achieved", meta.get("sparsity")), "peer": meta}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600,
                    help="training steps of the Llama (600: the committed model, unless --retrain)")
    ap.add_argument("--retrain", action="store_true",
                    help="train the Llama here even where the committed model has this recipe")
    ap.add_argument("--sparsities", default="0.5,0.7")
    ap.add_argument("--budget", type=int, default=64, help="evaluations of the search per sparsity")
    ap.add_argument("--calibration", type=int, default=64, help="calibration windows of 128 tokens")
    ap.add_argument("--search", type=int, default=32)
    ap.add_argument("--report", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sparsities = [float(s) for s in args.sparsities.split(",")]
    used = text_bytes(args.calibration, args.search, args.report)
    results: dict[str, Any] = {"methods": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        start = time.perf_counter()
        model_dir = llama(tmp / "llama", args.steps, used, retrain=args.retrain)
        committed = model_dir == LLAMA_DIR
        results["llama"] = "committed" if committed else "trained"
        if not committed:
            results["train_seconds"] = time.perf_counter() - start
        masks = build_workbench(make_spec(model_dir, args, None))
        recon = build_workbench(make_spec(model_dir, args, "sparsegpt"))
        assert recon.levels is not None
        results["dense"] = report_ppl(masks)
        results["levels"] = {"build_seconds": recon.levels.build_seconds, "nbytes": recon.levels.nbytes}
        print(f"dense perplexity {results['dense']:.2f}; level database {recon.levels.nbytes / 1e6:.1f} MB "
              f"in {recon.levels.build_seconds:.1f} s", flush=True)
        for s in sparsities:
            row: dict[str, Any] = {}
            uniform = [s] * masks.space.dim
            row["wanda"] = {"perplexity": masks.evaluator.evaluate(uniform, "report")["perplexity"]}
            row["sparsegpt"] = {"perplexity": recon.evaluator.evaluate(uniform, "report")["perplexity"]}
            for name, kwargs in (("wanda_sequential", {"criterion": "wanda", "sequential": True}),
                                 ("sparsegpt_sequential", {"reconstruction": "sparsegpt", "sequential": True}),
                                 ("sparsegpt_sequential_layer", {"reconstruction": "sparsegpt", "sequential": True,
                                                                 "groups": "layer"})):
                ppl, secs = one_shot(masks, s, **kwargs)
                row[name] = {"perplexity": ppl, "seconds": secs}
            for name, reconstruction in (("searched", "sparsegpt"), ("searched_masks", None)):
                t0 = time.perf_counter()
                # Budget mode at s: the workbench's space carries the target (scores and
                # levels come from the cache the benches above filled).
                bench = build_workbench(make_spec(model_dir, args, reconstruction, target=s))
                with tempfile.TemporaryDirectory() as db_dir:
                    out = run_job(bench.spec, db=f"sqlite:///{db_dir}/job.db", bench=bench)
                best = out.front[0]
                row[name] = {"perplexity": out.reports[best.number]["perplexity"],
                             "search_perplexity": -float(best.quality), "trials": len(out.results),
                             "sparsity": bench.space.overall_sparsity(best.candidate.sparsities),
                             "seconds": time.perf_counter() - t0,
                             "allocation": dict(zip(bench.space.names, best.candidate.sparsities, strict=True))}
            for method in PEER_METHODS:
                got = peer(masks, method, s, tmp)
                if got is not None:
                    row["llmcompressor_" + method.replace("-", "_")] = got
            results["methods"][str(s)] = row
            print(f"sparsity {s}: " + ", ".join(f"{k} {v.get('perplexity', float('nan')):.2f}"
                                                 for k, v in row.items()), flush=True)
        results["provenance"] = provenance(vars(args), bench=recon, seeds=[0])
    results["benchmark"] = "causal_lm"
    results["args"] = vars(args)
    path = ROOT / "benchmarks" / "results" / "causal_lm.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {path}")
    figures = [f"dense={results['dense']:.3f}"] + [
        f"{k}_{s}={v['perplexity']:.3f}" for s, row in results["methods"].items() for k, v in row.items()
        if "perplexity" in v
    ]
    print("RESULT " + " ".join(figures))


if __name__ == "__main__":
    main()
