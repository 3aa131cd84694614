"""From `prunetune run` to a deployed model, as a user does it: run a spec, export a front
point by `--best` / `--sparsity`, load it with plain transformers (unstructured) or
`load_pruned` (structured), and get the quality the front reported on the REPORT split."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import minilm_spec_dict

import prunetune
from prunetune.engine.sources import load_model
from prunetune.evaluators.registry import build_task
from prunetune.service.jobs import JobService
from prunetune.spec import SearchSpec

BIN = Path(sys.executable).parent / "prunetune"


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(prunetune.__file__).parents[1]), COLUMNS="200")
    return subprocess.run([str(BIN), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=900)


def _run_spec(tmp: Path, **overrides: object) -> tuple[SearchSpec, str, int]:
    data = minilm_spec_dict(budget={"trials": 3}, report={"baselines": []}, **overrides)
    (tmp / "spec.yaml").write_text(yaml.safe_dump(data))
    db = f"sqlite:///{tmp / 'jobs.db'}"
    proc = _cli(["run", "spec.yaml", "--db", db], tmp)
    assert proc.returncode == 0, proc.stderr
    last = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1]
    match = re.match(r"job (\d+)\b", last)
    assert match, proc.stdout
    return SearchSpec.from_dict(data), db, int(match.group(1))


def _export(tmp: Path, db: str, job: int, *how: str) -> tuple[int, Path]:
    proc = _cli(["export", str(job), *how, "--out", "exported", "--db", db], tmp)
    assert proc.returncode == 0, proc.stderr
    trial = int(re.search(r"trial (\d+)", proc.stdout).group(1))  # type: ignore[union-attr]
    return trial, Path(proc.stdout.strip().splitlines()[-1])


def _report_quality(spec: SearchSpec, model: object) -> float:
    """The REPORT-split quality of ``model``, measured against the dense model's outputs."""
    dense = load_model(spec.model, seed=spec.seed)
    task = build_task(dense, spec.task)
    task.prepare(dense.model)
    return task.score(model, "report")[task.quality_name]  # type: ignore[arg-type]


@pytest.mark.slow
def test_run_records_a_job_and_export_best_loads_with_from_pretrained(tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    spec, db, job = _run_spec(tmp_path)
    status = JobService(db).get(job)
    assert status["state"] == "succeeded" and status["progress"]["done"] == 3
    front = {p["trial"]: p for p in JobService(db).front(job)}
    assert front

    trial, path = _export(tmp_path, db, job, "--best")
    best = max(front.values(), key=lambda p: p["report"]["fidelity"])
    assert trial == best["trial"]
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    assert _report_quality(spec, model) == pytest.approx(best["report"]["fidelity"], abs=1e-5)
    # The tokenizer travels with the model: the export alone runs on text.
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    original = load_model(spec.model).tokenizer
    text = "Pruning removes weights; the exported folder reads text by itself."
    assert tokenizer(text)["input_ids"] == original(text)["input_ids"]
    assert model(**tokenizer(text, return_tensors="pt")).last_hidden_state.shape[-1] == 384

    # The same point as compressed-tensors (sparse-bitmask): the same weights, a smaller file.
    if importlib.util.find_spec("compressed_tensors") is not None:
        proc = _cli(["export", str(job), "--trial", str(trial), "--format", "compressed-tensors", "--out", "ct",
                     "--db", db], tmp_path)
        assert proc.returncode == 0, proc.stderr
        config = json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]
        assert config["sparsity_config"]["format"] == "sparse-bitmask"
        ct = prunetune.load_pruned(tmp_path / "ct")
        assert all(torch.equal(p, dict(model.named_parameters())[n]) for n, p in ct.named_parameters())
    bad = _cli(["export", str(job), "--best", "--format", "zip", "--out", "z", "--db", db], tmp_path)
    assert bad.returncode != 0 and "'format'" in bad.stderr and "dense, compressed-tensors" in bad.stderr

    # `prunetune evaluate` reproduces the reported quality, from the export and from the allocation.
    scored = _cli(["evaluate", "spec.yaml", "--export", str(path)], tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["fidelity"] == pytest.approx(best["report"]["fidelity"], abs=1e-5)
    (tmp_path / "point.json").write_text(json.dumps({"trial": trial, "allocation": best["allocation"]}))
    scored = _cli(["evaluate", "spec.yaml", "--allocation", "point.json"], tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["fidelity"] == pytest.approx(best["report"]["fidelity"], abs=1e-6)


@pytest.mark.slow
def test_export_sparsity_picks_the_best_point_at_least_that_sparse_and_names_bad_values(tmp_path: Path) -> None:
    spec, db, job = _run_spec(tmp_path, space={"criterion": "wanda", "max": 0.9, "step": 0.05,
                                               "granularity": "heads"})
    front = JobService(db).front(job)
    floor = min(p["sparsity"] for p in front)
    trial, path = _export(tmp_path, db, job, "--sparsity", str(floor))
    eligible = [p for p in front if p["sparsity"] >= floor]
    chosen = max(eligible, key=lambda p: p["report"]["fidelity"])
    assert trial == chosen["trial"]
    model = prunetune.load_pruned(path)
    assert _report_quality(spec, model) == pytest.approx(chosen["report"]["fidelity"], abs=1e-5)

    top = max(p["sparsity"] for p in front)
    proc = _cli(["export", str(job), "--sparsity", "0.99", "--out", "x", "--db", db], tmp_path)
    assert proc.returncode != 0
    assert "'--sparsity'" in proc.stderr and "0.99" in proc.stderr and f"{top:.4f}" in proc.stderr
    both = _cli(["export", str(job), "--best", "--trial", "0", "--out", "x", "--db", db], tmp_path)
    assert both.returncode != 0 and "exactly one of --trial N, --best or --sparsity X" in both.stderr


def test_prune_one_shot_on_minilm_with_a_text_file(tmp_path: Path) -> None:
    """`prunetune prune minilm --granularity 2:4 --criterion wanda --calibration data.txt`
    writes a 2:4 model that from_pretrained loads, with its tokenizer, pruned as the
    Python API prunes it on the same text."""
    from pydoc_data.topics import topics

    from transformers import AutoModel, AutoTokenizer

    from prunetune.engine.sources import minilm_path
    from prunetune.evaluators.data import file_chunks

    (tmp_path / "data.txt").write_text("\n\n".join(topics[k] for k in sorted(topics)[:12]))
    proc = _cli(["prune", "minilm", "--sparsity", "0.5", "--criterion", "wanda", "--granularity", "2:4",
                 "--calibration", "data.txt", "--samples", "32", "--out", "pruned"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "overall sparsity 0.5000" in proc.stdout and "model.safetensors" in proc.stdout
    model = AutoModel.from_pretrained(tmp_path / "pruned", local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "pruned", local_files_only=True)

    expected = AutoModel.from_pretrained(minilm_path(), local_files_only=True).eval()
    chunks = file_chunks(tmp_path / "data.txt")[:32]
    batches = [tokenizer(chunks[i : i + 16], padding=True, truncation=True, max_length=128, return_tensors="pt")
               for i in range(0, 32, 16)]
    prunetune.prune(expected, 0.5, criterion="wanda", granularity="2:4", calibration=batches)
    for name, p in expected.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[name]), name
    q = model.encoder.layer[0].attention.self.query.weight
    assert bool(((q.reshape(q.shape[0], -1, 4) != 0).sum(-1) <= 2).all())

    bad = _cli(["prune", "no-such-model", "--sparsity", "0.5", "--out", "x"], tmp_path)
    assert bad.returncode != 0 and "argument 'MODEL': got 'no-such-model'" in bad.stderr


def test_evaluate_names_what_is_wrong(tmp_path: Path) -> None:
    from helpers import digits_spec_dict

    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(digits_spec_dict()))
    neither = _cli(["evaluate", "spec.yaml"], tmp_path)
    assert neither.returncode != 0 and "exactly one of --allocation FILE or --export DIR" in neither.stderr
    (tmp_path / "alloc.json").write_text(json.dumps({"fc1": 0.5, "conv9": 0.5}))
    wrong = _cli(["evaluate", "spec.yaml", "--allocation", "alloc.json"], tmp_path)
    assert wrong.returncode != 0
    assert "option '--allocation'" in wrong.stderr and "conv9" in wrong.stderr and "fc2" in wrong.stderr
    (tmp_path / "alloc.json").write_text(json.dumps({"fc1": 0.5, "fc2": 0.25}))
    ok = _cli(["evaluate", "spec.yaml", "--allocation", "alloc.json"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["split"] == "report" and 0.0 <= result["accuracy"] <= 1.0 and result["sparsity"] > 0
