"""One workbench session on a workspace: wires the adapters to the use cases.

Front ends (CLI, TUI) create a session and call its methods; they never import an adapter.
Heavy or optional adapters (Docker) are imported only when first needed, to keep start-up fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workbench.core.errors import EngineUnavailable
from workbench.core.model import RunRecord, RunSummary, Trigger
from workbench.core.ports import CancelToken, LineageStore, StageRunner
from workbench.services.workspace import ProjectRef, Workspace

RUNNER_CHOICES = ("auto", "docker", "local")
Notice = Callable[[str], None]


@dataclass(frozen=True)
class RecoveryReport:
    interrupted_runs: list[int]
    removed_containers: int


class WorkbenchSession:
    def __init__(self, workspace_root: Path | str, runner: str = "auto", notice: Notice = lambda _m: None,
                 cold: bool = False):
        if runner not in RUNNER_CHOICES:
            raise ValueError(f"runner must be one of {RUNNER_CHOICES}")
        self.workspace = Workspace(workspace_root)
        self.runner_choice = runner
        self.cold = cold
        """Docker only: a fresh container per stage instead of the project's warm worker."""
        self.notice = notice
        self._store: LineageStore | None = None
        self._runner: StageRunner | None = None
        self._interrupted: list[int] = []

    @property
    def store(self) -> LineageStore:
        if self._store is None:
            from workbench.adapters.duckdb_store import DuckDBLineageStore

            self.workspace.ensure_state_dir()
            self._store = DuckDBLineageStore(self.workspace.lineage_path)
            # Whatever a crashed workbench left marked running is settled before anyone reads.
            self._interrupted = self._store.mark_interrupted()
        return self._store

    @property
    def runner(self) -> StageRunner:
        if self._runner is None:
            self._runner = self._make_runner()
        return self._runner

    def _make_runner(self) -> StageRunner:
        from workbench.adapters.local_runner import LocalRunner

        if self.runner_choice == "local":
            return LocalRunner()
        try:
            from workbench.adapters.docker_runner import DockerRunner

            return DockerRunner(mode="cold" if self.cold else "warm")
        except EngineUnavailable as exc:
            if self.runner_choice == "docker":
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

    def run(self, project: str, stages: list[str] | None = None, trigger: Trigger = Trigger.MANUAL,
            changed_paths: list[str] | None = None, cancel: CancelToken | None = None,
            on_event=lambda _e: None) -> RunRecord:
        from workbench.services.pipeline import PipelineService

        ref = self.project(project)
        pipeline = PipelineService(self.workspace, self.store, self.runner)
        return pipeline.run(ref, stages, trigger, changed_paths, cancel, on_event)

    def runs(self, project: str | None = None, limit: int = 50, offset: int = 0) -> list[RunSummary]:
        name = self.project(project).name if project else None
        return self.store.list_runs(name, limit=limit, offset=offset)

    def runs_json(self, project: str | None = None, limit: int = 50, offset: int = 0) -> str:
        """The listing as a JSON array, one run per line (fast path for scripts)."""
        name = self.project(project).name if project else None
        rows = self.store.list_runs_json(name, limit=limit, offset=offset)
        return "[\n  " + ",\n  ".join(rows) + "\n]" if rows else "[]"

    def get_run(self, run_id: int) -> RunRecord:
        return self.store.get_run(run_id)

    def lineage(self, run_id: int) -> dict:
        return self.store.lineage(run_id)
