"""Export a pruned model so it is really smaller, and load it back without pickle.

A directory written by :func:`export` holds ``prunetune.json`` (the manifest) and:

- unstructured / N:M, ``format="dense"`` (default): the weights once, as the Hugging Face
  files of the masked model (``save_pretrained``: safetensors with zeros, loadable by
  plain ``from_pretrained``), or ``model.safetensors`` for a plain module;
- unstructured / N:M, ``format="compressed-tensors"``: the weights once, in the sparse
  formats vLLM and llm-compressor read (``sparse-24-bitmask`` for 2:4, else
  ``sparse-bitmask``), written by the ``compressed-tensors`` package, with its
  ``quantization_config`` in ``config.json``; smaller on disk;
- structured: ``pruned.safetensors`` with physically smaller tensors, ``config.json``
  (with fewer layers when blocks were removed) and the new shapes and per-module head
  counts in the manifest. :func:`load_pruned` builds the model from its transformers
  config (the class named in the manifest, looked up in ``transformers`` itself, never
  remote code), resizes the recorded tensors, and loads the weights.

Either kind can also trim the vocabulary (``vocabulary=texts`` with ``tokenizer=``, see
:mod:`prunetune.pruning.vocabulary`): the embeddings keep only the rows of the tokens the
texts use, ``config.json`` gets the smaller ``vocab_size``, the trimmed tokenizer is saved
next to the model (``AutoTokenizer.from_pretrained(directory)``) and the manifest's
``vocabulary`` lists the kept original ids. A tokenizer passed to :func:`export` and the
model's generation config are saved with it; the manifest's ``files`` gives each file's
size on disk in bytes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from prunetune.pruning.structures import StructureUnit
from prunetune.pruning.vocabulary import (
    VocabularyTrim,
    check_same_tokens,
    plan_trim,
    save_trimmed_tokenizer,
)

MANIFEST = "prunetune.json"
FORMAT = "prunetune-pruned/1"
# How unstructured / N:M weights are written (structured exports are always cut).
WEIGHT_FORMATS = ("dense", "compressed-tensors")


@dataclass
class PruneState:
    """What :func:`prunetune.prune` did, kept on the model for :func:`export`.

    Attributes:
        granularity: the granularity name.
        units: structure units (empty for unstructured/N:M).
        removed: ``{unit name: structure indices removed}``.
        report: per-layer rows (plain dicts) for the manifest.
    """

    granularity: str
    units: list[StructureUnit] = field(default_factory=list)
    removed: dict[str, list[int]] = field(default_factory=dict)
    report: list[dict[str, Any]] = field(default_factory=list)
    summary: Any = None  # the PruneReport
    pruner: Any = None  # what applied it: keeps block hooks alive, lets progressive re-zero
    masks: dict[str, torch.Tensor] | None = None  # unstructured keep masks

    @property
    def structured(self) -> bool:
        return bool(self.units)


STATE_ATTR = "_prunetune_state"


def _is_hf(model: nn.Module) -> bool:
    return hasattr(model, "config") and hasattr(model, "save_pretrained")


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop tensors that share storage with an earlier one (tied embeddings)."""
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    out, tied = {}, {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), tuple(t.shape))
        if t.numel() and key in seen:
            tied[name] = seen[key]
            continue
        seen[key] = name
        out[name] = t.detach().contiguous().cpu()
    return out, tied


def compress(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Bitmask form: a tensor whose bitmask + nonzeros is smaller than it is stored as
    ``name::mask`` (packed bits), ``name::values`` and ``name::shape``; others as is."""
    out = {}
    for name, t in state.items():
        flat = t.reshape(-1)
        nz = flat != 0
        dense_bytes = flat.numel() * flat.element_size()
        packed_bytes = (flat.numel() + 7) // 8 + int(nz.sum()) * flat.element_size()
        if t.is_floating_point() and packed_bytes < dense_bytes:
            out[f"{name}::mask"] = torch.from_numpy(np.packbits(nz.numpy()))
            out[f"{name}::values"] = flat[nz].clone()
            out[f"{name}::shape"] = torch.tensor(list(t.shape), dtype=torch.int64)
        else:
            out[name] = t
    return out


def decompress(packed: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in packed.items():
        if "::" not in name:
            out[name] = t
        elif name.endswith("::mask"):
            base = name[: -len("::mask")]
            shape = [int(x) for x in packed[f"{base}::shape"].tolist()]
            values = packed[f"{base}::values"]
            n = int(np.prod(shape)) if shape else 1
            nz = torch.from_numpy(np.unpackbits(t.numpy(), count=n).astype(bool))
            flat = torch.zeros(n, dtype=values.dtype)
            flat[nz] = values
            out[base] = flat.reshape(shape)
    return out


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def export(model: nn.Module, directory: str | Path, state: PruneState | None = None, *,
           tokenizer: Any = None, vocabulary: Iterable[str] | None = None, format: str = "dense") -> Path:
    """Write ``model`` (pruned by :func:`prunetune.prune`, or masked by hand) to
    ``directory``; returns the directory. Structured pruning recorded on the model (or
    passed as ``state``) is cut out physically; anything else is saved with its zeros.

    Args:
        tokenizer: saved with the model when given (trimmed when ``vocabulary`` is).
        vocabulary: texts the exported model will read (e.g. the task's data). The word
            embeddings keep only the rows of the tokens these texts tokenise to, plus the
            special tokens; needs ``tokenizer`` (a fast WordPiece one). On these texts, the
            saved tokenizer and the loaded model compute what ``tokenizer`` and ``model``
            compute; other text may tokenise to more ``[UNK]``.
        format: how unstructured / N:M weights are written: ``"dense"`` (safetensors with
            zeros, for ``from_pretrained``) or ``"compressed-tensors"`` (a transformers
            model's sparse weights as bitmasks, needs the ``compressed-tensors`` package).

    The files are written to a temporary sibling folder and renamed into place, so a full
    disk or an unwritable folder leaves nothing half-written.

    Raises:
        OSError: the export could not be written (naming ``directory``); nothing changed there.
        TypeError, ValueError: ``vocabulary`` without a usable ``tokenizer``, or a model
            without word embeddings (see :func:`prunetune.pruning.vocabulary.plan_trim`);
            ``format`` not one of ``WEIGHT_FORMATS``, or compressed-tensors for a
            structured export or a plain module.
        ImportError: ``format="compressed-tensors"`` without the package.
    """
    out = Path(directory)
    _check_format(model, state, format)
    texts = None if vocabulary is None else (
        vocabulary if isinstance(vocabulary, (str, bytes)) else list(vocabulary))
    trim = None if texts is None else plan_trim(model, tokenizer, texts)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        tmp.chmod(0o755)  # mkdtemp's 0700 would become the export's mode after the rename
    except OSError as err:
        raise OSError(err.errno, f"cannot export to {str(out)!r}: {err.strerror or err}") from err
    try:
        _write(model, tmp, state, trim, format)
        if trim is not None:
            save_trimmed_tokenizer(tokenizer, trim, tmp)
            check_same_tokens(tokenizer, tmp, trim, list(texts or []))
        elif tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        _record_sizes(tmp)
        _publish(tmp, out)
    except (OSError, SafetensorError) as err:  # safetensors reports a failed write as its own error
        errno = err.errno if isinstance(err, OSError) else None
        reason = (err.strerror if isinstance(err, OSError) else None) or err
        raise OSError(errno, f"export to {str(out)!r} failed, nothing was written there: {reason}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _publish(tmp: Path, out: Path) -> None:
    """Move a finished export into ``out``: one rename when ``out`` is new or empty, else
    file by file (each ``os.replace`` is atomic)."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(tmp, out)
        return
    for f in sorted(tmp.rglob("*")):
        target = out / f.relative_to(tmp)
        if f.is_dir():
            target.mkdir(exist_ok=True)
        else:
            os.replace(f, target)


def _check_format(model: nn.Module, state: PruneState | None, format: str) -> None:
    if format not in WEIGHT_FORMATS:
        raise ValueError(f"format: got {format!r}; allowed: {', '.join(WEIGHT_FORMATS)}")
    if format == "dense":
        return
    state = state or getattr(model, STATE_ATTR, None)
    if state is not None and state.structured:
        raise ValueError(f"format {format!r} stores sparse weights; granularity {state.granularity!r} cuts "
                         "structures out (the export is already dense and smaller): use format 'dense'")
    if not _is_hf(model):
        raise ValueError(f"format {format!r} is for transformers models (it is recorded in config.json); "
                         f"{type(model).__name__} is a plain module: use format 'dense'")
    try:
        from compressed_tensors.compressors.sparse_compressors import Sparse24BitMaskCompressor  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "format 'compressed-tensors' needs the compressed-tensors package with its sparse formats "
            f"(0.9 to 0.14): pip install 'prunetune[compressed-tensors]' ({err})") from err


def _record_sizes(out: Path) -> None:
    """Each file's size on disk (bytes) in the manifest, the manifest itself excluded."""
    path = out / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["files"] = {str(f.relative_to(out)): f.stat().st_size
                         for f in sorted(out.rglob("*")) if f.is_file() and f.name != MANIFEST}
    _write_manifest(out, manifest)


def _save_generation_config(model: nn.Module, out: Path) -> None:
    """``generation_config.json`` for generative models (``save_pretrained`` writes it
    itself; the structured and compressed paths write config.json alone)."""
    config = getattr(model, "generation_config", None)
    can = getattr(model, "can_generate", None)
    if config is not None and callable(can) and can():
        config.save_pretrained(out)


def _write(model: nn.Module, out: Path, state: PruneState | None, trim: VocabularyTrim | None,
           format: str = "dense") -> None:
    state = state or getattr(model, STATE_ATTR, None) or PruneState("unstructured")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "granularity": state.granularity,
        "library": "transformers" if _is_hf(model) else "torch",
        "architecture": type(model).__name__,
        "report": state.report,
    }
    sd = dict(model.state_dict()) if trim is None else trim.apply(model.state_dict())
    if state.structured:
        _export_structured(model, out, state, manifest, sd, trim)
    else:
        tensors, tied = _dedupe(sd)
        if format == "compressed-tensors":
            from prunetune.pruning.compressed_tensors import write_compressed_tensors

            manifest["compressed_tensors"] = write_compressed_tensors(model, out, tensors)
            _save_generation_config(model, out)
        elif _is_hf(model):
            model.save_pretrained(out, state_dict=None if trim is None else sd)  # type: ignore[operator]
        else:
            save_file(tensors, str(out / "model.safetensors"))
        manifest.update(kind="unstructured", tied=tied, weights=format)
    if trim is not None:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(out), local_files_only=True, trust_remote_code=False)
        trim.update_config(config)
        config.save_pretrained(out)
        manifest["vocabulary"] = trim.manifest()
    _write_manifest(out, manifest)


def _export_structured(model: nn.Module, out: Path, state: PruneState, manifest: dict[str, Any],
                       sd: dict[str, torch.Tensor], trim: VocabularyTrim | None) -> None:
    cut: dict[tuple[str, int], set[int]] = {}
    attrs: dict[str, dict[str, int]] = {}
    drop_blocks: tuple[str, list[int], int] | None = None
    for unit in state.units:
        gone = state.removed.get(unit.name, [])
        if unit.kind == "blocks":
            if gone:
                drop_blocks = (unit.name, gone, unit.count)
            continue
        for sl in unit.slices:
            cut.setdefault((sl.tensor, sl.dim), set()).update(sl.index(gone))
        for module, attr, per in unit.attrs:
            if hasattr(model.get_submodule(module), attr):
                attrs.setdefault(module, {})[attr] = (unit.count - len(gone)) * per
    for (name, dim), idx in cut.items():
        if idx:
            t = sd[name]
            keep = torch.tensor(sorted(set(range(t.shape[dim])) - idx), dtype=torch.long)
            sd[name] = t.index_select(dim, keep)
    renumber: dict[str, str] = {}
    if drop_blocks is not None:
        if not _is_hf(model):
            raise ValueError("granularity 'blocks' export needs a transformers model (its config counts the layers)")
        prefix, gone, count = drop_blocks
        kept = [i for i in range(count) if i not in set(gone)]
        renumber = {f"{prefix}.{old}.": f"{prefix}.{new}." for new, old in enumerate(kept)}
        pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")

        def rename(key: str) -> str | None:
            """The key after renumbering, or None inside a removed block."""
            m = pattern.match(key)
            if not m:
                return key
            head = m.group(0)
            return renumber[head] + key[len(head):] if head in renumber else None

        sd = {new: t for k, t in sd.items() if (new := rename(k)) is not None}
        attrs = {new.rstrip("."): v for k, v in attrs.items() if (new := rename(k + ".")) is not None}
        manifest["removed_blocks"] = gone
    tensors, tied = _dedupe(sd)
    dense_shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    # Trimmed embeddings are not recorded: config.json's vocab_size builds them at their size.
    shapes = {k: list(t.shape) for k, t in tensors.items() if trim is None or k not in trim.tensors}
    manifest.update(
        kind="structured",
        tied=tied,
        shapes={k: s for k, s in shapes.items() if dense_shapes.get(_old_name(k, renumber)) != s},
        attrs=attrs,
        removed=state.removed,
    )
    save_file(tensors, str(out / "pruned.safetensors"))
    _save_generation_config(model, out)
    if _is_hf(model):
        config = model.config.__class__.from_dict(model.config.to_dict())  # type: ignore[union-attr,operator]
        if drop_blocks is not None:
            n = drop_blocks[2] - len(drop_blocks[1])
            types = getattr(config, "layer_types", None)
            if isinstance(types, list) and len(types) == drop_blocks[2]:
                config.layer_types = [t for i, t in enumerate(types) if i not in set(drop_blocks[1])]
            config.num_hidden_layers = n
        config.save_pretrained(out)


def _old_name(key: str, renumber: dict[str, str]) -> str:
    for old, new in renumber.items():
        if key.startswith(new):
            return old + key[len(new):]
    return key


def _build_from_config(directory: Path, manifest: dict[str, Any]) -> nn.Module:
    import transformers

    arch = manifest["architecture"]
    cls = getattr(transformers, arch, None)
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise ValueError(
            f"{directory / MANIFEST}: architecture {arch!r} is not a transformers model class; "
            "load_pruned never runs remote code: pass model=<a dense instance> instead"
        )
    config = transformers.AutoConfig.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    return cls(config)


def _resize(model: nn.Module, shapes: Mapping[str, list[int]]) -> None:
    """Replace each recorded tensor with an empty one of its pruned shape and update the
    owning module's size attributes, so its repr and any shape checks agree."""
    from transformers.pytorch_utils import Conv1D

    touched = set()
    for name, shape in shapes.items():
        path, _, attr = name.rpartition(".")
        module = model.get_submodule(path)
        old = module._parameters.get(attr)
        if old is not None:
            module._parameters[attr] = nn.Parameter(torch.empty(shape, dtype=old.dtype), requires_grad=old.requires_grad)
        elif attr in module._buffers and module._buffers[attr] is not None:
            module._buffers[attr] = torch.empty(shape, dtype=module._buffers[attr].dtype)  # type: ignore[union-attr]
        else:
            raise ValueError(f"export records tensor {name!r}, which the rebuilt model does not have")
        touched.add(path)
    for path in touched:
        m = model.get_submodule(path)
        if isinstance(m, nn.Linear):
            m.out_features, m.in_features = m.weight.shape
        elif isinstance(m, Conv1D):
            m.nx, m.nf = m.weight.shape
        elif isinstance(m, nn.Conv2d):
            m.out_channels, m.in_channels = m.weight.shape[:2]
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
            m.num_features = m.weight.shape[0]


def load_pruned(directory: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load what :func:`export` wrote, in eval mode. A tokenizer exported with the model
    (trimmed with the vocabulary) loads with ``AutoTokenizer.from_pretrained(directory)``.

    Args:
        directory: the export directory.
        model: a dense instance of the architecture, needed for plain ``nn.Module``
            exports (transformers models are rebuilt from ``config.json``).

    Raises:
        FileNotFoundError: no manifest in ``directory``.
        ValueError: a manifest of another format, or a plain module without ``model``.
    """
    d = Path(directory)
    path = d / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {str(d)!r} is not a prunetune export")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}")
    if model is None:
        if manifest["library"] != "transformers":
            raise ValueError(
                f"{d} holds a plain torch module ({manifest['architecture']}); pass model=<a dense instance> to rebuild it"
            )
        model = _build_from_config(d, manifest)
    if manifest["kind"] == "structured":
        _resize(model, manifest["shapes"])
        for module, values in manifest["attrs"].items():
            target = model.get_submodule(module)
            for attr, value in values.items():
                setattr(target, attr, int(value))
        state = load_file(str(d / "pruned.safetensors"))
    elif (d / "compressed.safetensors").is_file():  # exports written before the weights were held once
        state = decompress(load_file(str(d / "compressed.safetensors")))
    elif manifest.get("weights") == "compressed-tensors":
        from prunetune.pruning.compressed_tensors import read_compressed_tensors

        state = read_compressed_tensors(d, model)
    else:
        state = {}
        for f in sorted(d.glob("*.safetensors")):  # model.safetensors, or save_pretrained's shards
            state.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    untied = [k for k in missing if k not in manifest.get("tied", {})]
    if untied or unexpected:
        raise ValueError(f"{d}: weights do not match the model: missing {untied[:3]}, unexpected {unexpected[:3]}")
    full = model.state_dict()
    for name, source in manifest.get("tied", {}).items():  # a plain module does not re-tie itself
        if name in full and source in state:
            full[name].copy_(state[source])
    return model.eval()
