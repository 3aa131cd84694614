"""Schedules: cron in a time zone, each window enqueued exactly once by racing schedulers
(real PostgreSQL and SQLite), catch-up policies after downtime, and a scheduled job
warm-started from the previous run's front with its comparison stored.

Schedulers are driven with explicit ``now`` values, so a day of downtime takes no time.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import optuna
import pytest
import yaml
from helpers import digits_spec_dict
from sqlalchemy import func, select
from typer.testing import CliRunner

from prunetune import Client
from prunetune.client import ClientError
from prunetune.errors import SpecError
from prunetune.service.job_runner import JobRunner
from prunetune.service.scheduler import Scheduler, create_schedule, next_fire
from prunetune.spec import SearchSpec
from prunetune.store.db import session_scope, upgrade
from prunetune.store.models import Job, ScheduleRun
from prunetune.store.schedules import ScheduleStore

UTC = timezone.utc
T0 = datetime(2026, 11, 1, 0, 0, 30, tzinfo=UTC)


def spec(**overrides: object) -> dict:
    return SearchSpec.from_dict(digits_spec_dict(**overrides)).to_dict()


def jobs_of(db: str, schedule_id: int) -> list[Job]:
    with session_scope(db) as s:
        return list(s.scalars(select(Job).where(Job.schedule_id == schedule_id).order_by(Job.id)))


def test_cron_is_read_in_the_schedules_time_zone(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    berlin = create_schedule(sqlite_url, spec(), cron="0 2 * * *", name="berlin", tz="Europe/Berlin", now=summer)
    assert berlin.next_run_at == datetime(2026, 7, 2, 0, 0, tzinfo=UTC)  # 02:00 CEST
    winter = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    ny = create_schedule(sqlite_url, spec(), cron="0 2 * * *", name="ny", tz="America/New_York", now=winter)
    assert ny.next_run_at == datetime(2026, 1, 11, 7, 0, tzinfo=UTC)  # 02:00 EST
    # Over the autumn DST change Berlin's 02:00 moves from 00:00 to 01:00 UTC.
    assert next_fire("0 2 * * *", "Europe/Berlin", datetime(2026, 10, 25, 12, 0, tzinfo=UTC)) == datetime(
        2026, 10, 26, 1, 0, tzinfo=UTC)


def test_bad_schedules_are_refused_naming_the_field(sqlite_url: str) -> None:
    client = Client.embedded(sqlite_url)
    for kwargs, field in [({"cron": "61 * * * *"}, "cron"), ({"cron": "* * *"}, "cron"),
                          ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "timezone"),
                          ({"cron": "0 2 * * *", "catch_up": "twice"}, "catch_up")]:
        with pytest.raises(SpecError) as err:
            client.schedule(spec(), name="bad", **kwargs)  # type: ignore[arg-type]
        assert err.value.field == field
    assert client.schedules() == []
    client.schedule(spec(), cron="0 2 * * *", name="nightly")
    with pytest.raises(ClientError) as dup:
        client.schedule(spec(), cron="0 3 * * *", name="nightly")
    assert dup.value.status == 409 and dup.value.field == "name"


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_two_racing_schedulers_enqueue_each_window_exactly_once(
    dialect: str, request: pytest.FixtureRequest
) -> None:
    db = request.getfixturevalue("postgres_url" if dialect == "postgres" else "sqlite_url")
    upgrade(db)
    ids = [create_schedule(db, spec(), cron="* * * * *", name=f"s{i}", now=T0).id for i in range(12)]
    schedulers = [Scheduler(db, scheduler_id=f"sched-{k}", migrate=False) for k in range(2)]
    rounds = 5
    fired: list[list] = [[], []]
    barrier = threading.Barrier(2)

    def run(k: int) -> None:
        for r in range(rounds):
            barrier.wait()
            fired[k] += schedulers[k].tick(now=T0 + timedelta(minutes=r + 1, seconds=5))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    every = fired[0] + fired[1]
    assert len(every) == len(ids) * rounds
    assert Counter((f.schedule_id, f.fire_time) for f in every).most_common(1)[0][1] == 1
    with session_scope(db) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == len(ids) * rounds
        runs = s.execute(select(ScheduleRun.schedule_id, ScheduleRun.fire_time)).all()
    assert len(runs) == len(set(runs)) == len(ids) * rounds
    expected = {T0.replace(second=0) + timedelta(minutes=r + 1) for r in range(rounds)}
    for sid in ids:
        assert {ft for s_id, ft in runs if s_id == sid} == expected
    # A stale read (both saw the same next_run_at) cannot fire a window twice.
    store = ScheduleStore(db)
    stale = store.get(ids[0])
    now = T0 + timedelta(minutes=rounds + 1, seconds=5)
    first = schedulers[0].tick(now=now)
    assert store.fire(stale, [stale.next_run_at], now, missed=0, scheduler="late",  # type: ignore[list-item]
                      job_for=lambda ft: ("x", spec(), 8)) == []
    assert len([f for f in first if f.schedule_id == ids[0]]) == 1


def test_catch_up_policies_after_a_day_of_downtime(postgres_url: str) -> None:
    upgrade(postgres_url)
    every_15 = "*/15 * * * *"  # 96 windows a day
    made = {p: create_schedule(postgres_url, spec(), cron=every_15, name=p, catch_up=p, now=T0)
            for p in ("once", "all", "skip")}
    scheduler = Scheduler(postgres_url, grace_s=60, migrate=False)
    back = T0 + timedelta(days=1, minutes=5)  # the last window (00:00) is 5.5 minutes old
    fired = scheduler.tick(now=back)
    by = Counter(f.schedule_id for f in fired)
    assert by[made["once"].id] == 1
    assert by[made["all"].id] == 96
    assert by[made["skip"].id] == 0
    once = next(f for f in fired if f.schedule_id == made["once"].id)
    assert once.fire_time == datetime(2026, 11, 2, 0, 0, tzinfo=UTC) and once.missed == 95
    store = ScheduleStore(postgres_url)
    for p in made:
        assert store.get(p).next_run_at == datetime(2026, 11, 2, 0, 15, tzinfo=UTC)
    assert scheduler.tick(now=back) == []  # nothing more until the next window
    on_time = scheduler.tick(now=datetime(2026, 11, 2, 0, 15, 10, tzinfo=UTC))
    assert sorted(f.schedule_id for f in on_time) == sorted(s.id for s in made.values())


def test_each_run_gets_its_own_search_seed_unless_reseed_is_off(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    a = create_schedule(sqlite_url, spec(seed=3), cron="0 * * * *", name="a", now=T0)
    b = create_schedule(sqlite_url, spec(seed=3), cron="0 * * * *", name="b", reseed=False, now=T0)
    scheduler = Scheduler(sqlite_url, migrate=False)
    for h in (1, 2):
        scheduler.tick(now=T0 + timedelta(hours=h))
    runs_a, runs_b = jobs_of(sqlite_url, a.id), jobs_of(sqlite_url, b.id)
    # Only the search is reseeded: the model, splits and REPORT split keep seed 3.
    assert [j.spec["seed"] for j in runs_a + runs_b] == [3, 3, 3, 3]
    search_seeds = [j.spec["strategy"]["options"]["seed"] for j in runs_a]
    assert len(set(search_seeds)) == 2 and 3 not in search_seeds
    assert all("seed" not in j.spec["strategy"].get("options", {}) for j in runs_b)
    assert SearchSpec.from_dict(runs_a[0].spec).strategy.options["seed"] == search_seeds[0]
    assert [j.name for j in jobs_of(sqlite_url, a.id)] == ["a@20261101T0100", "a@20261101T0200"]


def test_warm_started_second_run_is_compared_with_the_first(postgres_url: str) -> None:
    client = Client.embedded(postgres_url)
    client.schedule(digits_spec_dict(budget={"trials": 8}), cron="0 2 * * *", name="nightly")
    scheduler = Scheduler(postgres_url, migrate=False)
    worker = JobRunner(postgres_url, migrate=False)
    nights = [datetime(2026, 12, d, 2, 0, 3, tzinfo=UTC) for d in (1, 2)]
    ScheduleStore(postgres_url).set_enabled("nightly", True, nights[0].replace(second=0))
    job_ids = []
    for night in nights:
        (firing,) = scheduler.tick(now=night)
        assert worker.run_one(firing.job_id).value == "succeeded"  # type: ignore[union-attr]
        job_ids.append(firing.job_id)
    first, second = (client.job(j) for j in job_ids)
    assert first.comparison() is None  # nothing to compare the first run with
    front1 = first.pareto_front()
    comp = second.comparison()
    assert comp is not None
    # The second run evaluated the first run's front first, allocation for allocation.
    study = optuna.load_study(study_name=second.status().study_name, storage=postgres_url)
    warm = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("origin") == "warm-start"]
    assert [t.number for t in warm] == list(range(len(front1)))
    assert [t.params for t in warm] == [dict(p.allocation) for p in front1]
    assert len(study.trials) == 8  # the same budget
    assert comp["previous_job_id"] == job_ids[0] and comp["warm_started"] is True
    assert comp["split"] == "search"
    assert comp["reference"]["quality"] == 0.0 and comp["reference"]["size"] > 0
    assert comp["hypervolume"] >= comp["previous_hypervolume"] > 0
    assert comp["verdict"] in ("improved", "equal")
    assert comp["verdict"] == ("equal" if comp["delta"] == pytest.approx(0, abs=1e-9) else "improved")
    print(f"hypervolume first {comp['previous_hypervolume']:.6g}, second {comp['hypervolume']:.6g}, "
          f"delta {comp['delta']:+.6g} ({comp['verdict']})")


def test_schedule_and_scheduler_commands(tmp_path: Path, sqlite_url: str) -> None:
    from prunetune.cli import app

    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(digits_spec_dict()))
    runner = CliRunner()
    got = runner.invoke(app, ["schedule", str(path), "--cron", "0 2 * * *", "--name", "nightly",
                              "--timezone", "Europe/Berlin", "--db", sqlite_url])
    assert got.exit_code == 0, got.output
    info = ScheduleStore(sqlite_url).get("nightly")
    assert (info.cron, info.timezone, info.catch_up, info.warm_start) == ("0 2 * * *", "Europe/Berlin", "once", True)
    bad = runner.invoke(app, ["schedule", str(path), "--cron", "every night", "--name", "x", "--db", sqlite_url])
    assert bad.exit_code == 2 and "cron" in bad.output


def test_missed_windows_are_counted_beyond_the_catch_up_cap(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    create_schedule(sqlite_url, spec(), cron="* * * * *", name="once", now=T0)
    create_schedule(sqlite_url, spec(), cron="* * * * *", name="all", catch_up="all", now=T0)
    fired = Scheduler(sqlite_url, migrate=False).tick(now=T0 + timedelta(days=1))  # 1440 windows
    once = [f for f in fired if f.schedule_id == ScheduleStore(sqlite_url).get("once").id]
    every = [f for f in fired if f.schedule_id == ScheduleStore(sqlite_url).get("all").id]
    assert len(once) == 1 and once[0].missed == 1439
    assert len(every) == 100 and every[-1].missed == 1340  # the latest 100; older ones missed
    assert every[-1].fire_time == once[0].fire_time == datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
