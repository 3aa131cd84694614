"""Nightly (or any cron) searches: ``prunetune scheduler`` and what a scheduled job does.

A schedule is a spec, a 5-field cron expression read in an IANA time zone, and three
choices:

- ``catch_up``, what to do with windows that passed while no scheduler ran:
  ``once`` (default: one run, for the latest missed window), ``all`` (one run per missed
  window, at most :data:`MAX_CATCH_UP`), ``skip`` (none; a window counts as missed
  once it is more than ``grace_s`` old).
- ``warm_start``: seed the job's strategy with the previous run's front (its per-layer
  allocations are evaluated first; resolved when the job starts, so a run that finished
  meanwhile is used).
- ``reseed``: give each run's search its own seed (``strategy.options.seed``, derived
  from the spec's seed and the fire time), so nights explore differently instead of
  repeating one search; the model, data splits and REPORT split keep the spec's seed.

Each due window is enqueued exactly once, also with several schedulers running: see
:mod:`prunetune.store.schedules` for the database-level guarantee. A scheduled job's
front is compared with the previous run's on the search split (hypervolume, fixed
reference point: both fronts were selected on it, and it is the same data for both);
REPORT-split hypervolumes are stored beside the verdict where every point has a REPORT
score, and the comparison is stored with the job (``report.fronts.compare_fronts``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prunetune.errors import SpecError
from prunetune.store.db import StoreError, upgrade
from prunetune.store.models import utcnow
from prunetune.store.schedules import CATCH_UP_POLICIES, Firing, ScheduleInfo, ScheduleStore

log = logging.getLogger(__name__)

MAX_CATCH_UP = 100


def check_cron(cron: str, tz: str) -> ZoneInfo:
    """Validate a cron expression and a zone name; SpecError names the bad one."""
    from croniter import croniter

    if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise SpecError("cron", cron, "a 5-field cron expression, e.g. '0 2 * * *' (02:00 every day)")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise SpecError("timezone", tz, "an IANA time zone name, e.g. 'UTC' or 'Europe/Berlin'") from None


def next_fire(cron: str, tz: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (aware), in UTC."""
    from croniter import croniter

    local = after.astimezone(check_cron(cron, tz))
    nxt = croniter(cron, local).get_next(datetime)
    return nxt.astimezone(timezone.utc)  # type: ignore[no-any-return]


def fire_times(cron: str, tz: str, first: datetime, now: datetime, limit: int) -> tuple[list[datetime], int]:
    """The latest ``limit`` fire times in ``[first, now]`` (``first`` is a fire time), and
    how many there are in all."""
    out: list[datetime] = []
    count = 0
    t = first
    while t <= now:
        out.append(t)
        count += 1
        if len(out) > limit:
            out.pop(0)
        t = next_fire(cron, tz, t)
    return out, count


def run_seed(seed: int, fire_time: datetime) -> int:
    """A run's seed: stable for a (spec seed, fire time), different between nights."""
    digest = hashlib.sha256(f"{seed}:{fire_time.astimezone(timezone.utc).isoformat()}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def create_schedule(
    db: str, spec: dict[str, Any], *, cron: str, name: str, tz: str = "UTC", catch_up: str = "once",
    warm_start: bool = True, reseed: bool = True, owner: str = "local", now: datetime | None = None,
) -> ScheduleInfo:
    """Register a validated spec (``SearchSpec.to_dict()``); first run at the next window.

    Raises:
        SpecError: bad cron, zone or catch-up policy.
        ConflictError: the name is taken.
    """
    check_cron(cron, tz)
    if catch_up not in CATCH_UP_POLICIES:
        raise SpecError("catch_up", catch_up, f"one of {', '.join(CATCH_UP_POLICIES)}")
    if not name or len(name) > 100:
        raise SpecError("name", name, "1 to 100 characters")
    first = next_fire(cron, tz, now or utcnow())
    return ScheduleStore(db).add(name=name, cron=cron, timezone=tz, spec=spec, next_run_at=first,
                                 catch_up=catch_up, warm_start=warm_start, reseed=reseed, owner=owner)


def resume_schedule(db: str, key: int | str, now: datetime | None = None) -> ScheduleInfo:
    store = ScheduleStore(db)
    info = store.get(key)
    return store.set_enabled(key, True, next_fire(info.cron, info.timezone, now or utcnow()))


class Scheduler:
    """Enqueues due schedules' runs; any number may run against one database."""

    def __init__(self, db: str, *, poll_s: float = 5.0, grace_s: float = 60.0,
                 scheduler_id: str | None = None, migrate: bool = True) -> None:
        if poll_s <= 0 or grace_s < 0:
            raise ValueError(f"poll_s must be > 0 and grace_s >= 0; got {poll_s} and {grace_s}")
        if migrate:
            upgrade(db)
        self.db = db
        self.store = ScheduleStore(db)
        self.poll_s, self.grace_s = poll_s, grace_s
        self.id = scheduler_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def plan(self, schedule: ScheduleInfo, now: datetime) -> tuple[list[datetime], int, datetime]:
        """(fire times to run, missed windows folded or skipped, next run) for a due schedule."""
        if schedule.next_run_at is None:
            return [], 0, next_fire(schedule.cron, schedule.timezone, now)
        due, count = fire_times(schedule.cron, schedule.timezone, schedule.next_run_at, now, MAX_CATCH_UP)
        if not due:  # not due after all (clock skew between schedulers)
            return [], 0, schedule.next_run_at
        following = next_fire(schedule.cron, schedule.timezone, due[-1])
        if schedule.catch_up == "all":  # the latest MAX_CATCH_UP windows; older ones are missed
            return due, count - len(due), following
        if schedule.catch_up == "skip":
            fresh = [t for t in due if (now - t).total_seconds() <= self.grace_s][-1:]
            return fresh, count - len(fresh), following
        return due[-1:], count - 1, following

    def tick(self, now: datetime | None = None) -> list[Firing]:
        """Fire every due schedule once; returns the jobs this scheduler enqueued."""
        now = now or utcnow()
        fired: list[Firing] = []
        for schedule in self.store.due(now):
            runs, missed, following = self.plan(schedule, now)
            got = self.store.fire(schedule, runs, following, missed=missed, scheduler=self.id,
                                  job_for=lambda ft, s=schedule: _job_for(s, ft))  # type: ignore[misc]
            for f in got:
                delay = (now - f.fire_time).total_seconds()
                log.info("schedule %r: fire time %s -> job %d (%.1f s late%s)", schedule.name,
                         f.fire_time.isoformat(), f.job_id, delay,
                         f", {f.missed} missed window(s) folded in" if f.missed else "")
            if not got and runs:
                log.debug("schedule %r was fired by another scheduler", schedule.name)
            fired += got
        return fired

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except StoreError as err:  # a database outage: retry at the next poll
                log.warning("scheduler tick failed, retrying: %s", err)
            self._stop.wait(self.poll_s)


def _job_for(schedule: ScheduleInfo, fire_time: datetime) -> tuple[str, dict[str, Any], int]:
    spec = dict(schedule.spec)
    if schedule.reseed:
        # Only the search's seed: the model, data splits and REPORT split stay those of
        # the spec's seed, so nights are comparable.
        strategy = dict(spec.get("strategy", {}))
        options = dict(strategy.get("options", {}))
        options["seed"] = run_seed(int(spec.get("seed", 0)), fire_time)
        spec["strategy"] = {**strategy, "options": options}
    local = fire_time.astimezone(ZoneInfo(schedule.timezone))
    name = f"{schedule.name[:80]}@{local:%Y%m%dT%H%M}"
    trials = int(spec.get("budget", {}).get("trials", 64))
    return name, spec, trials


# -- what a scheduled job does around its search (called by the job runner) -------------


def warm_start_for(db: str, job_id: int) -> tuple[list[dict[str, float]], int | None]:
    """The previous run's front allocations (layer -> sparsity) when the job's schedule
    warm-starts, and that run's job id; ([], None) otherwise."""
    from prunetune.report.fronts import load_front
    from prunetune.store.studies import close_storage, open_storage

    prev = ScheduleStore(db).previous_run(job_id)
    if prev is None or not prev.warm_start:
        return [], None
    storage = open_storage(db)
    try:
        front = load_front(storage, prev.study_name)
    except KeyError:
        return [], None
    finally:
        close_storage(storage)
    return front.allocations(), prev.job_id


def record_comparison(db: str, job_id: int, study_name: str, warm_from: int | None) -> dict[str, Any] | None:
    """Compare a finished scheduled job's front with the previous run's and store it."""
    from prunetune.report.fronts import compare_fronts, load_front
    from prunetune.store.studies import close_storage, open_storage

    store = ScheduleStore(db)
    prev = store.previous_run(job_id)
    if prev is None:
        return None
    storage = open_storage(db)
    try:
        current, previous = load_front(storage, study_name), load_front(storage, prev.study_name)
    except KeyError:
        return None
    finally:
        close_storage(storage)
    if not current.points or not previous.points:
        return None
    comparison = compare_fronts(current, previous)
    comparison.update(previous_job_id=prev.job_id, warm_started=warm_from == prev.job_id)
    saved = store.save_comparison(job_id, comparison)
    log.info("job %d vs job %d: %s (hypervolume %.6g vs %.6g on the %s split)", job_id, prev.job_id,
             saved["verdict"], saved["hypervolume"], saved["previous_hypervolume"], saved["split"])
    return saved
