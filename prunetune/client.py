"""The Python client: the same calls over HTTP or embedded in this process.

```python
client = Client("http://127.0.0.1:8000", token=...)   # or Client.embedded("sqlite:///prunetune.db")
job = client.submit(SearchSpec.from_yaml("examples/digits.yaml"))
job.wait(progress=True)
for point in job.pareto_front():
    print(point.trial, point.sparsity, point.quality)
job.export(point.trial, "pruned/")
```

An embedded client talks to the database directly. Its ``wait`` runs a still-queued job
in this process (claiming it like a job runner would), so no ``prunetune runner`` process is
needed; a job another runner already holds is waited for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunetune.errors import PrunetuneError, SpecError

TERMINAL = ("succeeded", "failed", "cancelled")


class ClientError(PrunetuneError, RuntimeError):
    """The service rejected a call. ``status`` is the HTTP status (0 embedded);
    ``field``/``value``/``allowed`` name what was wrong, when the error is about a field."""

    def __init__(self, message: str, status: int = 0, field: str | None = None,
                 value: Any = None, allowed: str | None = None) -> None:
        super().__init__(message)
        self.status, self.field, self.value, self.allowed = status, field, value, allowed


class AuthError(ClientError):
    """No token, or the token was refused (HTTP 401)."""


class UnreachableError(ClientError):
    """The service could not be reached (refused, timed out, no such host)."""


@dataclass(frozen=True)
class FrontPoint:
    trial: int
    quality: float
    nonzero_params: float | None
    sparsity: float | None
    quality_name: str = "quality"
    metrics: Mapping[str, float] = field(default_factory=dict)
    report: Mapping[str, float] = field(default_factory=dict)
    allocation: Mapping[str, float] = field(default_factory=dict)
    latency_seconds: float | None = None  # measured, when task.latency_repeats (or a latency objective)


@dataclass(frozen=True)
class JobStatus:
    id: int
    name: str
    state: str
    trials_done: int
    trials_total: int
    best_trial: int | None
    best_quality: float | None
    error: str | None
    study_name: str
    attempts: int
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> JobStatus:
        return cls(id=d["id"], name=d["name"], state=d["state"], trials_done=d["trials_done"],
                   trials_total=d["trials_total"], best_trial=d.get("best_trial"),
                   best_quality=d.get("best_quality"), error=d.get("error"),
                   study_name=d["study_name"], attempts=d.get("attempts", 0), raw=dict(d))


class Job:
    """A handle on one job: ``status``, ``wait``, ``pareto_front``, ``trials``, ``cancel``, ``export``."""

    def __init__(self, client: Client, job_id: int) -> None:
        self.client, self.id = client, job_id

    def __repr__(self) -> str:
        return f"Job({self.id})"

    def status(self) -> JobStatus:
        return self.client.get(self.id)

    def wait(self, progress: bool = False, poll_s: float = 0.5) -> JobStatus:
        return self.client.wait(self.id, progress=progress, poll_s=poll_s)

    def pareto_front(self) -> list[FrontPoint]:
        return self.client.pareto_front(self.id)

    def trials(self) -> list[dict[str, Any]]:
        return self.client.trials(self.id)

    def cancel(self) -> JobStatus:
        return self.client.cancel(self.id)

    def export(self, trial: int, out: str | Path, *, overwrite: bool = False, format: str = "dense") -> dict[str, Any]:
        return self.client.export(self.id, trial, out, overwrite=overwrite, format=format)

    def comparison(self) -> dict[str, Any] | None:
        return self.client.comparison(self.id)

    def report(self) -> str:
        return self.client.report(self.id)


def _spec_payload(spec: Any) -> dict[str, Any]:
    from prunetune.spec import SearchSpec

    if isinstance(spec, SearchSpec):
        return spec.to_dict()
    if isinstance(spec, (str, Path)):
        return SearchSpec.from_yaml(spec).to_dict()
    if isinstance(spec, Mapping):
        return dict(spec)
    raise TypeError(f"spec must be a SearchSpec, a mapping or a YAML path; got {type(spec).__name__}")


@dataclass(frozen=True)
class _Op:
    """One operation of the service, named as its :class:`~prunetune.service.jobs.JobService`
    method and called with that method's argument names: the embedded transport calls the
    method, the HTTP transport sends ``method path`` with the arguments placed as below."""

    method: str
    path: str  # formatted with the arguments, e.g. "/jobs/{job_id}"
    body: Mapping[str, str] = field(default_factory=dict)  # JSON key -> argument
    query: tuple[str, ...] = ()  # arguments sent as query parameters, when not None
    headers: Mapping[str, str] = field(default_factory=dict)  # header -> argument, when not None
    owner: bool = False  # embedded: the service is told the client's owner
    retry: bool = False  # HTTP: a lost connection is retried when an Idempotency-Key was sent
    text: bool = False  # HTTP: the answer is text (HTML), not JSON


def _same(*names: str) -> dict[str, str]:
    return {name: name for name in names}


_SCHEDULE_OPTIONS = ("cron", "name", "timezone", "catch_up", "warm_start", "reseed")

# Every operation, once; adding one here serves both transports.
_OPERATIONS: dict[str, _Op] = {
    "submit": _Op("POST", "/jobs", body={"spec": "spec_data"}, headers={"Idempotency-Key": "idempotency_key"},
                  owner=True, retry=True),
    "get": _Op("GET", "/jobs/{job_id}"),
    "list_jobs": _Op("GET", "/jobs", query=("state",)),
    "front": _Op("GET", "/jobs/{job_id}/front"),
    "trials": _Op("GET", "/jobs/{job_id}/trials"),
    "cancel": _Op("POST", "/jobs/{job_id}/cancel"),
    "export": _Op("POST", "/jobs/{job_id}/export", body=_same("trial", "out", "overwrite", "format")),
    "comparison": _Op("GET", "/jobs/{job_id}/comparison"),
    "report": _Op("GET", "/jobs/{job_id}/report", text=True),
    "schedule": _Op("POST", "/schedules", body={"spec": "spec_data", **_same(*_SCHEDULE_OPTIONS)}, owner=True),
    "schedules": _Op("GET", "/schedules"),
    "schedule_runs": _Op("GET", "/schedules/{key}/runs"),
    "set_schedule_enabled": _Op("PATCH", "/schedules/{key}", body=_same("enabled")),
}


class _Http:
    """The operations as requests to a prunetune server."""

    retries = 2  # extra attempts of a retryable operation after a lost connection

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        import httpx

        try:
            parsed = httpx.URL(url)
            ok = parsed.scheme in ("http", "https") and bool(parsed.host)
        except (httpx.InvalidURL, TypeError, ValueError):
            ok = False
        if not ok:
            raise ClientError(f"service URL: got {url!r}; an http(s) URL such as http://127.0.0.1:8000",
                              field="url", value=url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def call(self, operation: str, /, **args: Any) -> Any:
        """Send the operation; a retryable one whose connection was lost or timed out is
        sent again with the same Idempotency-Key, so the service acts on it once."""
        import httpx

        op = _OPERATIONS[operation]
        path = op.path.format(**args)
        request = {
            "json": {key: args[arg] for key, arg in op.body.items()} if op.body else None,
            "params": {arg: args[arg] for arg in op.query if args[arg] is not None},
            "headers": {key: args[arg] for key, arg in op.headers.items() if args[arg] is not None},
        }
        retries = self.retries if op.retry and request["headers"] else 0
        for attempt in range(retries + 1):
            try:
                return self._send(op, path, request)
            except UnreachableError as err:
                if attempt == retries or not isinstance(err.__cause__, httpx.TransportError):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, op: _Op, path: str, request: dict[str, Any]) -> Any:
        import httpx

        try:
            resp = self.http.request(op.method, path, **request)
        except httpx.HTTPError as exc:  # refused, timed out, no such host, a broken answer
            raise UnreachableError(f"cannot reach the service at {self.url}: {type(exc).__name__}"
                                   + (f": {exc}" if str(exc) else ""), field="url", value=self.url) from exc
        if resp.status_code < 400:
            if op.text:
                return resp.text
            try:
                return resp.json()
            except ValueError:
                raise ClientError(f"the service at {self.url} answered {op.method} {path} with something "
                                  f"that is not JSON (HTTP {resp.status_code}); is it a prunetune server?",
                                  resp.status_code, "url", self.url) from None
        try:
            err = resp.json().get("error", {})
            if not isinstance(err, dict):
                raise ValueError
        except (ValueError, AttributeError):
            err = {"message": f"HTTP {resp.status_code} from {self.url}: {resp.text[:200]}"}
        cls = AuthError if resp.status_code == 401 else ClientError
        raise cls(err.get("message", f"HTTP {resp.status_code}"), resp.status_code,
                  err.get("field"), err.get("value"), err.get("allowed"))

    def close(self) -> None:
        self.http.close()


class _Embedded:
    """The operations as calls on a :class:`~prunetune.service.jobs.JobService` in this process."""

    def __init__(self, db: str, owner: str) -> None:
        from prunetune.service.jobs import JobService

        self.service = JobService(db)
        self.db, self.owner = db, owner

    def call(self, operation: str, /, **args: Any) -> Any:
        from prunetune.store.db import ConflictError, NotFoundError

        if _OPERATIONS[operation].owner:
            args["owner"] = self.owner
        try:
            return getattr(self.service, operation)(**args)
        except NotFoundError as err:
            raise ClientError(str(err), 404, "id", err.key) from err
        except ConflictError as err:
            raise ClientError(str(err), 409, err.field, err.value, err.allowed) from err

    def run_here(self, job_id: int, on_progress: Callable[[int, int], None]) -> None:
        from prunetune.service.job_runner import JobRunner

        runner = JobRunner(self.db, migrate=False)
        job = runner.store.claim(runner.id, runner.lease_s, job_id=job_id)
        if job is not None:
            runner.run_claimed(job, on_progress=on_progress)

    def close(self) -> None:
        pass


class Client:
    """Submit and follow search jobs on a prunetune service (or a database, embedded)."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 300.0) -> None:
        """``token`` defaults to the ``PRUNETUNE_TOKEN`` environment variable."""
        token = token if token is not None else os.environ.get("PRUNETUNE_TOKEN")
        self._backend: _Http | _Embedded = _Http(url, token, timeout)
        self.url = url

    @classmethod
    def embedded(cls, db_url: str = "sqlite:///prunetune.db", owner: str = "local") -> Client:
        """A client on the database itself (upgraded to the newest schema), no server."""
        self = cls.__new__(cls)
        self._backend = _Embedded(db_url, owner)
        self.url = db_url
        return self

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._backend.close()

    def submit(self, spec: Any, *, idempotency_key: str | None = None) -> Job:
        """Queue a job. ``spec``: a SearchSpec, a mapping or a YAML path.

        ``idempotency_key`` (default: a new random one per call) is sent as the
        ``Idempotency-Key`` header; a submission that timed out or lost its connection is
        retried with it, and the service answers a retry with the first job, so a job is
        queued once. Pass your own key to make retries across processes safe too.

        Raises:
            SpecError: the spec was rejected (``err.field`` names the field, e.g. ``spec.task.kind``).
            AuthError: no or a bad token.
            ClientError: the key was used before for another spec (409).
        """
        import uuid

        key = idempotency_key if idempotency_key is not None else uuid.uuid4().hex
        try:
            return Job(self, int(self._backend.call("submit", spec_data=_spec_payload(spec), idempotency_key=key)["id"]))
        except ClientError as err:
            if err.status == 422 and err.field:
                raise SpecError(err.field, err.value, err.allowed or str(err)) from None
            raise

    def job(self, job_id: int) -> Job:
        return Job(self, job_id)

    def get(self, job_id: int) -> JobStatus:
        return JobStatus.of(self._backend.call("get", job_id=job_id))

    def wait(self, job_id: int, progress: bool = False, poll_s: float = 0.5) -> JobStatus:
        """Block until the job has finished (succeeded, failed or cancelled)."""
        bar = _Bar(job_id) if progress else None
        try:
            status = self.get(job_id)
            if isinstance(self._backend, _Embedded) and status.state == "queued":
                self._backend.run_here(job_id, bar.update if bar else (lambda d, t: None))
            while True:
                status = self.get(job_id)
                if bar:
                    bar.update(status.trials_done, status.trials_total, status.state)
                if status.finished:
                    return status
                time.sleep(poll_s)
        finally:
            if bar:
                bar.close()

    def pareto_front(self, job_id: int) -> list[FrontPoint]:
        return [FrontPoint(**p) for p in self._backend.call("front", job_id=job_id)]

    def trials(self, job_id: int) -> list[dict[str, Any]]:
        return list(self._backend.call("trials", job_id=job_id))

    def cancel(self, job_id: int) -> JobStatus:
        return JobStatus.of(self._backend.call("cancel", job_id=job_id))

    def export(self, job_id: int, trial: int, out: str | Path, *, overwrite: bool = False,
               format: str = "dense") -> dict[str, Any]:
        """Write a completed trial's pruned model to ``out`` (a folder where the service
        runs): a new or empty folder, or with ``overwrite`` one whose files are replaced
        (atomically). ``format``: ``dense`` or ``compressed-tensors`` (unstructured/N:M
        weights). Raises ClientError (409) on a non-empty folder without it, or a format
        the job cannot be written in."""
        return dict(self._backend.call("export", job_id=job_id, trial=trial, out=str(out), overwrite=overwrite,
                                        format=format))

    def schedule(self, spec: Any, cron: str, name: str, *, timezone: str = "UTC", catch_up: str = "once",
                 warm_start: bool = True, reseed: bool = True) -> dict[str, Any]:
        """Register a recurring search (the ``prunetune scheduler`` process enqueues it).

        ``cron`` is read in ``timezone`` (IANA name). ``catch_up``: after downtime run the
        missed windows ``once`` (one run), ``all`` (one each) or ``skip`` them.
        ``warm_start``: seed each run's strategy with the previous run's front.
        ``reseed``: a different seed each run. See :mod:`prunetune.service.scheduler`.

        Raises:
            SpecError: a bad spec, cron expression, zone or policy (``err.field`` names it).
        """
        try:
            return dict(self._backend.call("schedule", spec_data=_spec_payload(spec), cron=cron, name=name,
                                           timezone=timezone, catch_up=catch_up, warm_start=warm_start,
                                           reseed=reseed))
        except ClientError as err:
            if err.status == 422 and err.field:
                raise SpecError(err.field, err.value, err.allowed or str(err)) from None
            raise

    def schedules(self) -> list[dict[str, Any]]:
        return list(self._backend.call("schedules"))

    def schedule_runs(self, schedule: int | str) -> list[dict[str, Any]]:
        """A schedule's firings (fire time, job id, who enqueued it), oldest first."""
        return list(self._backend.call("schedule_runs", key=schedule))

    def pause_schedule(self, schedule: int | str) -> dict[str, Any]:
        return dict(self._backend.call("set_schedule_enabled", key=schedule, enabled=False))

    def resume_schedule(self, schedule: int | str) -> dict[str, Any]:
        """Resume at the next window (windows paused over are not run)."""
        return dict(self._backend.call("set_schedule_enabled", key=schedule, enabled=True))

    def comparison(self, job_id: int) -> dict[str, Any] | None:
        """A scheduled job's front against the previous run's: verdict (improved, equal,
        regressed), hypervolumes, delta, split, reference point; None if not compared."""
        got = self._backend.call("comparison", job_id=job_id)
        return None if got is None else dict(got)

    def report(self, job_id: int) -> str:
        """The job report (front.html) as an HTML string."""
        return str(self._backend.call("report", job_id=job_id))

    # Last in the class: below this line `list` would name the method, not the builtin.
    def list(self, state: str | None = None) -> list[JobStatus]:
        """Jobs, newest first (``state``: queued, running, succeeded, failed, cancelled)."""
        return [JobStatus.of(d) for d in self._backend.call("list_jobs", state=state)]


class _Bar:
    """A rich progress bar on stderr."""

    def __init__(self, job_id: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(TextColumn(f"job {job_id}" + " {task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True))
        self.progress.start()
        self.task = self.progress.add_task("", total=None)

    def update(self, done: int, total: int, state: str = "running") -> None:
        self.progress.update(self.task, completed=done, total=total or None, description=state)

    def close(self) -> None:
        self.progress.stop()
