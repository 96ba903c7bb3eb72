"""Run a project's pipeline: snapshot, plan, reuse or run each stage, check gates, record lineage.

This is the use case both front ends call. It talks to the outside only through the ports it
is given (a StageRunner, a LineageStore) and the snapshot store.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from workbench.adapters.output_files import OutputTree, read_outputs, read_tree
from workbench.adapters.regular_files import FileEntry, NotRegularFile, read_protocol_json
from workbench.adapters.snapshots import Snapshot, SnapshotStore
from workbench.core.errors import RunCancelled, WorkbenchError
from workbench.core.events import (
    EnvironmentLog, EventSink, RunFinished, RunStarted, StageFinished, StageLog, StageProgress,
    StageStarted, parse_progress,
)
from workbench.core.gates import evaluate_gates
from workbench.core.manifest import Manifest, StageSpec, parse_size
from workbench.core.model import (
    Artifact, DatasetProfile, InputFile, RunRecord, RunStatus, StageResult, StageStatus, Trigger,
)
from workbench.core.params_keys import StageParams
from workbench.core.planning import CacheKeyParts, matches_any, select_stages, stage_inputs
from workbench.core.ports import CancelToken, LineageStore, PreparedEnvironment, StageJob, StageRunner, StatusLine
from workbench.core.stage_command import missing_script_problem, not_found_problem
from workbench.core.stage_schedule import StageSchedule, default_jobs
from workbench.services.contract_stage import CHECKER_VERSION, CONTRACT_STAGE, blocked_result, run_contract_stage
from workbench.services.evaluation import evaluate_stage, evaluation_settings
from workbench.services.stage_budget import StageBudget
from workbench.services.stage_params import resolve_params
from workbench.services.workspace import ProjectRef, Workspace, load_manifest

DONE = {StageStatus.SUCCEEDED, StageStatus.REUSED}

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _ignore(_event) -> None:
    pass


class PipelineService:
    def __init__(self, workspace: Workspace, store: LineageStore, runner: StageRunner,
                 snapshots: SnapshotStore | None = None, budget: StageBudget | None = None):
        self.workspace = workspace
        self.store = store
        self.runner = runner
        self.budget = budget
        """CPUs shared with the other runs of this process (services/stage_budget.py); None: none."""
        self.snapshots = snapshots or SnapshotStore(workspace.ensure_state_dir())

    def run(self, project: ProjectRef, stages: list[str] | None = None, trigger: Trigger = Trigger.MANUAL,
            changed_paths: list[str] | None = None, cancel: CancelToken | None = None,
            on_event: EventSink = _ignore, reuse: bool = True, snapshot_id: str | None = None,
            overrides: dict[str, Path] | None = None, jobs: int | None = None,
            fail_fast: bool = False) -> RunRecord:
        """Run the project's pipeline (or `stages` and what they depend on) and record it.

        `jobs`: how many stages may run at once (None: the manifest's `environment.jobs`, else
        from the CPU count); `fail_fast`: the first failed stage cancels the others.

        `overrides`: project-relative path -> a file the run's snapshot holds there instead
        (a drift retrain trains on the training data plus the batch; the project is untouched).

        Foreseeable failures (a stage exits non-zero, the image cannot be built, a gate fails)
        are recorded in the returned RunRecord; the run is never left marked running.
        """
        if jobs is not None and jobs < 1:
            raise WorkbenchError(f"--jobs must be at least 1, not {jobs}")
        # Stages run on threads of their own: their events reach the caller one at a time.
        on_event = _serialized(on_event)
        snapshot = self.snapshots.open(snapshot_id) if snapshot_id else None
        # A rerun of an earlier snapshot uses that snapshot's manifest, not today's.
        manifest, manifest_hash = load_manifest(snapshot.path if snapshot else project.path)
        deps = {name: spec.depends_on for name, spec in manifest.stages.items()}
        try:
            selected = select_stages(deps, stages)
        except KeyError as exc:
            raise WorkbenchError(f"{manifest.name}: {exc.args[0]}") from None
        cancel = cancel or CancelToken()
        if snapshot is None:
            # Before the run is recorded: a project symlink leading outside the project is bad
            # input (exit 3 with the link named, like a bad manifest), not a failed run.
            snapshot = self.snapshots.take(project.path, manifest.ignores, overrides, manifest.external_links)
        run_id, started = self.store.start_run(
            manifest.name, str(project.path), str(trigger), self.runner.name, list(stages or []),
            list(changed_paths or []),
        )
        record = RunRecord(
            id=run_id, project=manifest.name, trigger=trigger, status=RunStatus.RUNNING,
            runner=self.runner.name, started_at=started, manifest_hash=manifest_hash,
            stage_filter=list(stages or []), changed_paths=list(changed_paths or []),
        )
        on_event(RunStarted(run_id, manifest.name, tuple(selected), self.runner.name, str(trigger)))
        record.snapshot_warnings = list(snapshot.warnings)
        for warning in snapshot.warnings:  # said at once too: the stage that misses the file may fail first
            on_event(EnvironmentLog(run_id, StatusLine(f"warning: {warning}")))
        try:
            self._execute(record, project.path, manifest, selected, cancel, on_event, reuse, snapshot, overrides,
                          jobs, fail_fast)
        except RunCancelled as exc:
            record.status = RunStatus.SUPERSEDED if cancel.superseded else RunStatus.CANCELLED
            record.reason = str(exc)
        except WorkbenchError as exc:
            record.status, record.reason = RunStatus.FAILED, str(exc)
        except KeyboardInterrupt:
            record.status, record.reason = RunStatus.CANCELLED, "interrupted (Ctrl-C)"
            self._finish(record, manifest, on_event)
            raise
        except Exception as exc:  # an unforeseen bug: record it, then let it surface
            record.status, record.reason = RunStatus.FAILED, f"internal error: {exc!r}"
            self._finish(record, manifest, on_event)
            raise
        self._finish(record, manifest, on_event)
        return record

    def _finish(self, record: RunRecord, manifest: Manifest, on_event: EventSink) -> None:
        record.finished_at = _now()
        self.store.finish_run(record, primary_metric=manifest.primary_metric)
        on_event(RunFinished(record))

    def _execute(self, record: RunRecord, project_dir: Path, manifest: Manifest, selected: list[str],
                 cancel: CancelToken, on_event: EventSink, reuse: bool = True,
                 snapshot: Snapshot | None = None, overrides: dict[str, Path] | None = None,
                 jobs: int | None = None, fail_fast: bool = False) -> None:
        snapshot = snapshot or self.snapshots.take(project_dir, manifest.ignores, overrides, manifest.external_links)
        record.snapshot_id = snapshot.id
        env_log = lambda line: on_event(EnvironmentLog(record.id, line))  # noqa: E731
        prepared = self.runner.prepare(str(snapshot.path), manifest.environment, env_log, project=manifest.name,
                                       cancel=cancel)
        record.image_id, record.image_tag = prepared.image_id, prepared.image_tag
        # The data profiles describe the run's data for its lineage; no stage waits for them.
        # Profiling a 1 GB CSV takes DuckDB longer than hashing and copying it, so it runs
        # beside the stages, and the run is recorded once both are done.
        profiling = _Background(lambda: self._profile_datasets(manifest, snapshot))
        try:
            self._run_stages(record, manifest, selected, cancel, on_event, reuse, snapshot, prepared, jobs,
                             fail_fast)
        except KeyboardInterrupt:
            raise  # Ctrl-C does not wait for a profile; the next run of this data makes it
        except BaseException:
            record.datasets = profiling.result(raise_error=False) or []
            raise
        record.datasets = profiling.result()  # a failure to save them fails the run, as before

    def _run_stages(self, record: RunRecord, manifest: Manifest, selected: list[str], cancel: CancelToken,
                    on_event: EventSink, reuse: bool, snapshot: Snapshot, prepared: PreparedEnvironment,
                    jobs: int | None = None, fail_fast: bool = False) -> None:
        """Each stage on a thread of its own as soon as the schedule lets it start
        (core/stage_schedule.py): stages that do not depend on each other run at once, within
        the run's jobs. Results are settled here, on the calling thread, one at a time."""
        results: dict[str, StageResult] = {}
        # The keys each stage names, read from the snapshot once for the run: a stage's values
        # are those of the files the run started from, like its inputs.
        params = resolve_params(manifest, snapshot.path, snapshot.files.keys(), selected)
        contract = self._contract_stage(record, manifest, snapshot, on_event, reuse)
        blocked_by_contract = contract is not None and contract.status not in DONE
        # On a cluster the runner says how many cpus its workers hold: the default jobs and the
        # shared budget come from that, not from this machine's cores (runner_capacity).
        capacity = runner_capacity(self.runner)
        # The data breaks its contract: no project stage runs (each is recorded as not run).
        schedule = stage_schedule(manifest, [] if blocked_by_contract else selected, jobs, fail_fast, capacity)
        # Jobs the user set are taken as said; left to the default, runs share the process's CPUs.
        budget = None if (jobs or manifest.environment.jobs) else self.budget
        if budget is not None and capacity is not None:
            budget.resize(capacity)
        # The stages' own token: fail-fast stops the running ones through it without marking
        # the caller's token (a watch or a sweep may hold it for more than this run).
        stages_cancel = _LinkedCancel(cancel)
        finished: queue.Queue[tuple[str, StageResult | BaseException]] = queue.Queue()
        threads: dict[str, threading.Thread] = {}

        def settle(name: str, result: StageResult) -> None:
            results[name] = result
            record.stages.append(result)
            on_event(StageFinished(record.id, result))

        def run_inline(name: str) -> None:  # a stage that will not run: settled at once, no thread
            settle(name, self._stage(record, manifest, manifest.stages[name], snapshot, prepared, results,
                                     stages_cancel, on_event, reuse, params[name], budget))

        def launch(name: str) -> None:
            def work() -> None:
                try:
                    finished.put((name, self._stage(record, manifest, manifest.stages[name], snapshot, prepared,
                                                    results, stages_cancel, on_event, reuse, params[name], budget)))
                except BaseException as exc:  # handed to the calling thread, which raises it
                    finished.put((name, exc))

            threads[name] = threading.Thread(target=work, name=f"stage-{name}", daemon=True)
            threads[name].start()

        if contract is not None:
            settle(CONTRACT_STAGE, contract)
            if blocked_by_contract:
                for name in selected:
                    if name != CONTRACT_STAGE:  # a project stage of that name: the failed check says so
                        settle(name, blocked_result(name, manifest.stages[name].command, contract))
        try:
            while not schedule.done:
                for name in schedule.start():
                    launch(name)
                name, outcome = finished.get()
                del threads[name]
                if isinstance(outcome, BaseException):
                    raise outcome
                settle(name, outcome)
                ok = outcome.status in DONE
                if not ok and fail_fast and not stages_cancel.cancelled:
                    stages_cancel.cancel(f"fail-fast: stage {name} {outcome.status}")
                for blocked in schedule.finished(name, ok):
                    run_inline(blocked.stage)
            for name in schedule.not_started():
                run_inline(name)
        except BaseException:
            # Ctrl-C, or a bug in one stage's thread: stop the others and record what they were.
            stages_cancel.cancel(cancel.reason if cancel.cancelled else "interrupted")
            _collect_stragglers(threads, finished, settle)
            raise
        finally:
            stages_cancel.close()
            position = {name: i for i, name in enumerate(selected)}
            position[CONTRACT_STAGE] = -1  # the built-in data check comes first
            record.stages.sort(key=lambda r: position.get(r.stage, len(position)))  # manifest order, always

        statuses = [r.status for r in record.stages]
        complete = set(selected) == set(manifest.stages) and all(s in DONE for s in statuses)
        record.gates = evaluate_gates(manifest.gates, record.metrics, complete)
        failed = next((r for r in record.stages if r.status is StageStatus.FAILED), None)
        cancelled = next((r for r in record.stages if r.status is StageStatus.CANCELLED), None)
        if failed:
            record.status, record.reason = RunStatus.FAILED, f"stage {failed.stage} failed: {failed.reason}"
        elif cancelled:
            # A run a newer change replaced is not a run someone stopped: the watcher links it
            # to its replacement once that has an id.
            status = RunStatus.SUPERSEDED if cancel.superseded else RunStatus.CANCELLED
            record.status, record.reason = status, cancelled.reason
        else:
            # A failed gate is the run's outcome, not a footnote: its own status, so every
            # listing shows it and the registry does not register its model.
            failing = [g for g in record.gates if g.passed is False]
            record.status = RunStatus.GATE_FAILED if failing else RunStatus.SUCCEEDED
            if failing:
                record.reason = "gate failed: " + "; ".join(f"{g.rule} ({g.detail})" for g in failing)

    def _stage(self, record: RunRecord, manifest: Manifest, spec: StageSpec, snapshot: Snapshot, prepared: PreparedEnvironment,
               results: dict[str, StageResult], cancel: CancelToken, on_event: EventSink,
               reuse: bool = True, params: StageParams | None = None,
               budget: StageBudget | None = None) -> StageResult:
        params = params or StageParams()
        inputs = stage_inputs(snapshot.hashes, spec.inputs)
        for pattern in spec.inputs:
            if not any(matches_any(p, (pattern,)) for p in inputs):
                on_event(StageLog(record.id, spec.name, f"warning: input {pattern!r} matches no file"))
        upstream = {dep: results[dep] for dep in spec.depends_on if dep in results}
        key = CacheKeyParts(
            stage=spec.name, command=spec.command, inputs=inputs, image_id=prepared.image_id,
            upstream={dep: r.output_digest for dep, r in upstream.items()},
            network=manifest.environment.network, params=params.values,
            evaluation=evaluation_settings(manifest, spec),
        ).digest()
        base = StageResult(stage=spec.name, status=StageStatus.SKIPPED, command=spec.command,
                           cache_key=key, output_dir="",
                           inputs=[InputFile(p, h, snapshot.files[p].size) for p, h in inputs.items()],
                           param_values=dict(params.values))

        blocked = next((r for r in upstream.values() if r.status not in DONE), None)
        if blocked:
            base.reason = f"not run: upstream stage {blocked.stage} {blocked.status}"
            if blocked.status is StageStatus.CANCELLED or cancel.cancelled:
                base.status = StageStatus.CANCELLED
            return base
        if cancel.cancelled:
            base.status, base.reason = StageStatus.CANCELLED, cancel.reason or "cancelled"
            return base
        missing = missing_script_problem(f"stages.{spec.name}.command", spec.command, snapshot.files)
        if missing:  # a typo in the command, named by its key before any runner starts it
            base.status, base.reason = StageStatus.FAILED, missing
            return base
        if params.problem:  # a key the stage names is not there: say which, before it runs
            base.status, base.reason = StageStatus.FAILED, params.problem
            return base

        prior = self.store.find_reusable_stage(manifest.name, spec.name, key) if reuse else None
        if prior is not None and not self._still_as_recorded(record, spec, prior, on_event):
            prior = None
        if prior is not None:
            return replace(prior, status=StageStatus.REUSED, inputs=base.inputs, param_values=base.param_values,
                           started_at=None,
                           finished_at=None, duration_s=0.0, log_tail=[])

        output_dir = self.workspace.state_dir / "runs" / str(record.id) / spec.name
        output_dir.mkdir(parents=True, exist_ok=True)
        job = StageJob(
            run_id=record.id, project=manifest.name, stage=spec.name, command=spec.command,
            project_dir=str(snapshot.path), output_dir=str(output_dir),
            upstream_dirs={dep: r.output_dir for dep, r in upstream.items()},
            environment=prepared,
            memory_bytes=parse_size(spec.memory or manifest.environment.memory),
            cpus=spec.cpus or manifest.environment.cpus, gpus=spec.gpus, network=manifest.environment.network,
            timeout_s=spec.timeout_s or manifest.environment.timeout_s,
        )
        if budget is not None and not budget.acquire(
                job.cpus, cancel, lambda line: on_event(StageLog(record.id, spec.name, StatusLine(line)))):
            base.status, base.reason = StageStatus.CANCELLED, cancel.reason or "cancelled"
            return base

        def on_log(line: str) -> None:
            progress = parse_progress(line)
            if progress:
                on_event(StageProgress(record.id, spec.name, *progress))
            else:
                on_event(StageLog(record.id, spec.name, line))

        try:
            on_event(StageStarted(record.id, spec.name))
            outcome = self.runner.run_stage(job, on_log, cancel)
        finally:
            if budget is not None:
                budget.release(job.cpus)
        reason = outcome.reason
        if outcome.status is StageStatus.FAILED:  # `sh: 1: pyhton: not found`: name the key that said it
            reason = not_found_problem(f"stages.{spec.name}.command", outcome.exit_code,
                                       [outcome.reason, *outcome.log_tail]) or reason
        result = replace(
            base, status=outcome.status, output_dir=str(output_dir), started_at=outcome.started_at,
            finished_at=outcome.finished_at, exit_code=outcome.exit_code, reason=reason,
            duration_s=(outcome.finished_at - outcome.started_at).total_seconds(),
            log_tail=[line for line in outcome.log_tail if not parse_progress(line)],
            worker=outcome.worker, host=outcome.host, image_id=outcome.image_id,
        )
        self._collect_outputs(result, spec, output_dir)
        if spec.predictions and result.status is StageStatus.SUCCEEDED:
            evaluate_stage(self.store, record.id, manifest, spec, result, snapshot.path, list(snapshot.files),
                           lambda line: on_event(StageLog(record.id, spec.name, line)))
        return result

    def _contract_stage(self, record: RunRecord, manifest: Manifest, snapshot: Snapshot, on_event: EventSink,
                        reuse: bool) -> StageResult | None:
        """The built-in data contract check (services/contract_stage.py); None without contracts."""
        def reusable(key: str) -> StageResult | None:
            prior = self.store.find_reusable_stage(manifest.name, CONTRACT_STAGE, key) if reuse else None
            if prior is not None and not self._still_as_recorded(record, _builtin_spec(), prior, on_event):
                return None
            return prior

        output_dir = self.workspace.state_dir / "runs" / str(record.id) / CONTRACT_STAGE
        return run_contract_stage(manifest, snapshot.path, snapshot.files, output_dir, reusable,
                                  lambda: on_event(StageStarted(record.id, CONTRACT_STAGE)))

    @staticmethod
    def _still_as_recorded(record: RunRecord, spec: StageSpec, prior: StageResult, on_event: EventSink) -> bool:
        """Are a reusable stage's outputs still the bytes its run recorded? Outputs are small,
        so they are hashed again rather than trusted: a file changed behind the workbench's
        back must not flow into this run under the old hash. Hard links are allowed here: a
        warm worker's slot links recorded outputs into a running stage's read-only view."""
        tree = read_tree(Path(prior.output_dir), shared_links=True)
        if not tree.problems and tree.digest == prior.output_digest:
            return True
        run = prior.reused_from_run
        why = tree.problems[0] if tree.problems else (
            f"its outputs in {prior.output_dir} hash to {tree.digest[:12]}, not the recorded {prior.output_digest[:12]}")
        message = f"warning: not reusing stage {spec.name} of run {run}: {why}; running it again"
        log.warning("run %s: %s", record.id, message)
        on_event(StageLog(record.id, spec.name, message))
        return False

    @staticmethod
    def _collect_outputs(result: StageResult, spec: StageSpec, output_dir: Path) -> None:
        """Make the outputs read-only, then hash them and read the stage's protocol files;
        anything that is not a regular file, or a broken or missing declared output, fails it."""
        tree = read_outputs(output_dir, lock=True)
        files = tree.files
        result.output_digest = tree.digest
        refused = [f"output {p}" for p in tree.problems]
        problems = list(refused)
        result.metrics = _read_metrics(tree, output_dir, "metrics.json", problems)
        params = _read_json(tree, output_dir, "params.json", dict, problems) or {}
        result.params = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        kinds = {out: "output" for out in spec.outputs}
        for entry in _read_json(tree, output_dir, "artifacts.json", list, problems) or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                kinds[entry["name"]] = str(entry.get("kind", "file"))
        for name, kind in kinds.items():
            entry: FileEntry | None = files.get(name)
            if entry is None:
                if name in spec.outputs and not any(p.startswith(f"{name} ") for p in tree.problems):
                    problems.append(f"declared output {name} was not written")
                continue
            result.artifacts.append(Artifact(name, str(output_dir / name), entry.sha256, entry.size, kind))
        if problems and result.status is StageStatus.SUCCEEDED:
            result.status, result.reason = StageStatus.FAILED, "; ".join(problems)
        elif refused:  # failed anyway; still say what was refused
            result.reason = "; ".join(filter(None, [result.reason, *refused]))

    def _profile_datasets(self, manifest: Manifest, snapshot: Snapshot) -> list[DatasetProfile]:
        """The lineage profile of each data file, named by its path in the project. A file it
        cannot read, wholly or in part, is the run's warning (RunRecord.warnings), never its
        end: the project's validate stage judges the data."""
        profiles = []
        for path, entry in snapshot.files.items():
            if not matches_any(path, manifest.data.paths):
                continue
            known = self.store.known_profile(entry.sha256)
            if known is None or not known.readable:  # an unreadable file is tried again: the cause may have passed
                known = self.store.profile_dataset(str(snapshot.path / path), entry.sha256)
            profiles.append(replace(known, path=path))
        return profiles


def _builtin_spec() -> StageSpec:
    return StageSpec(name=CONTRACT_STAGE, command=CHECKER_VERSION)


def stage_schedule(manifest: Manifest, selected: list[str], jobs: int | None = None,
                   fail_fast: bool = False, capacity: float | None = None) -> StageSchedule:
    """The run's schedule. Jobs the user set (`--jobs`, `environment.jobs`) are taken as said:
    a container's `cpus` is a limit, not a reservation, so more stages than CPUs only share them.
    Left to the default, the budget is `capacity` (the cluster's cpus) or else the machine's
    CPUs, counted by each stage's `cpus`."""
    cpus = {name: manifest.stages[name].cpus or manifest.environment.cpus for name in selected}
    chosen = jobs or manifest.environment.jobs
    total = capacity if capacity is not None else float(os.cpu_count() or 1)
    budget = None if chosen else total
    deps = {name: manifest.stages[name].depends_on for name in selected}
    return StageSchedule(selected, deps, chosen or default_jobs(list(cpus.values()), int(total)), cpus, budget,
                         fail_fast)


def runner_capacity(runner: StageRunner) -> float | None:
    """The cpus a runner that spreads stages over machines has in all (the cluster runner's
    `capacity()`: what its workers declare); None for a runner on this machine."""
    capacity = getattr(runner, "capacity", None)
    return float(capacity()) if capacity is not None else None


def _serialized(on_event: EventSink) -> EventSink:
    """The sink, called by one thread at a time: consumers (the CLI's printer, the TUI's
    bridge, a watch) were written for one stage at a time, and still see one event at a time."""
    lock = threading.RLock()

    def sink(event) -> None:
        with lock:
            on_event(event)

    return sink


class _LinkedCancel(CancelToken):
    """A token cancelled by its own `cancel` or, within a few milliseconds, by its parent's.
    Runners wait on a token's event, so the parent's cancel is passed on by a small thread
    rather than read on each call."""

    def __init__(self, parent: CancelToken):
        super().__init__()
        self._over = threading.Event()

        def follow() -> None:
            while not self._over.is_set() and not self.cancelled:
                if parent.wait(0.02):
                    self.cancel(parent.reason, parent.superseded)
                    return

        if parent.cancelled:
            self.cancel(parent.reason, parent.superseded)
        else:
            threading.Thread(target=follow, name="run-cancel", daemon=True).start()

    def close(self) -> None:
        self._over.set()


def _collect_stragglers(threads: dict[str, threading.Thread], finished: queue.Queue, settle,
                        wait_s: float = 30.0) -> None:
    """After a cancel: wait (a while) for the stages still running to stop, and settle each."""
    deadline = time.monotonic() + wait_s
    while threads:
        try:
            name, outcome = finished.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return  # a runner that does not stop; the run is recorded without it
        threads.pop(name, None)
        if isinstance(outcome, StageResult):
            settle(name, outcome)


class _Background:
    """A call on a thread of its own, whose result (or exception) is collected later."""

    def __init__(self, call):
        self._value = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = call()
            except BaseException as exc:  # handed to whoever collects the result
                self._error = exc

        self._thread = threading.Thread(target=run, name="run-profiles", daemon=True)
        self._thread.start()

    def result(self, raise_error: bool = True):
        self._thread.join()
        if self._error is not None and raise_error:
            raise self._error
        return self._value


def _read_json(tree: OutputTree, output_dir: Path, name: str, kind: type, problems: list[str]):
    """A protocol file, read only if the tree found it a regular file (a symlink was refused there)."""
    if name not in tree.files:
        return None
    try:
        value = read_protocol_json(output_dir / name)
    except (NotRegularFile, OSError) as exc:
        problems.append(f"{name} cannot be read: {exc}")
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        problems.append(f"{name} is not valid JSON: {exc}")
        return None
    if not isinstance(value, kind):
        problems.append(f"{name} must hold a JSON {'object' if kind is dict else 'list'}")
        return None
    return value


def _read_metrics(tree: OutputTree, output_dir: Path, name: str, problems: list[str]) -> dict[str, float]:
    raw = _read_json(tree, output_dir, name, dict, problems) or {}
    metrics = {}
    for key, value in raw.items():
        if value is None:
            metrics[key] = math.nan
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[key] = float(value)
        else:
            problems.append(f"metric {key!r} is not a number: {value!r}")
    return metrics
