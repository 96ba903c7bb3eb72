"""One workbench session on a workspace: wires the adapters to the use cases.

Front ends (CLI, TUI) create a session and call its methods; they never import an adapter.
Heavy or optional adapters (Docker) are imported only when first needed, to keep start-up fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from workbench.core.errors import EngineUnavailable, WorkbenchError
from workbench.core.events import ModelRegistered, RunStarted
from workbench.core.model import RunRecord, RunSummary, Trigger
from workbench.core.reproduce import Reproduction
from workbench.core.ports import CancelToken, LineageStore, StageRunner
from workbench.core.workspace_config import (SCHEDULER_VARIABLE, SchedulerChoice, no_scheduler_problem,
                                             resolve_scheduler)
from workbench.services.stage_budget import StageBudget
from workbench.services.workspace import ProjectRef, Workspace

if TYPE_CHECKING:  # imported when first used: it brings in DuckDB
    from workbench.services.alerts import Alerts
    from workbench.services.explanations import ExplanationService
    from workbench.services.registry import RegistryService

RUNNER_CHOICES = ("auto", "docker", "local", "cluster")
Notice = Callable[[str], None]


@dataclass(frozen=True)
class RecoveryReport:
    interrupted_runs: list[int]
    removed_containers: int


class WorkbenchSession:
    def __init__(self, workspace_root: Path | str, runner: str | None = None, notice: Notice = lambda _m: None,
                 cold: bool = False, scheduler: str | None = None):
        """`runner`: None for the workspace's default (workspace.toml's `[cluster] runner`, else
        auto); `scheduler`: the --scheduler given, if any (see the `scheduler` property)."""
        if runner is not None and runner not in RUNNER_CHOICES:
            raise ValueError(f"runner must be one of {RUNNER_CHOICES}")
        self.workspace = Workspace(workspace_root)
        self._runner_given = runner
        self.cold = cold
        """Docker only: a fresh container per stage instead of the project's warm worker."""
        self.scheduler_flag = scheduler
        """The --scheduler given (None: the variable's or the workspace's; see `scheduler`)."""
        self.notice = notice
        self._store: LineageStore | None = None
        self._runner: StageRunner | None = None
        self._interrupted: list[int] = []
        self.stage_budget = StageBudget()
        """The CPUs this session's runs share (watch and the TUI run several projects at once)."""
        self._registry = None
        self._explainer = None
        self._alerts = None
        self.last_registration = None
        """(ModelVersion or None, created now) for the last run this session made."""

    @property
    def store(self) -> LineageStore:
        if self._store is None:
            from workbench.adapters.duckdb_store import DuckDBLineageStore

            self.workspace.ensure_state_dir()
            self._store = DuckDBLineageStore(self.workspace.lineage_path)
            # Whatever a crashed workbench left marked running is settled before anyone reads.
            self._interrupted = self._store.mark_interrupted()
            self._reconcile_registry()
        return self._store

    def _reconcile_registry(self) -> None:
        """A promotion that crashed between its commit and its anchor write or pointer switch
        is finished (or reported) by the next command of any kind; cheap when all agree."""
        state = self.workspace.state_dir
        if not (state / "deploy").exists() and not (state / "audit").exists():
            return  # nothing was ever registered or promoted here: no need to load the registry
        try:
            for line in self.registry.reconcile():
                self.notice(line)
        except WorkbenchError as exc:
            self.notice(f"the model registry could not be checked: {exc}")

    @property
    def runner_choice(self) -> str:
        """The runner asked for: the one given, else the workspace's default, else auto."""
        return self._runner_given or self.workspace.config.cluster.runner or "auto"

    @property
    def scheduler(self) -> str | None:
        """The Dask scheduler's address: --scheduler, else $WORKBENCH_SCHEDULER, else
        workspace.toml's `[cluster] scheduler` (core/workspace_config.resolve_scheduler)."""
        choice = self.scheduler_choice
        return choice.address if choice else None

    @property
    def scheduler_choice(self) -> SchedulerChoice | None:
        """The scheduler's address and where it was given; None when nothing names one."""
        return resolve_scheduler(self.scheduler_flag, os.environ.get(SCHEDULER_VARIABLE), self.workspace.config)

    @property
    def runner(self) -> StageRunner:
        if self._runner is None:
            self._runner = self._make_runner()
        return self._runner

    def _make_runner(self) -> StageRunner:
        from workbench.adapters.local_runner import LocalRunner

        choice = self.runner_choice
        if choice == "local":
            return LocalRunner()
        if choice == "cluster":
            from workbench.adapters.cluster_runner import ClusterRunner

            address = self.scheduler
            if address is None:
                raise WorkbenchError(no_scheduler_problem(self.workspace.config.path))
            return ClusterRunner(address, mode="cold" if self.cold else "warm")
        try:
            from workbench.adapters.docker_runner import DockerRunner

            return DockerRunner(mode="cold" if self.cold else "warm", state_dir=self.workspace.state_dir)
        except EngineUnavailable as exc:
            if choice == "docker":
                raise
            self.notice(f"{exc}. Running stages as local processes (--runner local): no container isolation.")
            return LocalRunner()

    def recover(self) -> RecoveryReport:
        """Clean up after a workbench that died: runs it left running, containers it left behind."""
        interrupted = self.store.mark_interrupted() + self._interrupted
        self._interrupted = []
        removed = 0
        cleanup = getattr(self.runner, "cleanup_orphans", None)
        if cleanup is not None:
            removed = cleanup()
        return RecoveryReport(sorted(set(interrupted)), removed)

    def project(self, name_or_path: str) -> ProjectRef:
        return self.workspace.project(name_or_path)

    def projects(self) -> list[ProjectRef]:
        return self.workspace.projects()

    def init_project(self, folder: str, force: bool = False) -> tuple[ProjectRef, str]:
        """Write a first manifest for a folder of ML code; see Workspace.init_project."""
        return self.workspace.init_project(folder, force)

    def run(self, project: str, stages: list[str] | None = None, trigger: Trigger = Trigger.MANUAL,
            changed_paths: list[str] | None = None, cancel: CancelToken | None = None,
            on_event=lambda _e: None, overrides: dict[str, Path] | None = None,
            register: bool = True, sweep: tuple[str, int] | None = None, jobs: int | None = None,
            fail_fast: bool = False) -> RunRecord:
        """`overrides`: project-relative path -> a file the run's snapshot holds there instead.
        `register=False`: the run's model is not registered as a version (a sweep registers only
        its best trial's, at the end: registry.after_run(..., late=True)). `sweep`: (name, trial
        number) of the sweep trial this run is, written to its lineage as it starts. `jobs`,
        `fail_fast`: parallel stages (PipelineService.run)."""
        from workbench.services.pipeline import PipelineService

        if sweep is not None:
            on_event = self._tags_sweep_trial(on_event, *sweep)
        ref = self.project(project)
        pipeline = PipelineService(self.workspace, self.store, self.runner, budget=self.stage_budget)
        if trigger is Trigger.DRIFT:
            on_event = self._says_retrain_started(on_event, ref.name)
        with self._in_use():
            record = pipeline.run(ref, stages, trigger, changed_paths, cancel, on_event, overrides=overrides,
                                  jobs=jobs, fail_fast=fail_fast)
            if sweep is not None:  # for the MLflow payload: the trial's tags go with it
                record.sweep, record.sweep_trial = sweep
            registration = self._after_run(record, ref, register)
        from workbench.core.alert_events import run_alerts

        alerts = run_alerts(record)
        for kind, summary, details in alerts:
            self.alerts.emit(kind, record.project, summary, details)
        if not alerts:
            self.alerts.resume()  # what earlier processes left undelivered (a receiver was down)
        if registration is not None and registration[0] is not None and registration[1]:
            # Said as an event too: watch runs of several projects share this session, so
            # `last_registration` belongs to whichever finished last.
            on_event(ModelRegistered(record.project, record.id, registration[0].version, str(record.trigger)))
        return record

    def _says_retrain_started(self, on_event, project: str):
        """A drift run is a retrain: its start is an alert (its end is one in run_alerts)."""

        def said(event) -> None:
            if isinstance(event, RunStarted):
                self.alerts.emit("retrain_started", project, f"retrain run {event.run_id} of {project} started",
                                 {"run_id": event.run_id})
            on_event(event)

        return said

    @property
    def alerts(self) -> Alerts:
        """Alerts to the webhooks of `[notify]` (workbench.services.alerts): `emit` never raises."""
        if self._alerts is None:
            from workbench.services.alerts import Alerts

            self._alerts = Alerts(self.workspace, lambda: self.store, notice=lambda m: self.notice(m))
        return self._alerts

    def _tags_sweep_trial(self, on_event, sweep: str, trial: int):
        """Tag the run with its sweep as soon as it has an id: a trial stopped midway is still
        found by its sweep."""

        def tagged(event) -> None:
            if isinstance(event, RunStarted):
                self.store.tag_sweep_trial(event.run_id, sweep, trial)
            on_event(event)

        return tagged

    def _in_use(self):
        """The workspace's gc lock, shared: from a run's snapshot until it is recorded and
        registered, `workbench gc` deletes nothing (workbench.services.gc)."""
        from workbench.adapters.gc_lock import gc_lock

        return gc_lock(self.workspace.ensure_state_dir(), exclusive=False,
                       on_wait=lambda: self.notice("waiting for workbench gc to finish"))

    @property
    def registry(self) -> RegistryService:
        """The model registry (workbench.services.registry.RegistryService): versions,
        promotion, rollback, audit trail, MLflow mirror."""
        if self._registry is None:
            from workbench.services.registry import RegistryService

            store = self.store  # opening it may build the registry already (its reconcile)
            if self._registry is None:
                from workbench.services.model_card import card_files
                from workbench.services.serving import serving_documents

                self._registry = RegistryService(self.workspace, store)
                self._registry.alerts = self.alerts  # promotions and rollbacks are alerts
                # A promotion writes the version's model card, and the columns it was trained on
                # (what its server checks requests against), into its deploy release.
                self._registry.card_files = lambda project, version: (card_files(self, project, version)
                                                                      | serving_documents(self, project, version))
        return self._registry

    def _after_run(self, record: RunRecord, ref: ProjectRef, register: bool = True):
        """Register the run's model and queue the run for MLflow; returns (version or None,
        created now), or None if registering failed. The run is already recorded: a failure
        here is a notice, and the next registry command catches up."""
        self.last_registration = None
        try:
            self.explainer.record(record)
        except WorkbenchError as exc:  # the run stands; `workbench explain` tries again
            self.notice(f"run {record.id} is recorded, but its model was not explained ({exc})")
        try:
            registration = self.last_registration = self.registry.after_run(record, ref.manifest, register)
        except WorkbenchError as exc:
            self.notice(f"run {record.id} is recorded, but its model was not registered yet ({exc}); "
                        "the next `workbench models` registers it")
            return None
        # A detached process sends the run to MLflow; this returns at once ($WORKBENCH_MLFLOW_SYNC).
        self.registry.request_mirror_sync()
        return registration

    def reproduce(self, run_id: int, on_event=lambda _e: None,
                  cancel: CancelToken | None = None) -> tuple[RunRecord, Reproduction]:
        """Rerun a run's exact snapshot in fresh containers (cold, nothing reused) and compare:
        the same metrics (timings aside) and byte-identical artifacts mean it reproduced."""
        from workbench.services.pipeline import PipelineService
        from workbench.services.reproductions import compare_records

        original = self.get_run(run_id)
        if not original.snapshot_id:
            raise WorkbenchError(f"run {run_id} has no snapshot to reproduce (it failed before taking one)")
        ref = self.project(original.project)
        runner = self.runner
        if getattr(runner, "mode", None) == "warm":
            from workbench.adapters.docker_runner import DockerRunner

            runner = DockerRunner(client=runner.client, mode="cold", state_dir=self.workspace.state_dir)
        pipeline = PipelineService(self.workspace, self.store, runner)
        with self._in_use():
            record = pipeline.run(ref, original.stage_filter or None, Trigger.REPRODUCE, cancel=cancel,
                                  on_event=on_event, reuse=False, snapshot_id=original.snapshot_id)
            self._after_run(record, ref)  # mirrored to MLflow like any run; it registers no version
        return record, compare_records(original, record)

    def runs(self, project: str | None = None, limit: int = 50, offset: int = 0,
             match: str | None = None) -> list[RunSummary]:
        """Newest first; `match`: words each found in a run's id, trigger, status or runner."""
        name = self.project(project).name if project else None
        return self.store.list_runs(name, limit=limit, offset=offset, match=match)

    def count_runs(self, project: str | None = None, match: str | None = None) -> int:
        """How many runs `runs` would list without a limit (the TUI sizes its virtual table by it)."""
        name = self.project(project).name if project else None
        return self.store.count_runs(name, match=match)

    def runs_json(self, project: str | None = None, limit: int = 50, offset: int = 0) -> str:
        """The listing as a JSON array, one run per line (fast path for scripts)."""
        name = self.project(project).name if project else None
        rows = self.store.list_runs_json(name, limit=limit, offset=offset)
        return "[\n  " + ",\n  ".join(rows) + "\n]" if rows else "[]"

    def generation(self) -> dict[str, tuple]:
        """What any process has recorded, as a fingerprint in parts (`runs`, `registry`,
        `drift`): a screen asks once a second and reads again the panes whose part changed."""
        return self.store.generation()

    def get_run(self, run_id: int) -> RunRecord:
        return self.store.get_run(run_id)

    def lineage(self, run_id: int) -> dict:
        return self.store.lineage(run_id)

    @property
    def explainer(self) -> ExplanationService:
        """Model explanations (workbench.services.explanations): importances and mean |SHAP|."""
        if self._explainer is None:
            from workbench.services.explanations import ExplanationService

            def model_kind(project: str) -> str:
                try:
                    return self.project(project).manifest.promotion.model_artifact_kind
                except WorkbenchError:  # the project is gone or its manifest broken: the default
                    return "model"

            self._explainer = ExplanationService(self.store, model_kind)
        return self._explainer

    def explanations(self, run_id: int) -> dict[str, dict]:
        """Stage -> {"model", "model_sha256", "shap_rows", "features": [{"feature", "gain",
        "split", "mean_abs_shap"}]} for each LightGBM model the run recorded, features by gain."""
        return self.explainer.explanations(run_id)

    def explanation_notes(self, run_id: int) -> dict[str, str]:
        """Stage -> why its model has no explanation (not LightGBM, ...) or what it lacks."""
        return self.explainer.notes(run_id)

    def version_explanations(self, project: str, version: int) -> dict[str, dict]:
        """The explanation of a model version's file, as `explanations` gives it."""
        return self.explainer.version_explanations(self.project(project).name, version)

    def importance_weights(self, project: str, version: int) -> dict[str, float]:
        """Feature (column) -> its share of the version's gain importance, summing to 1."""
        return self.explainer.importance_weights(self.project(project).name, version)

    def compare(self, request):
        """Runs side by side: a params x metrics table (workbench.services.compare.CompareRequest
        in, workbench.core.compare.CompareTable out)."""
        from workbench.services.compare import CompareService

        return CompareService(self).compare(request)

    def evaluations(self, run_id: int) -> dict[str, dict]:
        """Stage -> the evaluation the workbench computed from its predictions file (curves,
        calibration, per-group rates); shape in workbench.adapters.duckdb_evaluation."""
        return self.store.evaluations(run_id)
