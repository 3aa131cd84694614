"""Peer baseline: llm-compressor one-shot unstructured pruning (SparseGPT / Wanda / Wanda+OWL).

Run with the private venv built by ``setup.sh`` (llm-compressor pins its own
torch/transformers, so it does not live in the project's environment)::

    benchmarks/peers/llmcompressor/.venv/bin/python benchmarks/peers/llmcompressor/oneshot.py \
        --model DIR --calibration FILE.json --method sparsegpt --sparsity 0.5 --out OUTDIR

DIR is a local Hugging Face causal-LM directory (a tokenizer is optional: the
calibration windows arrive already tokenised).  FILE.json is
``{"input_ids": [[...], ...]}`` with equal-length windows.  OUTDIR receives a
plain, dense Hugging Face model directory (pruned weights are zeros; no
compressed-tensors format, no quantization/sparsity config) plus ``peer.json``.
The last line printed is ``RESULT seconds=<oneshot wall seconds> sparsity=<zeros fraction>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# The model and data are local; never wait on a hub that cannot be reached.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault(
    "TQDM_DISABLE", "1"
)  # per-batch progress bars flood logs; TQDM_DISABLE=0 restores them

METHODS = ("sparsegpt", "wanda", "wanda-owl")
# OWL hyper-parameters: llm-compressor has no defaults for them (both must be
# given); these are the OWL paper's LLaMA settings (M=5, lambda=0.08).
DEFAULT_OWL_M = 5
DEFAULT_OWL_LMBDA = 0.08
# Keys that a dense checkpoint must not carry into another transformers version.
CONFIG_KEYS_TO_DROP = ("quantization_config", "sparsity_config", "compression_config")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "preprocessor_config.json",
    "processor_config.json",
)


class UsageError(Exception):
    """Bad command-line input; reported as one line naming the argument."""


def die(msg: str, code: int = 2) -> None:
    print(f"oneshot.py: error: {msg}", file=sys.stderr)
    sys.exit(code)


# ----------------------------------------------------------------------------
# argument handling
# ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="llm-compressor one-shot pruning peer baseline",
    )
    p.add_argument("--model", required=True, help="local Hugging Face causal-LM directory")
    p.add_argument(
        "--calibration",
        required=True,
        help='JSON file {"input_ids": [[...], ...]} of equal-length token windows',
    )
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument(
        "--sparsity", required=True, type=float, help="target fraction of zeros, in (0, 1)"
    )
    p.add_argument(
        "--out", required=True, help="output directory (created; must be empty if it exists)"
    )
    p.add_argument(
        "--seq-len",
        type=int,
        default=None,
        help="use only the first N tokens of each calibration window (default: whole window)",
    )
    p.add_argument(
        "--targets",
        default="Linear",
        help="comma-separated llm-compressor targets (default: Linear)",
    )
    p.add_argument(
        "--ignore",
        default="re:.*lm_head",
        help="comma-separated llm-compressor ignore list (default: re:.*lm_head; pass '' to prune lm_head too)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="calibration batch size (default 1, llm-compressor's default)",
    )
    p.add_argument(
        "--owl-m",
        type=int,
        default=DEFAULT_OWL_M,
        help=f"OWL outlier threshold M (wanda-owl; default {DEFAULT_OWL_M})",
    )
    p.add_argument(
        "--owl-lmbda",
        type=float,
        default=DEFAULT_OWL_LMBDA,
        help=f"OWL sparsity spread lambda (wanda-owl; default {DEFAULT_OWL_LMBDA})",
    )
    p.add_argument(
        "--owl-native",
        action="store_true",
        help="wanda-owl: pass sparsity_profile='owl' straight to WandaPruningModifier instead of the "
        "work-around (crashes in llmcompressor 0.13-0.14.0.1; for checking newer releases)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's own choice); 1 gives steadier timings on a busy machine",
    )
    p.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    return p.parse_args(argv)


def check_model_dir(path: str) -> Path:
    d = Path(path)
    if not d.is_dir():
        raise UsageError(f"--model: {path!r} is not a directory")
    if not (d / "config.json").is_file():
        raise UsageError(
            f"--model: {path!r} has no config.json (not a Hugging Face model directory)"
        )
    try:
        json.loads((d / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--model: {path}/config.json is not readable JSON ({exc})") from None
    return d


def load_calibration(path: str, seq_len: int | None, vocab_size: int | None) -> list[list[int]]:
    f = Path(path)
    if not f.is_file():
        raise UsageError(f"--calibration: {path!r} does not exist or is not a file")
    try:
        data = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"--calibration: {path!r} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "input_ids" not in data:
        raise UsageError(f'--calibration: {path!r} must be a JSON object with an "input_ids" key')
    windows = data["input_ids"]
    if not isinstance(windows, list) or not windows:
        raise UsageError(
            f'--calibration: "input_ids" in {path!r} must be a non-empty list of token lists'
        )
    length = len(windows[0]) if isinstance(windows[0], list) else 0
    for i, w in enumerate(windows):
        if not isinstance(w, list) or not w:
            raise UsageError(f"--calibration: input_ids[{i}] is not a non-empty list")
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in w):
            raise UsageError(f"--calibration: input_ids[{i}] contains a non-integer token")
        if len(w) != length:
            raise UsageError(
                f"--calibration: windows differ in length (input_ids[0] has {length} tokens, input_ids[{i}] has {len(w)})"
            )
        lo, hi = min(w), max(w)
        if lo < 0 or (vocab_size is not None and hi >= vocab_size):
            raise UsageError(
                f"--calibration: input_ids[{i}] has token ids in [{lo}, {hi}], outside the model's vocabulary [0, {vocab_size})"
            )
    if seq_len is not None:
        if seq_len < 1:
            raise UsageError(f"--seq-len: must be positive, got {seq_len}")
        if seq_len > length:
            raise UsageError(
                f"--seq-len: {seq_len} is longer than the calibration windows ({length} tokens)"
            )
        windows = [w[:seq_len] for w in windows]
    return windows


def check_args(args: argparse.Namespace) -> tuple[Path, Path]:
    if not 0.0 < args.sparsity < 1.0:
        raise UsageError(f"--sparsity: must be in (0, 1), got {args.sparsity}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads: must be positive, got {args.threads}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size: must be positive, got {args.batch_size}")
    model_dir = check_model_dir(args.model)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {args.out!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"--out: {args.out!r} is not empty (pass --overwrite to reuse it)")
    if args.method == "wanda-owl" and not (args.owl_m > 0 and args.owl_lmbda > 0):
        raise UsageError("--owl-m/--owl-lmbda: must both be positive")
    return model_dir, out


def split_list(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


# ----------------------------------------------------------------------------
# llm-compressor glue
# ----------------------------------------------------------------------------


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("llmcompressor", "compressed-tensors", "transformers", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def owl_supported() -> bool:
    from llmcompressor.modifiers.pruning import WandaPruningModifier

    fields = WandaPruningModifier.model_fields
    return all(k in fields for k in ("sparsity_profile", "owl_m", "owl_lmbda"))


def build_modifier(args: argparse.Namespace, sparsity: float | list[float] | None = None):
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier

    kwargs = dict(
        sparsity=args.sparsity if sparsity is None else sparsity,
        mask_structure="0:0",  # unstructured
        targets=split_list(args.targets),
        ignore=split_list(args.ignore),
    )
    if args.method == "sparsegpt":
        return SparseGPTModifier(**kwargs)
    if args.method == "wanda" or sparsity is not None:
        return WandaPruningModifier(**kwargs)
    # wanda-owl
    if not owl_supported():
        die(
            f"--method wanda-owl: llmcompressor {versions()['llmcompressor']} has no OWL option "
            "(WandaPruningModifier lacks sparsity_profile/owl_m/owl_lmbda)",
            code=3,
        )
    return WandaPruningModifier(
        sparsity_profile="owl", owl_m=args.owl_m, owl_lmbda=args.owl_lmbda, **kwargs
    )


def infer_owl_sparsities(model, owl_modifier, dataloader) -> dict[str, float]:
    """Per-decoder-layer OWL sparsities, computed by llm-compressor's own
    ``SparsityModifierBase._infer_owl_layer_sparsity`` but outside the session.

    Why: in llmcompressor 0.13-0.14.0.1 ``sparsity_profile="owl"`` cannot run:
    the OWL activation pass (``_get_activations`` -> ``run_calibration``) fires
    calibration lifecycle events from inside ``on_initialize``, before the
    session is initialised ("ValueError: Cannot invoke event before
    initializing"); and the per-layer dict it returns is no longer understood by
    ``on_calibration_start`` (0.12 had a ``case dict()`` branch, 0.13 dropped it).
    So the basic pipeline's lifecycle callbacks are silenced for the activation
    pass (no modifier is active then, so they would have nothing to do), and
    the resulting layer sparsities are handed to a plain WandaPruningModifier as
    its per-target ``sparsity`` list (see ``owl_sparsity_list``).
    """
    from compressed_tensors.utils import match_named_modules
    from llmcompressor.core import LifecycleCallbacks
    from llmcompressor.utils.pytorch.module import infer_sequential_targets

    layers = dict(match_named_modules(model, infer_sequential_targets(model)))
    if not layers:
        die(
            "--method wanda-owl: llm-compressor found no decoder layers (sequential targets) in the model"
        )
    names = ("calibration_start", "sequential_epoch_end", "calibration_end")
    saved = {n: LifecycleCallbacks.__dict__[n] for n in names}
    try:
        for n in names:
            setattr(LifecycleCallbacks, n, classmethod(lambda cls, *a, **k: None))
        return owl_modifier._infer_owl_layer_sparsity(model, layers, dataloader)
    finally:
        for n, v in saved.items():
            setattr(LifecycleCallbacks, n, v)


def owl_sparsity_list(
    model, targets: list[str], layer_sparsity: dict[str, float], default: float
) -> list[float]:
    """Expand {decoder layer name: sparsity} to the list a modifier indexes by
    position in ``match_named_modules(model, targets)`` (its ``_target_layers``,
    which do not drop ignored modules): each target gets the sparsity of the
    decoder layer it lives in; targets outside every decoder layer (lm_head, if
    not ignored) get the requested sparsity."""
    from compressed_tensors.utils import match_named_modules

    out = []
    for name, _ in match_named_modules(model, targets):
        owner = [ln for ln in layer_sparsity if name == ln or name.startswith(ln + ".")]
        out.append(float(layer_sparsity[owner[0]]) if owner else float(default))
    return out


def describe_modifier(modifier) -> dict:
    """The modifier's effective settings (defaults filled in), JSON-serialisable."""
    dump = modifier.model_dump(mode="json")
    keep = (
        "sparsity",
        "sparsity_profile",
        "owl_m",
        "owl_lmbda",
        "mask_structure",
        "targets",
        "ignore",
        "block_size",
        "dampening_frac",
        "preserve_sparsity_mask",
        "offload_hessians",
    )
    return {"modifier": type(modifier).__name__, **{k: dump[k] for k in keep if k in dump}}


def conv1d_to_linear(model) -> list[str]:
    """Swap transformers' Conv1D (GPT-2 style, weight [in, out]) for nn.Linear.

    llm-compressor's pruning modifiers only visit modules whose class is named
    Linear/Conv1d/Conv2d/Conv3d, so GPT-2's Conv1D projections would silently be
    skipped.  The swap is exact (Conv1D(x) = x @ W + b = Linear with W^T) and is
    undone by ``linear_to_conv1d`` before saving.
    """
    import torch
    from transformers.pytorch_utils import Conv1D

    swapped = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, Conv1D):
            continue
        nx, nf = module.weight.shape
        lin = torch.nn.Linear(nx, nf, bias=module.bias is not None, dtype=module.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(module.weight.t())
            if module.bias is not None:
                lin.bias.copy_(module.bias)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, lin)
        swapped.append(name)
    return swapped


def linear_to_conv1d(model, names: list[str]) -> None:
    import torch
    from transformers.pytorch_utils import Conv1D

    for name in names:
        lin = model.get_submodule(name)
        conv = Conv1D(lin.out_features, lin.in_features)
        with torch.no_grad():
            conv.weight = torch.nn.Parameter(
                lin.weight.detach().t().contiguous().to(lin.weight.dtype)
            )
            if lin.bias is not None:
                conv.bias = torch.nn.Parameter(lin.bias.detach().clone())
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, conv)


def targeted_modules(model, targets: list[str], ignore: list[str]) -> dict[str, Any]:
    """The modules llm-compressor's sparsity modifiers prune, found the same way
    they do (SparsityModifierBase.on_calibration_start)."""
    import torch
    from compressed_tensors.utils import match_named_modules, match_targets
    from llmcompressor.modifiers.pruning.sparsegpt.sgpt_base import PRUNABLE_LAYER_TYPES

    found: dict[str, Any] = {}
    for layer_name, layer in match_named_modules(model, targets):
        for sub_name, module in match_named_modules(layer, PRUNABLE_LAYER_TYPES):
            full = f"{layer_name}.{sub_name}"  # same (odd) naming llm-compressor uses
            if match_targets(full, module, ignore) or isinstance(module, torch.nn.Embedding):
                continue
            found[full.strip(".").replace("..", ".")] = module
    return found


def zero_fraction(modules: dict[str, Any]) -> tuple[float, dict[str, float]]:
    zeros = total = 0
    per = {}
    for name, m in modules.items():
        w = m.weight.detach()
        z = int((w == 0).sum())
        per[name] = z / w.numel()
        zeros += z
        total += w.numel()
    return (zeros / total if total else float("nan")), per


class _NoProcessor:
    """Stand-in processor: oneshot() insists on one when a dataset is given, but
    never uses it when the dataset is a ready DataLoader of token ids."""

    def save_pretrained(self, *_a, **_k):  # pragma: no cover - never saved (no output_dir)
        pass


def make_dataloader(windows: list[list[int]], batch_size: int):
    import torch
    from torch.utils.data import DataLoader

    rows = [
        {
            "input_ids": torch.tensor(w, dtype=torch.long),
            "attention_mask": torch.ones(len(w), dtype=torch.long),
        }
        for w in windows
    ]
    return DataLoader(rows, batch_size=batch_size, shuffle=False)  # type: ignore[arg-type]


def clean_config(out: Path) -> list[str]:
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    dropped = [k for k in CONFIG_KEYS_TO_DROP if k in cfg]
    for k in dropped:
        del cfg[k]
    if dropped:
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return dropped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model_dir, out = check_args(args)
        cfg = json.loads((model_dir / "config.json").read_text())
        vocab = cfg.get("vocab_size") or (cfg.get("text_config") or {}).get("vocab_size")
        windows = load_calibration(args.calibration, args.seq_len, vocab)
    except UsageError as exc:
        die(str(exc))

    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    vers = versions()
    print(f"[peer] versions: {json.dumps(vers)}", flush=True)

    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    except Exception as exc:
        die(f"--model: cannot load {str(model_dir)!r} as a causal LM ({type(exc).__name__}: {exc})")
    saved_dtype = cfg.get("dtype") or cfg.get("torch_dtype")
    model.eval()

    swapped = conv1d_to_linear(model)
    if swapped:
        print(
            f"[peer] converted {len(swapped)} transformers Conv1D modules to nn.Linear for pruning",
            flush=True,
        )

    modifier = build_modifier(args)
    recipe = describe_modifier(modifier)
    targets, ignore = recipe["targets"], recipe["ignore"]
    pruned = targeted_modules(model, targets, ignore)
    if not pruned:
        die(
            f"--targets: {args.targets!r} (minus --ignore {args.ignore!r}) matches no prunable module in the model"
        )
    print(f"[peer] recipe: {json.dumps(recipe)}", flush=True)
    print(
        f"[peer] {len(pruned)} modules targeted ({', '.join(list(pruned)[:3])}{', ...' if len(pruned) > 3 else ''}); "
        f"calibration: {len(windows)} windows x {len(windows[0])} tokens, batch size {args.batch_size}",
        flush=True,
    )

    has_tokenizer = any((model_dir / f).exists() for f in TOKENIZER_FILES)
    dataloader = make_dataloader(windows, args.batch_size)

    owl_layers = None
    owl_seconds = 0.0
    t0 = time.perf_counter()
    if args.method == "wanda-owl" and not args.owl_native:
        owl_layers = infer_owl_sparsities(model, modifier, dataloader)
        owl_seconds = time.perf_counter() - t0
        modifier = build_modifier(
            args, sparsity=owl_sparsity_list(model, targets, owl_layers, args.sparsity)
        )
        recipe["applied_as"] = (
            "WandaPruningModifier with per-target sparsity list from OWL (see owl_layer_sparsities)"
        )
        print(
            f"[peer] OWL layer sparsities ({owl_seconds:.2f}s): "
            + ", ".join(f"{k}={v:.4f}" for k, v in owl_layers.items()),
            flush=True,
        )
    try:
        model = oneshot(
            model=model,
            processor=None if has_tokenizer else _NoProcessor(),
            recipe=modifier,
            dataset=dataloader,
            num_calibration_samples=len(windows),
            max_seq_length=len(windows[0]),
            shuffle_calibration_samples=False,
            output_dir=None,  # we save a plain dense checkpoint ourselves
        )
    except Exception as exc:
        if args.method == "wanda-owl" and args.owl_native:
            die(
                f"--owl-native: llmcompressor {vers['llmcompressor']}'s sparsity_profile='owl' failed "
                f"({type(exc).__name__}: {exc}); run without --owl-native to use the work-around",
                code=3,
            )
        raise
    seconds = time.perf_counter() - t0  # includes the OWL pass for wanda-owl

    # Back to the checkpoint's own dtype (calibration ran in float32), then count
    # zeros on exactly what will be saved.  llm-compressor may have wrapped the
    # modules found earlier, so look them up again.
    if isinstance(saved_dtype, str) and hasattr(torch, saved_dtype) and saved_dtype != "float32":
        model = model.to(getattr(torch, saved_dtype))
    pruned = targeted_modules(model, targets, ignore)
    achieved, per_module = zero_fraction(pruned)
    if swapped:
        linear_to_conv1d(model, swapped)

    out.mkdir(parents=True, exist_ok=True)
    # oneshot() replaced model.save_pretrained by a compressed-tensors wrapper (an
    # instance attribute); call the class's own method to write a plain dense model.
    type(model).save_pretrained(model, str(out))
    dropped = clean_config(out)
    if dropped:
        print(f"[peer] removed {dropped} from the saved config.json", flush=True)

    report = {
        "peer": "llm-compressor",
        "method": args.method,
        "sparsity_requested": args.sparsity,
        "sparsity_achieved": achieved,
        "seconds": seconds,
        "versions": vers,
        "recipe": recipe,
        "owl_layer_sparsities": owl_layers,
        "owl_seconds": owl_seconds if args.method == "wanda-owl" else None,
        "pipeline": "sequential (llm-compressor default for calibrated modifiers)",
        "model": str(model_dir.resolve()),
        "calibration": str(Path(args.calibration).resolve()),
        "calibration_windows": len(windows),
        "calibration_seq_len": len(windows[0]),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "conv1d_converted": swapped,
        "config_keys_removed": dropped,
        "pruned_modules": per_module,
    }
    (out / "peer.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"RESULT seconds={seconds:.3f} sparsity={achieved:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
