"""Trials a dead runner left behind in the study, at each point of handing one out."""

from __future__ import annotations

from pathlib import Path

import optuna
from search.synthetic import make_space

from prunetune.records import Candidate
from prunetune.store.studies import STALE_KEY, TrialRecorder


def test_trials_left_at_every_step_of_a_hand_out_run_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/stale.db"
    space = make_space(target=None)
    dead = TrialRecorder(url, "job", space, "accuracy")
    wanted = [Candidate(tuple(round(0.05 * ((i + k) % 10), 2) for i in range(len(space.names))), origin=f"c{k}")
              for k in range(3)]
    # Killed after the whole hand-out (RUNNING, every param set).
    dead.start(wanted[0])
    # Killed between enqueue and ask: WAITING, no params yet.
    dead.study.enqueue_trial(dict(zip(space.names, wanted[1].sparsities, strict=True)),
                             user_attrs={"origin": "c1"}, skip_if_exists=False)
    # Killed inside ask, after the first param: RUNNING with part of the allocation.
    dead.study.enqueue_trial(dict(zip(space.names, wanted[2].sparsities, strict=True)),
                             user_attrs={"origin": "c2"}, skip_if_exists=False)
    trial = dead.study.ask()
    first = space.names[0]
    trial.suggest_float(first, 0.0, 1.0)

    again = TrialRecorder(url, "job", space, "accuracy", create=False).fail_stale()

    assert [c.sparsities for c in again] == [c.sparsities for c in wanted]
    assert [c.origin for c in again] == ["c0", "c1", "c2"]
    stored = optuna.load_study(study_name="job", storage=url).get_trials(deepcopy=False)
    assert all(t.state == optuna.trial.TrialState.FAIL and t.user_attrs[STALE_KEY] for t in stored)
    # The failed records show the allocation that was handed out.
    assert [tuple(t.params[n] for n in space.names) for t in stored] == [c.sparsities for c in wanted]
