"""benchmarks/causal_lm.py: the Llama the benchmarks prune. At its recipe it is the
committed model; trained, it is the same model whatever kernel level the process that
asks for it runs with."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the training is pinned to ATen's AVX2 kernels on x86 only")
def test_the_trained_llama_does_not_depend_on_the_callers_kernels(tmp_path: Path) -> None:
    code = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); from pathlib import Path; import causal_lm; "
            "from transformers import AutoModelForCausalLM; from prunetune.evaluators.model import LoadedModel; "
            "p = causal_lm.train_llama(Path(sys.argv[1]), 3, 128 * 160); "
            "print('FP', LoadedModel(model=AutoModelForCausalLM.from_pretrained(p), name='l').fingerprint())")
    fingerprints = {}
    for level in ("default", "avx2"):  # scalar kernels and vector ones give other float bits
        env = {**os.environ, "ATEN_CPU_CAPABILITY": level}
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / level)], env=env, capture_output=True,
                             text=True, check=True).stdout
        fingerprints[level] = next(line.split()[1] for line in out.splitlines() if line.startswith("FP "))
    assert fingerprints["default"] == fingerprints["avx2"]


def _fingerprint(path: Path) -> str:
    from transformers import AutoModelForCausalLM

    from prunetune.evaluators.model import LoadedModel

    return LoadedModel(model=AutoModelForCausalLM.from_pretrained(path), name="llama").fingerprint()


def test_the_committed_llama_is_the_model_its_recipe_names() -> None:
    recipe = json.loads((BENCH / "models" / "llama-pydoc" / "recipe.json").read_text())
    assert _fingerprint(BENCH / "models" / "llama-pydoc") == recipe["fingerprint"]


def test_the_benchmarks_get_the_committed_llama_at_its_recipe_and_train_one_otherwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import causal_lm

    recipe = json.loads((causal_lm.LLAMA_DIR / "recipe.json").read_text())
    assert causal_lm.llama(tmp_path / "a", recipe["steps"], recipe["used_bytes"]) == causal_lm.LLAMA_DIR
    assert not (tmp_path / "a").exists()
    trained = causal_lm.llama(tmp_path / "b", 3, recipe["used_bytes"])
    assert trained == tmp_path / "b"
    assert _fingerprint(trained) != recipe["fingerprint"]


def test_the_llama_task_of_the_fronts_is_the_committed_models_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    # pareto_front.py --model llama scores the committed model only while its task's windows
    # are the bytes the recipe kept out of the training text
    monkeypatch.syspath_prepend(str(BENCH))
    import causal_lm
    import pareto_front

    recipe = json.loads((causal_lm.LLAMA_DIR / "recipe.json").read_text())
    task = pareto_front.LLAMA_TASK
    assert causal_lm.text_bytes(task["calibration"], task["search"], task["report"],
                                task["max_length"]) == recipe["used_bytes"]


def test_the_fronts_refuse_validation_scores_on_the_llama(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import pareto_front

    with pytest.raises(SystemExit) as exit_info:
        pareto_front.main(["--model", "llama", "--score-split", "validation"])
    assert exit_info.value.code == 2
    assert "--score-split: validation is not held out on the Llama" in capsys.readouterr().err
