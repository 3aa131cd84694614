"""The job spec: what to prune, how to judge it, how to search, and with what budget.

Loaded from YAML (``SearchSpec.from_yaml``) or a dict (``SearchSpec.from_dict``). Every
rejection raises :class:`prunetune.errors.SpecError` with one line that names the field,
the value it got and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from prunetune.errors import SpecError

BUNDLED_MODELS = ("minilm", "digits")
TASK_KINDS = ("embedding", "classification", "causal-lm", "callable")
GRANULARITIES = ("unstructured", "2:4", "4:8", "heads", "neurons", "heads+neurons", "blocks", "channels")
GROUPINGS = ("per-layer",)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """Exactly one of ``source`` (a bundled model), ``path`` (a local HF directory),
    ``factory`` (``"package.module:function"`` returning an ``nn.Module``) or ``hub`` (a
    Hugging Face Hub id, ``org/name``, read from the Hugging Face cache: offline unless
    ``HF_HUB_OFFLINE=0``; safetensors weights only, never remote code).

    ``revision`` (a branch, tag or commit of the hub repository) goes with ``hub``;
    ``dtype`` (fp32, bf16, fp16: the precision the weights are loaded in) with ``hub`` or
    ``path``.
    """

    source: Literal["minilm", "digits"] | None = None
    path: str | None = None
    factory: str | None = None
    hub: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$",
                            max_length=200)
    revision: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", max_length=200)
    dtype: Literal["fp32", "bf16", "fp16"] | None = None

    @field_validator("path")
    @classmethod
    def _path_exists(cls, v: str | None) -> str | None:
        if v is None:
            return v
        p = Path(v).expanduser()
        if not p.is_dir():
            raise ValueError(
                "no such directory; give a local Hugging Face model directory "
                "(config.json and *.safetensors)"
            )
        if not (p / "config.json").is_file():
            raise ValueError("directory has no config.json; give a Hugging Face model directory")
        return str(p.resolve())

    @field_validator("factory")
    @classmethod
    def _factory_form(cls, v: str | None) -> str | None:
        if v is not None and (":" not in v or v.startswith(":") or v.endswith(":")):
            raise ValueError("must look like 'package.module:function'")
        return v

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSpec:
        given = [k for k in ("source", "path", "factory", "hub") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of source ({'/'.join(BUNDLED_MODELS)}), path, factory or hub; "
                f"got {given or 'none'}"
            )
        if self.revision is not None and self.hub is None:
            raise ValueError(f"model.revision {self.revision!r} names a hub revision: it goes with model.hub")
        if self.dtype is not None and self.hub is None and self.path is None:
            raise ValueError(f"model.dtype {self.dtype!r} is how Hugging Face weights are loaded: "
                             "it goes with model.hub or model.path")
        return self


class DatasetSource(_Strict):
    """Task data read through the ``datasets`` library (``task.data`` as a mapping).

    ``dataset``: a Hub dataset name (read from the datasets cache, offline unless
    ``HF_DATASETS_OFFLINE=0``), a folder written by ``save_to_disk``, or a local
    ``.parquet``/``.json``/``.jsonl``/``.csv`` file. ``column``: the text (or, for
    classification, ignored in favour of ``task.text_column``/``label_column``).
    """

    dataset: str = Field(min_length=1, max_length=1000)
    config: str | None = Field(None, max_length=200)
    split: str = Field("train", min_length=1, max_length=200)
    column: str = Field("text", min_length=1, max_length=200)
    revision: str | None = Field(None, max_length=200)


class TaskSpec(_Strict):
    """The quality metric. Split sizes count examples (text chunks or images), and the
    calibration, search, report and validation splits are disjoint."""

    kind: Literal["embedding", "classification", "causal-lm", "callable"]
    # "pydoc" (bundled text), a local .txt/.csv/.jsonl file, "digits" (the digits model's
    # held-out images) or "sklearn:<digits|iris|wine|breast_cancer>".
    # Or a mapping read with the datasets library: {dataset, config, split, column}.
    data: str | DatasetSource = "pydoc"
    calibration: int = Field(128, ge=1, le=100_000)
    search: int = Field(256, ge=1, le=100_000)
    report: int = Field(512, ge=1, le=100_000)
    # For tuning decisions (defaults, options), so REPORT is read only for published
    # figures; cut after the other three, which stay as they are. None: as many as
    # search, or what the data leaves (scoring an empty one names task.validation).
    validation: int | None = Field(None, ge=0, le=100_000)
    batch_size: int = Field(32, ge=1, le=4096)
    # Truncation length of text examples; for causal-lm the fixed window length.
    max_length: int = Field(128, ge=8, le=8192)
    # causal-lm: step between windows (default max_length: no overlap); quality to rank by.
    stride: int | None = Field(None, ge=1, le=8192)
    quality: Literal["perplexity", "kl"] = "perplexity"
    # classification from CSV/JSONL: the text (for tokenised models) and label columns.
    text_column: str = "text"
    label_column: str = "label"
    # callable: "package.module:function" called as function(model, batch) -> float.
    function: str | None = None
    # Measured latency (median of this many forward passes over one batch); 0 = off.
    latency_repeats: int = Field(0, ge=0, le=1000)
    # embedding: also score retrieval@1 on the report split (about as costly again as
    # the fidelity); None = yes.
    retrieval: bool | None = None
    # causal-lm: "contiguous" keeps the text in its order, whole rows joined by blank lines
    # (no shuffling, no re-cutting), the splits consecutive regions of that one stream, as
    # published perplexity tables read a split; None: shuffled chunks (the default).
    protocol: Literal["contiguous"] | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> TaskSpec:
        if self.kind == "callable" and (self.function is None or ":" not in self.function.strip(":")):
            raise ValueError("task.function: kind 'callable' needs function: 'package.module:function'")
        if self.protocol is not None and self.kind != "causal-lm":
            raise ValueError(f"task.protocol {self.protocol!r} is for kind 'causal-lm'; got kind {self.kind!r}")
        if self.retrieval is not None and self.kind != "embedding":
            raise ValueError(f"task.retrieval is for kind 'embedding'; got kind {self.kind!r}")
        if self.stride is not None and self.stride > self.max_length:
            raise ValueError(f"task.stride {self.stride} exceeds task.max_length {self.max_length}")
        return self


class ReconstructionSpec(_Strict):
    """Candidates assembled from layer-wise reconstructed weights instead of masks.

    ``sparsegpt``: every layer is pruned at every grid level with the OBS update of
    SparseGPT, from the dense model's calibration inputs (``damping``: fraction of the
    mean Hessian diagonal added to it; ``block_size``: columns whose masks are chosen
    together); the levels are built once and cached beside the scores
    (``prunetune.pruning.levels``). Which weights go is then decided by OBS saliency,
    not by ``space.criterion`` (that still feeds OWL and the strategies' features).
    """

    method: Literal["sparsegpt"] = "sparsegpt"
    damping: float = Field(0.01, gt=0.0, le=10.0)
    block_size: int = Field(128, ge=1, le=65536)


class SpaceSpec(_Strict):
    """Which layers may be pruned and how a sparsity becomes a mask.

    ``groups`` is the comparison group of the top-k: ``row`` compares weights within one
    output row (as Wanda does), ``layer`` within the whole layer. Sparsities are fractions
    of weights in [0, 1); ``step`` is the search grid.
    """

    # Structured granularities give each unit (a block's heads, its MLP neurons, a conv's
    # channels, all blocks) one entry whose sparsity is the fraction of structures removed.
    granularity: Literal[
        "unstructured", "2:4", "4:8", "heads", "neurons", "heads+neurons", "blocks", "channels"
    ] = "unstructured"
    criterion: str = "wanda"
    grouping: Literal["per-layer"] = "per-layer"
    groups: Literal["row", "layer"] = "row"
    min: float = Field(0.0, ge=0.0, lt=1.0)
    max: float = Field(0.95, gt=0.0, lt=1.0)
    step: float = Field(0.05, gt=0.0, lt=1.0)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    # "sparsegpt" (shorthand), a mapping (see ReconstructionSpec), or "none" / unset: masks.
    reconstruction: ReconstructionSpec | None = None

    @field_validator("reconstruction", mode="before")
    @classmethod
    def _reconstruction_shorthand(cls, v: Any) -> Any:
        if v is None or v == "none":
            return None
        if isinstance(v, str):
            return {"method": v}
        return v

    @field_validator("reconstruction")
    @classmethod
    def _reconstruction_granularity(cls, v: ReconstructionSpec | None, info: ValidationInfo) -> ReconstructionSpec | None:
        granularity = info.data.get("granularity", "unstructured")
        if v is not None and granularity not in ("unstructured", "2:4", "4:8"):
            raise ValueError(
                f"{v.method!r} re-fits the weights a layer keeps; granularity {granularity!r} removes whole "
                "structures: use unstructured, 2:4 or 4:8, or reconstruction: none"
            )
        return v

    @field_validator("criterion")
    @classmethod
    def _known_criterion(cls, v: str) -> str:
        from prunetune.pruning.importance import CRITERIA

        if v not in CRITERIA:
            raise ValueError(f"unknown criterion; allowed: {', '.join(sorted(CRITERIA))}")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> SpaceSpec:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        from prunetune.pruning.granularity import check_pair, parse_granularity

        check_pair(self.criterion, parse_granularity(self.granularity))
        return self


class ObjectivesSpec(_Strict):
    """What the front trades quality against: ``size`` (nonzero parameters), ``latency``
    (measured seconds of one forward pass over a calibration batch, the median of
    ``task.latency_repeats`` passes, default 5, on the evaluating device), or both (a
    three-objective front). Size alone when neither is given.
    """

    quality: Literal["maximize"] = "maximize"
    size: Literal["minimize"] | None = None
    latency: Literal["minimize"] | None = None

    @model_validator(mode="after")
    def _size_by_default(self) -> ObjectivesSpec:
        if self.size is None and self.latency is None:
            object.__setattr__(self, "size", "minimize")  # frozen; the default spelled out
        return self

    @property
    def minimized(self) -> tuple[str, ...]:
        """The objectives traded against quality, in study order: "size", then "latency"."""
        return tuple(k for k in ("size", "latency") if getattr(self, k) is not None)


# task.latency_repeats when objectives.latency is given and the task does not say.
LATENCY_REPEATS = 5


class BudgetSpec(_Strict):
    trials: int = Field(64, ge=1, le=1_000_000)


class TargetSpec(_Strict):
    """``sparsity``: budget mode, every candidate has exactly this overall,
    parameter-weighted sparsity over the prunable layers (a fraction in (0, 1)).

    ``sparsities``: Pareto mode, the overall sparsities where the front is read (the
    front search improves the front at these sizes, the report compares it with uniform
    there); default 0.5, 0.6, 0.7 and 0.8 where they lie within the space's bounds.
    Give one of the two.
    """

    sparsity: float | None = Field(None, gt=0.0, lt=1.0)
    sparsities: tuple[float, ...] | None = Field(None, min_length=1, max_length=20)

    @field_validator("sparsities")
    @classmethod
    def _levels(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is None:
            return v
        if any(not 0.0 < x < 1.0 for x in v):
            raise ValueError("each entry must be a fraction in (0, 1)")
        if list(v) != sorted(set(v)):
            raise ValueError("entries must be distinct and increasing")
        return v

    @model_validator(mode="after")
    def _one_of(self) -> TargetSpec:
        if (self.sparsity is None) == (self.sparsities is None):
            raise ValueError("give one of sparsity (budget mode) or sparsities (Pareto mode)")
        return self


class StrategySpec(_Strict):
    """``screen``: score every proposal on this fraction of the search split first and in
    full only those that could still improve the result (multi-fidelity screening,
    ``prunetune.search.screening``); works with any strategy; unset = off."""

    name: str = "random"
    options: dict[str, Any] = Field(default_factory=dict)
    screen: float | None = Field(default=None, gt=0.0, lt=1.0)

    @field_validator("name")
    @classmethod
    def _known_strategy(cls, v: str) -> str:
        from prunetune.search.registry import STRATEGIES

        if v not in STRATEGIES:
            raise ValueError(f"unknown strategy; allowed: {', '.join(sorted(STRATEGIES))}")
        return v


class RecoverySpec(_Strict):
    """Brief fine-tuning of every candidate before it is scored (0 steps = off).

    AdamW on the calibration split; pruned weights stay exactly zero. ``distill`` trains
    toward the dense model's outputs (``distill_loss`` "auto": logit KL for LMs and
    classifiers, embedding cosine for encoders). ``schedule``: ``whole`` model,
    ``layer-wise`` (one block at a time, top block first) or ``cyclic`` (rounds of
    ``steps`` until the held-out recovery loss stops improving, at most ``rounds``).
    ``l1``/``l2`` penalise the remaining weights of the pruned layers.
    """

    steps: int = Field(0, ge=0, le=1_000_000)
    distill: bool = False
    distill_loss: Literal["auto", "kl", "cosine", "mse"] = "auto"
    lr: float = Field(1e-4, gt=0.0, le=1.0)
    batch_size: int = Field(16, ge=1, le=4096)
    schedule: Literal["whole", "layer-wise", "cyclic"] = "whole"
    rounds: int = Field(3, ge=1, le=100)
    l1: float = Field(0.0, ge=0.0)
    l2: float = Field(0.0, ge=0.0)
    temperature: float = Field(1.0, gt=0.0, le=100.0)


class ResourcesSpec(_Strict):
    """``workers: 0`` evaluates in this process; ``threads`` caps torch's intra-op threads.

    With ``workers >= 1`` each Ray actor reserves ``cpus_per_worker`` CPUs and
    ``gpus_per_worker`` GPUs (fractions place several actors on one GPU); its torch uses
    ``threads`` threads (default: ``cpus_per_worker`` rounded down, at least 1). Actors run
    the model in ``dtype`` (bf16 and fp16 are meant for GPUs). An evaluation whose actor
    dies is retried on another actor up to ``max_retries`` times, then recorded as failed.
    """

    workers: int = Field(0, ge=0, le=1024)
    gpus_per_worker: float = Field(0.0, ge=0.0, le=8.0)
    cpus_per_worker: float = Field(1.0, gt=0.0, le=512.0)
    threads: int | None = Field(None, ge=1, le=512)
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    max_retries: int = Field(2, ge=0, le=100)


class ReportSpec(_Strict):
    """The job report (``front.html``).

    ``points``: at most this many front points are scored on the REPORT split: the best
    at each front level (``target.sparsities``), then those adding the most hypervolume;
    the rest keep their search-split scores and are marked unscored.
    ``baselines`` are drawn beside the front, scored on the REPORT split at the front
    levels (or at ``levels`` overall sparsities evenly over the bounds; budget mode: at
    the target); ``baselines: []`` turns them off.
    """

    baselines: tuple[Literal["uniform", "owl"], ...] = ("uniform", "owl")
    levels: int | None = Field(None, ge=1, le=20)
    points: int = Field(12, ge=1, le=10_000)


class SearchSpec(_Strict):
    name: str = Field("job", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    model: ModelSpec
    task: TaskSpec
    space: SpaceSpec = Field(default_factory=SpaceSpec)  # type: ignore[arg-type]
    objectives: ObjectivesSpec = Field(default_factory=ObjectivesSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)  # type: ignore[arg-type]
    target: TargetSpec | None = None
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    recovery: RecoverySpec = Field(default_factory=RecoverySpec)  # type: ignore[arg-type]
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)  # type: ignore[arg-type]
    seed: int = Field(0, ge=0, le=2**32 - 1)
    # None: the default report (uniform and OWL baselines); left out of the spec's hash.
    report: ReportSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _latency_repeats_default(cls, data: Any) -> Any:
        # A latency objective needs a measurement: 5 repeats unless the task says otherwise.
        objectives, task = (data.get("objectives"), data.get("task")) if isinstance(data, dict) else (None, None)
        if isinstance(objectives, dict) and objectives.get("latency") is not None \
                and isinstance(task, dict) and "latency_repeats" not in task:
            data = {**data, "task": {**task, "latency_repeats": LATENCY_REPEATS}}
        return data

    @model_validator(mode="after")
    def _latency_measured(self) -> SearchSpec:
        if self.objectives.latency is None:
            return self
        if self.task.latency_repeats == 0:
            raise SpecError("task.latency_repeats", 0, "objectives.latency needs latency measured: at least 1 "
                            f"(leave it out for {LATENCY_REPEATS}), or drop objectives.latency")
        if self.target is not None and self.target.sparsity is not None:
            raise SpecError("objectives.latency", self.objectives.latency,
                            "budget mode (target.sparsity) has quality as its only objective; drop "
                            "objectives.latency, or give target.sparsities for a front")
        return self

    @model_validator(mode="after")
    def _task_fits_model(self) -> SearchSpec:
        if self.model.source == "digits" and self.task.kind not in ("classification", "callable"):
            raise ValueError("model 'digits' needs task.kind 'classification' (or 'callable')")
        if self.model.source == "minilm" and self.task.kind not in ("embedding", "callable"):
            raise ValueError("model 'minilm' needs task.kind 'embedding' (or 'callable')")
        if self.target is None:
            return self
        if self.target.sparsity is not None and self.target.sparsity > self.space.max:
            raise ValueError(
                f"target.sparsity {self.target.sparsity} is above space.max {self.space.max}: "
                "no allocation within the per-layer bounds reaches it"
            )
        outside = [x for x in self.target.sparsities or () if not self.space.min < x <= self.space.max]
        if outside:
            raise ValueError(f"target.sparsities {outside} lie outside (space.min, space.max] = "
                             f"({self.space.min}, {self.space.max}]: no allocation within the bounds reaches them")
        return self

    # -- loading -----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any) -> SearchSpec:
        if not isinstance(data, dict):
            raise SpecError("<root>", data, "a spec is a mapping with keys model, task, ...")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise _spec_error(err, data) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpec:
        p = Path(path)
        if not p.is_file():
            raise SpecError("<file>", str(path), "no such file; give the path of a YAML spec")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise SpecError("<file>", str(path), f"not valid YAML ({err})") from None
        except UnicodeDecodeError as err:  # the offset, not the byte: errors never quote a file
            raise SpecError("<file>", str(path), f"not UTF-8 text (byte {err.start} is not UTF-8)") from None
        except OSError as err:
            raise SpecError("<file>", str(path), f"a readable YAML file ({err.strerror or type(err).__name__})") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def digest(self) -> str:
        """A stable hash of the spec's content (provenance, cache keys)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def mode(self) -> Literal["pareto", "budget"]:
        return "budget" if self.target is not None and self.target.sparsity is not None else "pareto"


def _spec_error(err: ValidationError, data: Any) -> SpecError:
    """Turn pydantic's first error into one line naming field, value and what is allowed."""
    first = err.errors()[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, SpecError):  # a check that names its own field
        return cause
    loc = [str(p) for p in first["loc"]]
    field = ".".join(loc) or "<root>"
    value = first.get("input")
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown field; check the spelling against the spec reference (docs/spec.md)"
    elif first["type"] == "missing":
        msg = "required field is missing"
        value = None
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    elif msg.startswith("Input should be"):
        msg = "allowed: " + msg[len("Input should be ") :]
    return SpecError(field, value, msg)
