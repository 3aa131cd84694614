"""Executors run evaluations; the controller only submits and collects.

The contract: ``submit`` hands over a numbered allocation and returns at once (it may
queue); ``wait`` blocks until at least one submitted evaluation has finished and returns
every finished one. Each submitted number comes back exactly once, as metrics or as an
error string; an executor never raises for a failed evaluation. Implementations live in
:mod:`prunetune.workers` (in process, a Ray actor pool).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prunetune.records import Split


@dataclass(frozen=True)
class Outcome:
    """One finished evaluation: ``metrics`` when it succeeded, else ``error``."""

    number: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


class Executor(ABC):
    #: how many evaluations may be in flight at once (the controller keeps it full)
    capacity: int = 1

    @abstractmethod
    def submit(
        self, number: int, sparsities: Sequence[float], split: Split = "search", fidelity: float = 1.0
    ) -> None:
        """Queue an evaluation on ``split`` (``fidelity``: fraction of it to use)."""

    @abstractmethod
    def wait(self) -> list[Outcome]: ...

    @property
    @abstractmethod
    def pending(self) -> int: ...

    def close(self) -> None:  # noqa: B027 - nothing to release for in-process
        """Release workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
