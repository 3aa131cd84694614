"""Classification (HF and any module; JSONL, CSV, scikit-learn) and callable tasks, and a
job whose task raises or returns NaN/inf: those trials fail with the reason, the job goes on."""

from __future__ import annotations

import csv
import json
import math
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
from helpers import digits_spec_dict

from prunetune.engine.runner import run_job
from prunetune.engine.sources import load_hf_directory, minilm_path
from prunetune.engine.workbench import build_workbench
from prunetune.errors import SpecError
from prunetune.spec import SearchSpec

USER_MODULE = textwrap.dedent('''
    import math
    import torch
    from torch import nn

    def accuracy(model, batch):
        return float((model(batch["x"]).argmax(-1) == batch["labels"]).float().mean())

    def flaky(model, batch):
        zeros = float((model.fc1.weight == 0).float().mean())
        if zeros > 0.7:
            return math.nan
        if zeros > 0.5:
            raise RuntimeError(f"boom at {zeros:.2f} zeros")
        if zeros > 0.4:
            return math.inf
        return accuracy(model, batch)

    def iris_mlp():
        from sklearn.datasets import load_iris
        d = load_iris()
        x = torch.tensor(d.data, dtype=torch.float32)
        y = torch.tensor(d.target)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return model
''')


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"user_metrics_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_sklearn_set_and_csv_features_with_any_module(user_module: str, tmp_path: Path) -> None:
    task = {"kind": "classification", "data": "sklearn:iris", "calibration": 30, "search": 60, "report": 60, "batch_size": 16}
    spec = SearchSpec.from_dict({"model": {"factory": f"{user_module}:iris_mlp"}, "task": task,
                                 "space": {"criterion": "wanda", "max": 0.95}})
    bench = build_workbench(spec)
    assert bench.task.dense_reference()["accuracy"] > 0.9
    full = bench.evaluator.evaluate([0.0] * bench.space.dim, split="report")
    assert full["accuracy"] == bench.task.dense_reference()["accuracy"] and full["agreement"] == 1.0
    assert bench.evaluator.evaluate([0.95] * bench.space.dim)["kl_to_dense"] > 0

    from sklearn.datasets import load_iris

    d = load_iris()
    path = tmp_path / "iris.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "d", "species"])
        for row, label in zip(d.data, d.target, strict=True):
            w.writerow([*row, d.target_names[label]])  # string labels, mapped in sorted order
    spec2 = SearchSpec.from_dict({"model": {"factory": f"{user_module}:iris_mlp"},
                                  "task": dict(task, data=str(path), label_column="species")})
    assert build_workbench(spec2).task.dense_reference()["accuracy"] > 0.9
    with pytest.raises(SpecError, match=r"task\.label_column"):
        build_workbench(SearchSpec.from_dict({"model": {"factory": f"{user_module}:iris_mlp"},
                                              "task": dict(task, data=str(path))}))


def test_hf_sequence_classifier_on_jsonl(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from prunetune.evaluators.data import pydoc_chunks

    tok = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, id2label={0: "no", 1: "yes"},
                        label2id={"no": 0, "yes": 1})
    BertForSequenceClassification(config).save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")
    rows = [{"sentence": t, "mentions_class": "yes" if "class" in t else "no"} for t in pydoc_chunks()[:120]]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    spec = SearchSpec.from_dict({
        "model": {"path": str(tmp_path / "clf")},
        "task": {"kind": "classification", "data": str(data), "text_column": "sentence",
                 "label_column": "mentions_class", "calibration": 20, "search": 40, "report": 40, "batch_size": 8},
        "space": {"criterion": "wanda"},
    })
    bench = build_workbench(spec)
    assert type(bench.loaded.model).__name__ == "BertForSequenceClassification"
    # Accuracy computed independently from the file's rows.
    model, task = bench.loaded.model, bench.task
    texts, labels = task._texts["report"], task._y["report"]
    with torch.no_grad():
        enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        pred = model(**enc).logits.argmax(-1)
    expect = float((pred == labels).float().mean())
    assert bench.evaluator.evaluate([0.0] * bench.space.dim, split="report")["accuracy"] == pytest.approx(expect)
    assert {int(v) for v in labels} <= {0, 1}
    batch = task.calibration_batches()[0]
    assert float(task.loss(model, batch).detach()) > 0


def test_callable_task_scores_with_the_users_function(user_module: str) -> None:
    spec = SearchSpec.from_dict(digits_spec_dict(task={"kind": "callable", "function": f"{user_module}:accuracy",
                                                       "data": "digits", "calibration": 64, "search": 200, "report": 300}))
    bench = build_workbench(spec)
    assert bench.task.quality_name == "score"
    dense = bench.task.dense_reference()["score"]
    assert dense > 0.9
    assert bench.evaluator.evaluate([0.9] * bench.space.dim)["score"] < bench.evaluator.evaluate([0.0] * bench.space.dim)["score"]
    with pytest.raises(SpecError, match=r"task\.function"):
        build_workbench(SearchSpec.from_dict(digits_spec_dict(
            task={"kind": "callable", "function": f"{user_module}:missing", "data": "digits"})))


def test_failing_task_fails_its_trial_and_the_job_goes_on(user_module: str, sqlite_url: str) -> None:
    spec = SearchSpec.from_dict(digits_spec_dict(
        task={"kind": "callable", "function": f"{user_module}:flaky", "data": "digits",
              "calibration": 64, "search": 100, "report": 100},
        budget={"trials": 16}, space={"criterion": "magnitude", "max": 0.95, "step": 0.05}))
    outcome = run_job(spec, db=sqlite_url, study_name="flaky")
    assert len(outcome.results) == 16
    failed = [r for r in outcome.results if not r.ok]
    reasons = " | ".join(r.error or "" for r in failed)
    assert "nan" in reasons and "boom" in reasons and "inf" in reasons, reasons
    assert any(r.ok for r in outcome.results)
    assert outcome.front and all(r.ok for r in outcome.front)
    assert set(outcome.reports) == {r.number for r in outcome.front}
    trials = optuna.load_study(study_name="flaky", storage=sqlite_url).trials
    states = {t.number: t.state for t in trials}
    assert sum(s == optuna.trial.TrialState.FAIL for s in states.values()) == len(failed)
    assert all(math.isfinite(r.quality) for r in outcome.results if r.ok)  # type: ignore[arg-type]


def test_local_hf_directory_without_tokenizer_loads(tiny_llama_dir: Path) -> None:
    loaded = load_hf_directory(str(tiny_llama_dir))
    assert loaded.tokenizer is None and type(loaded.model).__name__ == "LlamaForCausalLM"
