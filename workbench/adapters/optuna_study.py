"""Sweeps' studies in Optuna's JournalStorage: one append-only file under `.workbench/sweeps/`.

Optuna does the searching (its TPE, random and grid samplers) and keeps each study's trials,
their values and states; a study outlives the process that ran it, which is what lets
`workbench sweep --resume NAME` carry on. The journal file is locked by Optuna for each append,
so several processes can write to it. Its errors become WorkbenchErrors here.

A sweep's settings (project, param specs, metric, trials wanted, sampler, seed) are the study's
user attributes, so a resumed sweep searches the same space the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from workbench.core.errors import UsageError, WorkbenchError
from workbench.core.sweep_spec import SweepParam

# The sweep says what happens itself; Optuna would log each failed trial with its traceback.
optuna.logging.set_verbosity(optuna.logging.ERROR)
logging.getLogger("optuna").propagate = False

JOURNAL = "journal.log"


class TrialFailed(Exception):
    """The trial's run did not succeed: Optuna records the trial FAIL and goes on."""


class TrialCancelled(Exception):
    """The sweep was stopped during this trial: Optuna records it FAIL and the sweep ends."""


@dataclass(frozen=True)
class TrialFacts:
    number: int
    state: str
    """complete, fail, pruned, running, waiting."""
    value: float | None
    params: dict[str, Any]
    attrs: dict[str, Any]
    """run_id, run_status, cancelled, project_digest, changed_files."""


@dataclass(frozen=True)
class StudyFacts:
    name: str
    attrs: dict[str, Any]
    direction: str
    trials: tuple[TrialFacts, ...]


class SweepStudies:
    def __init__(self, sweeps_dir: Path):
        sweeps_dir.mkdir(parents=True, exist_ok=True)
        self.path = sweeps_dir / JOURNAL
        try:
            self.storage = JournalStorage(JournalFileBackend(str(self.path)))
        except Exception as exc:  # a corrupt or unreadable journal
            raise WorkbenchError(f"the sweeps journal {self.path} cannot be read: {exc}") from None

    def names(self) -> list[str]:
        return optuna.study.get_all_study_names(self.storage)

    def create(self, name: str, direction: str, attrs: dict[str, Any],
               sampler: optuna.samplers.BaseSampler) -> optuna.Study:
        try:
            study = optuna.create_study(study_name=name, storage=self.storage, direction=direction, sampler=sampler)
        except optuna.exceptions.DuplicatedStudyError:
            raise UsageError(f"a sweep named {name!r} exists already: continue it with --resume {name}, "
                             "or give another --name") from None
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        return study

    def load(self, name: str, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        if name not in self.names():
            known = ", ".join(self.names()) or "none yet"
            raise UsageError(f"no sweep named {name!r} in this workspace (sweeps: {known})")
        return optuna.load_study(study_name=name, storage=self.storage, sampler=sampler)

    def facts(self, name: str) -> StudyFacts:
        study = self.load(name)
        return StudyFacts(name, dict(study.user_attrs), study.direction.name.lower(),
                          tuple(_facts(t) for t in study.get_trials(deepcopy=False)))


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, also for a trial queued again by `retry_cancelled`. Such a trial
    has fixed params and no grid point of its own, and Optuna 5.0's after_trial looks its grid
    point up when one grid point is left (a KeyError 'grid_id'): here it only stops the study
    once no grid point is left to try. The cancelled trial holds its point as visited, the
    retry covers it."""

    def after_trial(self, study, trial, state, values) -> None:
        if "grid_id" in trial.system_attrs:
            super().after_trial(study, trial, state, values)
        elif not self._get_unvisited_grid_ids(study):
            study.stop()


def make_sampler(kind: str, params: tuple[SweepParam, ...], seed: int | None) -> optuna.samplers.BaseSampler:
    if kind == "grid":
        return _GridSampler({p.name: list(p.grid()) for p in params}, seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def suggest(trial: optuna.Trial, params: tuple[SweepParam, ...]) -> dict[str, Any]:
    """The trial's values, asked of the study's sampler."""
    values: dict[str, Any] = {}
    for p in params:
        if p.kind == "choice":
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.kind == "int":
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
    return values


def settle_abandoned(studies: SweepStudies, study: optuna.Study) -> list[int]:
    """Trials a process left RUNNING when it died (killed, not stopped) are failed as cancelled,
    so they neither hold a grid point nor count as in flight. Returns their numbers."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        studies.storage.set_trial_user_attr(trial._trial_id, "cancelled", True)
        study.tell(trial.number, state=TrialState.FAIL)
    return [t.number for t in stale]


def retry_cancelled(study: optuna.Study) -> list[int]:
    """Queue again the values of trials a stop cancelled (each once): the search goes on from
    where it was, and a grid point is not lost to a Ctrl-C."""
    requeued = list(study.user_attrs.get("requeued", []))
    retried = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if trial.user_attrs.get("cancelled") and trial.number not in requeued:
            study.enqueue_trial(dict(trial.params), skip_if_exists=False)
            retried.append(trial.number)
    if retried:
        study.set_user_attr("requeued", requeued + retried)
    return retried


def optimize(study: optuna.Study, objective: Callable[[optuna.Trial], float], trials: int, jobs: int = 1) -> None:
    """Run up to `trials` trials, `jobs` at once (Optuna's own n_jobs: threads sharing the
    study, each asking the sampler for its trial); a TrialFailed trial is recorded failed and
    the sweep goes on, TrialCancelled (and any other exception) ends it after Optuna recorded
    the trial failed.

    With several jobs, Optuna re-raises a trial's exception only when it waits for a free
    thread: one raised by a trial of the last wave is dropped. So every trial's exception is
    kept here, no new trial starts once one is raised (study.stop), and the first is raised
    again when every thread has finished."""
    if jobs == 1:
        study.optimize(objective, n_trials=trials, catch=(TrialFailed,), gc_after_trial=False)
        return
    raised: list[BaseException] = []

    def kept(trial: optuna.Trial) -> float:
        try:
            return objective(trial)
        except TrialFailed:
            raise
        except BaseException as exc:
            raised.append(exc)
            study.stop()
            raise

    try:
        study.optimize(kept, n_trials=trials, n_jobs=jobs, catch=(TrialFailed,), gc_after_trial=False)
    except BaseException as exc:
        if exc not in raised:
            raise
    if raised:
        # A trial stopped by a user (TrialCancelled) says less than one that broke: raise that.
        first = next((e for e in raised if not isinstance(e, TrialCancelled)), raised[0])
        raise first


def _facts(trial: FrozenTrial) -> TrialFacts:
    value = trial.value if trial.state is TrialState.COMPLETE else None
    return TrialFacts(trial.number, trial.state.name.lower(), value, dict(trial.params), dict(trial.user_attrs))
