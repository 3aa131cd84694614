"""A pool of long-lived Ray actors that evaluate candidates.

The controller's workbench is built once; what an actor needs from it (the model, the
task with its tokenised data and dense references, the layers, the space and the
importance scores) goes into Ray's object store once and every actor builds its
evaluator from that, so no actor loads the model from disk or computes scores. An actor
then evaluates candidate after candidate: one in flight per actor, dispatched as soon as
it is free.

When an actor dies mid-evaluation (killed, out of memory, its node gone) it is replaced
by a fresh one and its candidate goes back to the front of the queue, to be retried on
whichever actor is free next; after ``resources.max_retries`` such deaths the candidate
comes back as a failed outcome naming the reason. Every submitted number comes back
exactly once.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunetune.engine.workbench import Workbench, assemble
from prunetune.errors import PrunetuneError
from prunetune.evaluators.tasks import Split, Task
from prunetune.pruning.levels import LevelDatabase
from prunetune.pruning.structures import StructureUnit
from prunetune.search.executor import Executor, Outcome
from prunetune.spaces.space import PrunableLayer, SearchSpace
from prunetune.spec import SearchSpec
from prunetune.workers.base import evaluate_outcome
from prunetune.workers.ray_session import RaySession, import_ray, start_ray

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class WorkerError(PrunetuneError, RuntimeError):
    """The Ray workers cannot evaluate at all (they fail to start, or keep dying)."""


@dataclass(frozen=True)
class WorkerPayload:
    """What an actor evaluates with; shipped once through the object store."""

    spec: SearchSpec
    model: nn.Module
    task: Task
    layers: tuple[PrunableLayer, ...]
    space: SearchSpace
    scores: Mapping[str, torch.Tensor]
    units: tuple[StructureUnit, ...] = ()
    levels: LevelDatabase | None = None  # reconstruction: held once per actor


def payload_of(bench: Workbench) -> WorkerPayload:
    return WorkerPayload(
        spec=bench.spec,
        model=bench.loaded.model,
        task=bench.task,
        layers=tuple(bench.layers),
        space=bench.space,
        scores=bench.scores(),
        units=tuple(bench.units),
        levels=bench.levels,
    )


def _to(obj: Any, fn: Any) -> Any:
    """Apply ``fn`` to every tensor in a (nested) output: tensors, dicts, HF ModelOutputs,
    tuples and lists."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        items = {k: _to(v, fn) for k, v in obj.items()}
        try:
            return type(obj)(**items)
        except TypeError:
            return items
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(v, fn) for v in obj)
    return obj


def run_on(model: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Let a model that lives on ``device`` in ``dtype`` take the CPU float32 batches
    tasks hand it: hooks move inputs there (floating ones cast to ``dtype``) and bring
    outputs back as CPU float32. The module itself is unchanged, so layer names (which
    masks and size metrics look up) stay the same."""

    def to_input(t: torch.Tensor) -> torch.Tensor:
        return t.to(device, dtype) if t.is_floating_point() else t.to(device)

    def to_output(t: torch.Tensor) -> torch.Tensor:
        return t.float().cpu() if t.is_floating_point() else t.cpu()

    def pre(_: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return _to(args, to_input), _to(kwargs, to_input)

    def post(_: nn.Module, args: tuple, output: Any) -> Any:
        return _to(output, to_output)

    model.register_forward_pre_hook(pre, with_kwargs=True)
    model.register_forward_hook(post)


class EvalWorker:
    """The actor: builds its evaluator once, then evaluates candidates one by one."""

    def __init__(self, payload: WorkerPayload, threads: int, dtype: str) -> None:
        start = time.perf_counter()
        torch.set_num_threads(threads)
        self.device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        self.dtype = dtype
        model = payload.model.to(self.device, DTYPES[dtype])
        if self.device.type != "cpu" or dtype != "fp32":
            run_on(model, self.device, DTYPES[dtype])
        # Exactly as build_workbench assembles it. Score orders stay on the CPU, where
        # the pruner builds its top-k indices.
        _, self.evaluator = assemble(payload.spec, model, payload.task, payload.layers, payload.units,
                                     payload.space, payload.scores, payload.levels)
        self.build_seconds = time.perf_counter() - start
        self.threads = threads

    def evaluate(self, number: int, sparsities: Sequence[float], split: Split, fidelity: float) -> Outcome:
        return evaluate_outcome(self.evaluator, number, sparsities, split, fidelity)

    def memory(self) -> dict[str, float]:
        """Peak memory of this actor in bytes: resident set, and on a GPU what torch
        allocated and reserved at most."""
        import resource

        out = {"peak_rss_bytes": float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}
        if self.device.type == "cuda":
            out["cuda_max_allocated_bytes"] = float(torch.cuda.max_memory_allocated(self.device))
            out["cuda_max_reserved_bytes"] = float(torch.cuda.max_memory_reserved(self.device))
        return out

    def describe(self) -> dict[str, Any]:
        import ray

        return {
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "device": str(self.device),
            "dtype": self.dtype,
            "threads": self.threads,
            "build_seconds": self.build_seconds,
        }


@dataclass
class _Job:
    number: int
    sparsities: tuple[float, ...]
    split: Split
    fidelity: float
    deaths: list[str] = field(default_factory=list)


@dataclass
class _Slot:
    actor: Any
    job: _Job | None = None
    ref: Any = None
    started: float = 0.0


@dataclass(frozen=True)
class Running:
    """An evaluation in flight (for progress displays and fault-injection tests)."""

    number: int
    actor: Any
    seconds: float


def _reason(err: BaseException) -> str:
    """A Ray error as one line (its messages span many indented lines)."""
    text = re.sub(r"\s+", " ", str(err)).strip()
    return text if len(text) <= 400 else text[:397] + "..."


class RayExecutor(Executor):
    """Evaluates on ``workers`` Ray actors, each holding the model once.

    Args:
        bench: the job's workbench, built in this process; what the actors need is
            shipped from it once.
        workers: number of actors (also ``capacity``: one evaluation in flight each).
        address: a Ray cluster to join; None starts a local Ray owned by this executor
            (a Ray session already running in this process is reused instead).
        job_dir: the job's folder; a local Ray keeps its files in ``job_dir/ray``.

    Per-actor resources come from ``bench.spec.resources``: ``cpus_per_worker``,
    ``gpus_per_worker`` (fractional allowed), ``threads`` (default: the actor's CPUs),
    ``dtype`` and ``max_retries``.

    Raises:
        WorkerError: the cluster cannot hold the actors, or an actor fails to build its
            evaluator (that would fail on every actor alike).
    """

    def __init__(
        self, bench: Workbench, workers: int = 1, address: str | None = None, *,
        job_dir: str | Path | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1 for the Ray executor; got {workers}")
        res = bench.spec.resources
        self.capacity = workers
        self.max_retries = res.max_retries
        self.replaced = 0
        self.retried = 0
        self._ray = import_ray()
        self._session: RaySession | None = start_ray(
            address, num_cpus=workers * res.cpus_per_worker, job_dir=job_dir
        )
        try:
            self._check_resources(workers, res.cpus_per_worker, res.gpus_per_worker)
            threads = res.threads or max(1, int(res.cpus_per_worker))
            self._actor_cls = self._ray.remote(EvalWorker).options(
                num_cpus=res.cpus_per_worker, num_gpus=res.gpus_per_worker, max_restarts=0,
                max_concurrency=1,
            )
            self._payload = self._ray.put(payload_of(bench))
            self._args = (threads, res.dtype)
            self._slots = [_Slot(self._new_actor()) for _ in range(workers)]
        except BaseException:
            self.close()
            raise
        self._queue: deque[_Job] = deque()
        self._lock = threading.Lock()
        self._deaths_in_a_row = 0

    # -- setup -------------------------------------------------------------------------

    def _check_resources(self, workers: int, cpus: float, gpus: float) -> None:
        have = self._ray.cluster_resources()
        if gpus > 0 and have.get("GPU", 0.0) < gpus:
            raise WorkerError(
                f"resources.gpus_per_worker={gpus}: the Ray cluster has {have.get('GPU', 0.0):g} GPUs; "
                "set it to 0 for CPU actors or join a cluster with GPUs (--ray-address)"
            )
        if have.get("CPU", 0.0) < workers * cpus:
            raise WorkerError(
                f"resources.workers={workers} x cpus_per_worker={cpus:g} needs {workers * cpus:g} CPUs; "
                f"the Ray cluster has {have.get('CPU', 0.0):g}: lower one of them or add nodes"
            )

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self._payload, *self._args)

    @property
    def actors(self) -> list[Any]:
        """The actor handles, one per worker (replacements included, the dead not)."""
        return [s.actor for s in self._slots]

    def __enter__(self) -> RayExecutor:
        return self

    def wait_ready(self) -> list[dict[str, Any]]:
        """Block until every actor has built its evaluator; each actor's ``describe()``."""
        return list(self._ray.get([s.actor.describe.remote() for s in self._slots]))

    # -- the Executor contract ---------------------------------------------------------

    def submit(
        self, number: int, sparsities: Sequence[float], split: Split = "search", fidelity: float = 1.0
    ) -> None:
        self._queue.append(_Job(number, tuple(sparsities), split, fidelity))
        self._dispatch()

    @property
    def pending(self) -> int:
        return len(self._queue) + sum(1 for s in self._slots if s.job is not None)

    def wait(self) -> list[Outcome]:
        while True:
            self._dispatch()
            busy = {s.ref: s for s in self._slots if s.job is not None}
            if not busy:
                return []
            self._ray.wait(list(busy), num_returns=1)
            ready, _ = self._ray.wait(list(busy), num_returns=len(busy), timeout=0)
            outs = [o for ref in ready for o in self._collect(busy[ref])]
            if outs:
                self._dispatch()
                return outs

    def memory(self) -> list[dict[str, float]]:
        """Each actor's ``memory()`` (peak bytes, see ``EvalWorker.memory``)."""
        return list(self._ray.get([s.actor.memory.remote() for s in self._slots]))

    def running(self) -> list[Running]:
        """The evaluations in flight now, with seconds since each was dispatched."""
        now = time.perf_counter()
        with self._lock:
            return [Running(s.job.number, s.actor, now - s.started) for s in self._slots if s.job]

    def close(self) -> None:
        for slot in getattr(self, "_slots", []):
            self._ray.kill(slot.actor, no_restart=True)
        self._slots = []
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- internals ---------------------------------------------------------------------

    def _dispatch(self) -> None:
        for slot in self._slots:
            if not self._queue:
                return
            if slot.job is None:
                job = self._queue.popleft()
                with self._lock:
                    slot.job, slot.started = job, time.perf_counter()
                    slot.ref = slot.actor.evaluate.remote(job.number, job.sparsities, job.split, job.fidelity)

    def _collect(self, slot: _Slot) -> list[Outcome]:
        job, ref = slot.job, slot.ref
        assert job is not None  # only busy slots are collected
        with self._lock:
            slot.job = slot.ref = None
        exc = self._ray.exceptions
        try:
            out = self._ray.get(ref)
        except exc.RayTaskError as err:  # the actor method raised outside the evaluation
            return [Outcome(job.number, error=f"worker error: {_reason(err.cause or err)}")]
        except exc.RayError as err:  # the actor (or its node) is gone
            return self._lost(slot, job, err)
        self._deaths_in_a_row = 0
        return [out]

    def _lost(self, slot: _Slot, job: _Job, err: BaseException) -> list[Outcome]:
        if getattr(err, "actor_init_failed", False):
            raise WorkerError(f"a Ray worker could not build its evaluator: {_reason(err)}") from err
        self._deaths_in_a_row += 1
        if self._deaths_in_a_row > len(self._slots) * (self.max_retries + 1) + 1:
            raise WorkerError(
                f"Ray workers died {self._deaths_in_a_row} times in a row without finishing an "
                f"evaluation; last: {_reason(err)}"
            ) from err
        self._ray.kill(slot.actor, no_restart=True)
        with self._lock:
            slot.actor = self._new_actor()
        self.replaced += 1
        job.deaths.append(_reason(err))
        log.warning("worker died evaluating trial %d (%d/%d): %s", job.number,
                    len(job.deaths), self.max_retries + 1, job.deaths[-1])
        if len(job.deaths) > self.max_retries:
            return [Outcome(job.number, error=(
                f"worker died {len(job.deaths)} times evaluating it "
                f"(resources.max_retries={self.max_retries}); last: {job.deaths[-1]}"
            ))]
        self.retried += 1
        self._queue.appendleft(job)
        return []
