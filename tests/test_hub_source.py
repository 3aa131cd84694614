"""Models by Hub id, read from the Hugging Face cache offline: a tiny BERT placed in a
local cache folder in the cache's own layout (refs -> snapshots), run by `prunetune run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import minilm_spec_dict
from pruning.test_workbench_structured import _tiny_bert_directory

import prunetune

BIN = Path(sys.executable).parent / "prunetune"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_with_tiny_bert(root: Path) -> Path:
    """``root`` as ``HF_HUB_CACHE`` holding ``acme/tiny-bert`` at ``main`` and tag ``v1``."""
    repo = root / "models--acme--tiny-bert"
    _tiny_bert_directory(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    for ref in ("main", "v1"):
        (repo / "refs" / ref).write_text(COMMIT)
    return root


def _env(cache: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(Path(prunetune.__file__).parents[1]),
                HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")


def test_spec_with_a_hub_id_runs_offline_from_the_cache(tmp_path: Path) -> None:
    cache = _cache_with_tiny_bert(tmp_path / "hub-cache")
    spec = minilm_spec_dict(model={"hub": "acme/tiny-bert", "revision": "v1"}, budget={"trials": 2},
                            report={"baselines": []})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    proc = subprocess.run([str(BIN), "run", "spec.yaml", "--db", f"sqlite:///{tmp_path / 'jobs.db'}", "--out", "out"],
                          cwd=tmp_path, capture_output=True, text=True, env=_env(cache), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "front.csv").is_file()

    (tmp_path / "missing.yaml").write_text(yaml.safe_dump({**spec, "model": {"hub": "acme/absent"}}))
    proc = subprocess.run([str(BIN), "run", "missing.yaml", "--db", f"sqlite:///{tmp_path / 'x.db'}"],
                          cwd=tmp_path, capture_output=True, text=True, env=_env(cache), timeout=600)
    assert proc.returncode != 0
    assert "'model.hub'" in proc.stderr and "'acme/absent'" in proc.stderr and "HF_HUB_OFFLINE=0" in proc.stderr


def test_hub_model_loads_in_the_requested_dtype(tmp_path: Path) -> None:
    cache = _cache_with_tiny_bert(tmp_path / "hub-cache")
    code = ("from prunetune.engine.sources import load_model\n"
            "from prunetune.spec import ModelSpec\n"
            "m = load_model(ModelSpec(hub='acme/tiny-bert', dtype='bf16'))\n"
            "print(m.name, {str(p.dtype) for p in m.model.parameters()}, m.tokenizer is not None)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(cache), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "acme/tiny-bert {'torch.bfloat16'} True"


def test_hub_fields_are_checked_and_named() -> None:
    import pytest

    from prunetune.engine.sources import minilm_path
    from prunetune.errors import SpecError
    from prunetune.spec import SearchSpec

    for model, field, words in (
        ({"hub": "acme/tiny bert"}, "model.hub", "should match pattern"),
        ({"path": minilm_path(), "revision": "v1"}, "model", "it goes with model.hub"),
        ({"factory": "m:f", "dtype": "bf16"}, "model", "it goes with model.hub or model.path"),
        ({"hub": "acme/x", "dtype": "int8"}, "model.dtype", "'fp32', 'bf16' or 'fp16'"),
        ({"hub": "acme/x", "source": "minilm"}, "model", "got ['source', 'hub']"),
    ):
        with pytest.raises(SpecError) as err:
            SearchSpec.from_dict(minilm_spec_dict(model=model))
        assert err.value.field == field and words in str(err.value), str(err.value)
