"""Model loading runs no remote code and unpickles nothing; broken model directories,
impossible budgets and unknown layer names fail with errors that name the field."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import torch
from helpers import digits_spec_dict
from reliability.figures import record

import prunetune
from prunetune.engine.sources import load_model, minilm_path
from prunetune.errors import SpecError
from prunetune.spec import ModelSpec, SearchSpec

PACKAGE = Path(prunetune.__file__).parent


def _calls() -> list[tuple[Path, ast.Call]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                out.append((path, node))
    return out


def _kw(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<not a constant>"
    return "<absent>"


def test_every_from_pretrained_in_the_package_refuses_remote_code() -> None:
    loads = [(p, c) for p, c in _calls()
             if isinstance(c.func, ast.Attribute) and c.func.attr == "from_pretrained"]
    assert len(loads) >= 4
    bad = [f"{p.name}:{c.lineno}" for p, c in loads if _kw(c, "trust_remote_code") is not False]
    assert bad == [], f"from_pretrained without trust_remote_code=False: {bad}"
    assert not any("trust_remote_code=True" in p.read_text() for p in PACKAGE.rglob("*.py"))
    record("security.no_remote_code", checks=len(loads))


def test_nothing_in_the_package_unpickles() -> None:
    torch_loads = [(p, c) for p, c in _calls() if isinstance(c.func, ast.Attribute) and c.func.attr == "load"
                   and isinstance(c.func.value, ast.Name) and c.func.value.id == "torch"]
    bad = [f"{p.name}:{c.lineno}" for p, c in torch_loads if _kw(c, "weights_only") is not True]
    assert bad == [], f"torch.load without weights_only=True: {bad}"
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            module = node.module if isinstance(node, ast.ImportFrom) else None
            assert not {"pickle", "cloudpickle", "dill", "joblib"} & {*names, module}, f"{path} imports a pickler"
    record("security.no_unpickling", checks=len(torch_loads) + 1)


class _Payload:
    """Unpickling this runs ``Path.touch(marker)``: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_touch, (str(self.marker),))


def _touch(path: str) -> None:
    Path(path).touch()


def _minilm_copy(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    for f in Path(minilm_path()).iterdir():
        if f.is_file():
            shutil.copy(f, d / f.name)
    return d


def test_a_directory_with_only_pickled_weights_is_refused_unopened(tmp_path: Path) -> None:
    d = _minilm_copy(tmp_path)
    (d / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch.save({"weights": _Payload(marker)}, d / "pytorch_model.bin")
    with pytest.raises(SpecError) as err:
        load_model(ModelSpec(path=str(d)))
    assert err.value.field == "model.path" and "safetensors" in str(err.value)
    assert not marker.exists(), "the pickle was executed"
    record("security.pickled_weights_refused", checks=2)


def test_malformed_model_directories_fail_naming_model_path(tmp_path: Path) -> None:
    d = _minilm_copy(tmp_path)
    weights = d / "model.safetensors"
    data = weights.read_bytes()
    cases = 0
    for cut in (8, 1000, len(data) // 2, len(data) - 1):  # header cut, tensors cut
        weights.write_bytes(data[:cut])
        with pytest.raises(SpecError) as err:
            load_model(ModelSpec(path=str(d)))
        assert err.value.field == "model.path" and str(d) in str(err.value)
        cases += 1
    weights.write_bytes(data)
    (d / "config.json").write_text("{not json")
    with pytest.raises(SpecError) as err:
        load_model(ModelSpec(path=str(d)))
    assert err.value.field == "model.path"
    (d / "config.json").unlink()
    with pytest.raises(SpecError) as err:  # missing config: refused when the spec is read
        SearchSpec.from_dict(digits_spec_dict(model={"path": str(d)}))
    assert err.value.field == "model.path" and "config.json" in str(err.value)
    record("bad_input.malformed_model_dirs", checks=cases + 2)


def test_impossible_budgets_and_unknown_layers_name_the_field() -> None:
    from prunetune.engine.workbench import build_workbench

    with pytest.raises(SpecError) as err:
        SearchSpec.from_dict(digits_spec_dict(target={"sparsity": 0.97}, space={"max": 0.9}))
    assert "target.sparsity" in str(err.value) and "space.max" in str(err.value)
    for field, space in (("space.include", {"include": ["encoder.*"]}), ("space.exclude", {"exclude": ["ghost"]})):
        with pytest.raises(ValueError, match=rf"{field}: pattern .* matches no .* layers are named like"):
            build_workbench(SearchSpec.from_dict(digits_spec_dict(space=space)))
    record("bad_input.budgets_and_layer_names", checks=3)
