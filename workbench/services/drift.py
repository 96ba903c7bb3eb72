"""Drift monitoring: check a batch of new data against the production model's training data,
measure the model on it when it carries labels, decide whether to retrain, and retrain.

    service = DriftService(session)
    outcome = service.check_batch("telco-churn", "data/incoming/batch-001.csv")
    outcome.report.summary, outcome.decision.reason
    if outcome.decision.retrain:
        record = service.retrain("telco-churn", outcome)      # a run with trigger `drift`

The reference is the data file the production model was trained on, read back from the
content-addressed object store by the fingerprint its run recorded (so later edits of the
project's data file change nothing); with no production model yet, the latest successful run's,
and the report says so. The comparison is workbench.core.drift's; the retrain policy
(cooldown, daily cap) is workbench.core.drift_retrain's.

Performance decay is measured by the project's own scoring command (`[drift] score`), run like
a stage by the project's runner (its container, or a local process): the project's code knows
how its features are encoded, the workbench does not. It sees the batch at
$WB_UPSTREAM_DIR/batch/$WB_BATCH_FILE and the production model's stage output at
$WB_UPSTREAM_DIR/<stage>, and logs metrics that are compared with the version's evaluation.

A retrain is an ordinary pipeline run with trigger `drift`, the batch in its changed paths,
whose snapshot holds the training data plus the batch (policy `append`) or the batch alone
(`replace`) in place of the data file: the project's own file is never written. The run
registers a version like any run; it goes to staging only if [promotion] auto_staging says so
(the registry does that, audited), never to production.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from workbench.adapters.batch_files import is_batch_file, write_training_file
from workbench.adapters.data_profile import rejected_summary
from workbench.adapters.duckdb_drift import DuckDBDriftStore
from workbench.adapters.hash_cache import StatHasher, read_hash_cache
from workbench.adapters.profile_store import ProfileStore, profile_key
from workbench.adapters.project_survey import scan_project
from workbench.adapters.regular_files import NotRegularFile, hash_file, read_protocol_json
from workbench.adapters.snapshots import SnapshotStore
from workbench.adapters.table_stats import TableStats
from workbench.core.drift import compare_profile, judge
from workbench.core.drift_profile import ReferenceProfile, exact_rows_for
from workbench.core.drift_report import CheckedBatch, DriftReport, Finding
from workbench.core.drift_retrain import RetrainDecision, decide_retrain, measure_decay
from workbench.core.drift_verdict import weigh
from workbench.core.errors import WorkbenchError
from workbench.core.events import EventSink, RunEvent, RunStarted
from workbench.core.manifest import Manifest
from workbench.core.model import RunRecord, StageStatus, Trigger
from workbench.core.planning import matches_any
from workbench.core.ports import CancelToken, StageJob
from workbench.core.registry import ModelVersion
from workbench.services.contracts import batch_findings
from workbench.services.drift_columns import Progress, build_profile, check_table, no_progress
from workbench.services.drift_importance import model_importance
from workbench.services.session import WorkbenchSession
from workbench.services.workspace import ProjectRef

log = logging.getLogger(__name__)
SCORE_STAGE = "drift-score"
"""$WB_STAGE of the scoring command."""
REFERENCE_CACHE = 4
"""Reference profiles kept in memory per service (by content hash): watch mode checks batch
after batch against the same one. On disk, every reference's profile is kept
(workbench.adapters.profile_store) until `workbench gc` drops its object."""


def _ignore(_event: RunEvent) -> None:
    pass


@dataclass(frozen=True)
class Reference:
    """The data a batch is compared with."""

    path: str
    """The data file, relative to the project."""
    file: Path
    """Where its content is read from (the object store, a snapshot, or the project)."""
    sha256: str
    run_id: int | None
    version: ModelVersion | None
    """The model that scores labelled batches (production, else the reference run's)."""
    description: str


@dataclass(frozen=True)
class BatchOutcome:
    batch: CheckedBatch
    """As recorded, with its report."""
    decision: RetrainDecision
    fresh: bool
    """Checked by this call (False: it was checked before, and nothing was redone)."""
    overrides: dict[str, Path] = field(default_factory=dict)
    """For a retrain: project path -> the training file its snapshot holds there."""

    @property
    def report(self) -> DriftReport | None:
        return self.batch.report


class DriftService:
    def __init__(self, session: WorkbenchSession):
        self.session = session
        self.store = DuckDBDriftStore(session.store)
        self._profiles: dict[tuple[str, str], ReferenceProfile] = {}
        self.profiles_built = 0
        """Reference profiles this service computed (not loaded): the cache's tests count them."""
        self._hasher: StatHasher | None = None

    # -- reading -------------------------------------------------------------------------------

    def batches(self, project: str, limit: int = 20, with_reports: bool = False) -> list[CheckedBatch]:
        """The project's checked batches, newest first, with their retrain runs and versions."""
        return self.store.batches(self.session.project(project).name, limit, with_reports)

    def batch(self, project: str, batch: str) -> CheckedBatch | None:
        """A recorded batch, by id, by path or file name (checked by content), with its report."""
        ref = self.session.project(project)
        if batch.isdigit():
            found = self.store.batch(ref.name, batch_id=int(batch))
            if found is not None:
                return found
        path = self.resolve(ref, batch)
        return self.store.batch(ref.name, sha256=hash_file(path))

    def incoming(self, project: str | ProjectRef) -> Path | None:
        ref = project if isinstance(project, ProjectRef) else self.session.project(project)
        folder = ref.manifest.data.incoming
        return (ref.path / folder).resolve() if folder else None

    def pending(self, project: str) -> list[str]:
        """Batch files in the incoming folder that no check has recorded yet (by content)."""
        ref = self.session.project(project)
        folder = self.incoming(ref)
        if folder is None or not folder.is_dir():
            return []
        known = {b.sha256 for b in self.store.batches(ref.name, limit=1 << 30)}
        hasher = StatHasher(read_hash_cache(self.session.workspace.state_dir))
        found = []
        for rel in sorted(scan_project(folder, ())):
            if is_batch_file(rel) and hasher.digest(folder / rel) not in known:
                found.append(_relative(ref.path, folder / rel))
        return found

    def resolve(self, project: str | ProjectRef, batch: str) -> Path:
        """A batch given as a path (absolute, or relative to the current folder or the
        project) or as a file name in the incoming folder, or in the folder served traffic's
        batches are written to (services/serving_monitor.py)."""
        ref = project if isinstance(project, ProjectRef) else self.session.project(project)
        folder = self.incoming(ref)
        traffic = self.session.workspace.state_dir / "serving" / ref.name / "batches"
        candidates = [Path(batch), ref.path / batch] + ([folder / batch] if folder else []) + [traffic / batch]
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        where = f" or in {_relative(ref.path, folder)}" if folder else ""
        raise WorkbenchError(f"{ref.name}: no batch file {batch!r} (as a path{where})")

    # -- checking ------------------------------------------------------------------------------

    def check_batch(self, project: str, path: str | Path, on_log=lambda _line: None,
                    allow_retrain: bool = True, on_progress: Progress | None = None) -> BatchOutcome:
        """Check a batch (once per content: a batch checked before is returned as recorded),
        record the report and the retrain decision, and prepare the retrain's training file.
        `allow_retrain=False` records a retrain the policy wanted as not done. `on_log` gets
        the scoring command's output; `on_progress(done, total, phase)` columns as they complete
        (phase "profiling reference" when the reference's profile is built, then "checking
        batch"). Raises WorkbenchError when there is nothing to compare with (no data file)."""
        ref = self.session.project(str(project))
        manifest = ref.manifest
        file = self.resolve(ref, str(path))
        rel = _relative(ref.path, file)
        sha = hash_file(file)
        batch_id, existing = self.store.claim(manifest.name, rel, sha)
        if existing is not None:
            if existing.state == "checking":
                raise WorkbenchError(f"{manifest.name}: {rel} is being checked by another workbench process")
            reason = existing.retrain_reason or "checked before"
            return BatchOutcome(existing, RetrainDecision(False, f"checked before (batch {existing.id}): {reason}"),
                                fresh=False)
        try:
            reference = self.reference(ref)
            report = self._compare(ref, reference, file, rel, on_progress or no_progress)
            report = self._weigh(ref, reference, report)
            report = self._measure_decay(ref, reference, report, file, batch_id, on_log)
            decision = decide_retrain(report, manifest.drift.retrain, self.store.retrain_times(manifest.name),
                                      datetime.now(timezone.utc))
            if decision.retrain and not allow_retrain:
                decision = RetrainDecision(False, f"{decision.reason}, but retraining was not allowed for this check")
            self.store.record(batch_id, report, decision, reference.path, reference.sha256, reference.run_id,
                              reference.version.version if reference.version else None)
        except BaseException:
            self.store.release(batch_id)
            raise
        overrides: dict[str, Path] = {}
        if decision.retrain:
            try:
                overrides = self._training_file(ref, reference, file, batch_id)
            except WorkbenchError as exc:
                decision = RetrainDecision(False, f"{decision.reason}, but its training data could not be made: {exc}")
                self.store.retrain_refused(batch_id, decision.reason)
        from workbench.core.alert_events import batch_alerts

        for kind, summary, details in batch_alerts(manifest.name, batch_id, rel, report, decision.reason):
            self.session.alerts.emit(kind, manifest.name, summary, details)
        return BatchOutcome(self.store.batch(manifest.name, batch_id=batch_id), decision, True, overrides)

    def reference(self, project: str | ProjectRef) -> Reference:
        """The data file the production model was trained on (else the latest successful
        run's, else the file as it is now), as recorded."""
        ref = project if isinstance(project, ProjectRef) else self.session.project(project)
        name, data = ref.name, self._data_file(ref)
        registry = self.session.registry
        production = registry.aliases(name).get("production")
        objects = self.session.workspace.state_dir / "objects"
        if production is not None:
            version = registry.version(name, production)
            sha = version.data_fingerprints.get(data)
            if sha is None:
                raise WorkbenchError(f"{name}: production version {production} (run {version.run_id}) recorded no "
                                     f"{data}; its data files: {', '.join(version.data_fingerprints) or 'none'}")
            file = self._content(sha, version.snapshot_id, data, objects)
            return Reference(data, file, sha, version.run_id, version,
                             f"{data} that production version {production} (run {version.run_id}) was trained on")
        latest = self.store.latest_data_run(name, data)
        if latest is not None:
            run_id, sha, snapshot_id = latest
            version = registry.version_for_run(name, run_id)
            file = self._content(sha, snapshot_id, data, objects)
            return Reference(data, file, sha, run_id, version,
                             f"{data} of run {run_id}, the latest successful run (no production model yet)")
        file = ref.path / data
        return Reference(data, file, self._current_sha(file), None, None,
                         f"{data} as it is now (no model yet: no run has recorded it)")

    # -- retraining ----------------------------------------------------------------------------

    def retrain(self, project: str, outcome: BatchOutcome, on_event: EventSink = _ignore,
                cancel: CancelToken | None = None) -> RunRecord:
        """Run the pipeline on the training data plus the batch (trigger `drift`), now, and link
        the run to the batch. A version it registers is promoted only by auto_staging."""
        if not outcome.overrides:
            raise WorkbenchError(f"batch {outcome.batch.id} was not decided for a retrain: {outcome.decision.reason}")

        def on_run_event(event: RunEvent) -> None:
            if isinstance(event, RunStarted):
                self.link_run(outcome.batch.id, event.run_id)
            on_event(event)

        return self.session.run(project, trigger=Trigger.DRIFT, changed_paths=[outcome.batch.path], cancel=cancel,
                                on_event=on_run_event, overrides=outcome.overrides)

    def link_run(self, batch_id: int, run_id: int) -> None:
        self.store.set_retrain_run(batch_id, run_id)

    # -- helpers -------------------------------------------------------------------------------

    def _data_file(self, ref: ProjectRef) -> str:
        manifest = ref.manifest
        if manifest.drift.data_file:
            return manifest.drift.data_file.removeprefix("./")
        if not manifest.data.paths:
            raise WorkbenchError(f"{ref.name}: drift checks need the training data: set [data] paths "
                                 "(or [drift] data_file)")
        found = sorted(p for p in scan_project(ref.path, manifest.ignores, manifest.external_links)
                       if matches_any(p, manifest.data.paths))
        if len(found) != 1:
            what = "no file" if not found else f"{len(found)} files ({', '.join(found[:4])})"
            raise WorkbenchError(f"{ref.name}: [data] paths matches {what}; name the file batches are compared "
                                 "with in [drift] data_file")
        return found[0]

    def _content(self, sha: str, snapshot_id: str, data: str, objects: Path) -> Path:
        for candidate in (objects / sha[:2] / sha[2:], self.session.workspace.state_dir / "snapshots" / snapshot_id / data):
            if candidate.is_file():
                return candidate
        raise WorkbenchError(f"the recorded {data} (sha256 {sha[:12]}) is no longer in the workspace's object store "
                             f"{objects}: nothing to compare with")

    def _current_sha(self, file: Path) -> str:
        """The sha256 of a project file as it is now, read once while its stat is unchanged (watch
        mode checks batch after batch against it: a 600 MB file took half a second each time)."""
        if self._hasher is None:
            self._hasher = StatHasher(read_hash_cache(self.session.workspace.state_dir))
        sha = self._hasher.digest(file)
        return sha if sha and not sha.startswith("unreadable") else hash_file(file)

    def profile(self, reference: Reference, spec, on_progress: Progress = no_progress) -> ReferenceProfile:
        """The reference's profile: from memory, else from the workspace's profile store, else
        computed from its file (and stored). Raises WorkbenchError when its file cannot be read."""
        key = profile_key(spec.psi_bins, exact_rows_for(spec.small_reference_rows))
        found = self._profiles.get((reference.sha256, key))
        if found is not None:
            return found
        store = ProfileStore(self.session.workspace.state_dir)
        found = store.load(reference.sha256, key)
        if found is None:
            with TableStats(reference.file, reference.path) as table:
                found = build_profile(table, spec.psi_bins, exact_rows_for(spec.small_reference_rows), on_progress)
            self.profiles_built += 1
            try:
                self.session.workspace.ensure_state_dir()
                store.save(reference.sha256, key, found)
            except (OSError, WorkbenchError) as exc:  # a read-only workspace still checks, a little slower
                log.warning("cannot store the drift profile of %s: %s", reference.path, exc)
        if len(self._profiles) >= REFERENCE_CACHE:
            self._profiles.pop(next(iter(self._profiles)))
        self._profiles[(reference.sha256, key)] = found
        return found

    def _compare(self, ref: ProjectRef, reference: Reference, file: Path, rel: str,
                 on_progress: Progress = no_progress) -> DriftReport:
        manifest = ref.manifest
        spec = manifest.drift
        profile = self.profile(reference, spec, on_progress)
        try:
            with TableStats(file) as table:
                report = check_table(table, profile, spec, target=manifest.data.target, batch_name=rel,
                                     reference_name=reference.description, on_progress=on_progress)
                rejected = table.rejected
        except WorkbenchError as exc:
            report = compare_profile(profile, {}, 0, spec, target=manifest.data.target, batch_name=rel,
                                     reference_name=reference.description)
            return _with_findings(replace(report, findings=()), (Finding("unreadable", str(exc), blocking=True),),
                                  spec)
        extra = []
        if rejected:
            # Compared on the rows that read; but appended to the training data as it is, such a
            # batch would carry its broken rows along: it blocks a retrain.
            extra.append(Finding("malformed_rows", f"{rel}: {rejected_summary(list(rejected))}", blocking=True))
        for severity, message, column in batch_findings(ref.path, reference.path, file, rel, manifest.data.target):
            # An error-level breach makes the batch's verdict "breaks the contract"; a warning is said.
            kind = "contract_invalid" if severity == "invalid" else "contract"
            extra.append(Finding(kind, message, column, blocking=severity != "warning"))
        if profile.rejected:
            left_out = rejected_summary(list(profile.rejected))
            extra.append(Finding("reference_rows", f"the reference {reference.path}: {left_out}, left out of the "
                                                   "comparison"))
        return _with_findings(report, tuple(extra), spec) if extra else report

    def _measure_decay(self, ref: ProjectRef, reference: Reference, report: DriftReport, file: Path, batch_id: int,
                       on_log) -> DriftReport:
        manifest = ref.manifest
        version = reference.version
        # An unusable batch first: it is not scored at all, and whether it has labels is beside the point.
        if report.blocking:
            return replace(report, decay_note="not measured: the batch cannot be scored as it is (see its findings)")
        if not report.has_labels:
            note = f"not measured: the batch has no labels ({manifest.data.target})" if manifest.data.target else \
                "not measured: no [data] target"
            return replace(report, decay_note=note)
        if not manifest.drift.score:
            return replace(report, decay_note="not measured: no [drift] score command")
        if version is None:
            return replace(report, decay_note="not measured: no model version to score with yet")
        metrics, problem = self._score(ref, manifest, version, file, batch_id, on_log)
        if problem:
            return replace(report, decay_note=f"not measured: {problem}")
        policy = manifest.drift.retrain
        metric = policy.decay_metric or manifest.primary_metric
        if not metric:
            return replace(report, decay_note="not measured: no metric to judge (set [drift.retrain] decay_metric)")
        decay = measure_decay(metric, manifest.primary_metric_goal if metric == manifest.primary_metric else "maximize",
                              version.metrics, metrics, policy.max_decay)
        if decay is None:
            missing = "the scoring command" if metric not in metrics else f"version {version.version}'s evaluation"
            return replace(report, decay_note=f"not measured: {missing} reported no {metric}")
        return replace(report, decay=decay)

    def _score(self, ref: ProjectRef, manifest: Manifest, version: ModelVersion, file: Path, batch_id: int,
               on_log) -> tuple[dict[str, float], str]:
        """Run `[drift] score` on the batch with the version's model: (metrics, problem)."""
        state = self.session.workspace.ensure_state_dir()
        model_dir = Path(version.artifact_path).parent
        if not Path(version.artifact_path).is_file():
            return {}, f"version {version.version}'s model file {version.artifact_path} is gone"
        work = state / "runs" / f"drift-{batch_id}"  # under runs/, so a warm worker can serve it
        batch_dir, output = work / "batch", work / "score"
        shutil.rmtree(work, ignore_errors=True)
        batch_dir.mkdir(parents=True)
        output.mkdir()
        batch_name = "batch" + (file.suffix.lower() or ".csv")
        try:
            os.link(file, batch_dir / batch_name)  # a large batch is not copied for a few seconds' use
        except OSError:
            shutil.copyfile(file, batch_dir / batch_name)
        snapshot = SnapshotStore(state).take(ref.path, manifest.ignores, external=manifest.external_links)
        runner = self.session.runner
        env = manifest.environment
        prepared = runner.prepare(str(snapshot.path), env, on_log, project=manifest.name)
        job = StageJob(
            run_id=0, project=manifest.name, stage=SCORE_STAGE, command=manifest.drift.score,
            project_dir=str(snapshot.path), output_dir=str(output),
            upstream_dirs={version.stage: str(model_dir), "batch": str(batch_dir)}, environment=prepared,
            memory_bytes=env.memory_bytes, cpus=env.cpus, network=env.network, timeout_s=env.timeout_s,
            env={"WB_BATCH_FILE": batch_name, "WB_MODEL_STAGE": version.stage},
        )
        try:
            outcome = runner.run_stage(job, on_log, CancelToken())
        finally:
            shutil.rmtree(batch_dir, ignore_errors=True)  # the score's output stays, for the record
        if outcome.status is not StageStatus.SUCCEEDED:
            tail = f" ({outcome.log_tail[-1].strip()[:200]})" if outcome.log_tail else ""
            return {}, f"the score command failed: {outcome.reason}{tail}"
        try:
            # Not through a symlink the score command planted (to /dev/zero, to a host file).
            raw = read_protocol_json(output / "metrics.json")
        except (OSError, ValueError, NotRegularFile) as exc:
            return {}, f"the score command wrote no readable metrics.json ({exc})"
        metrics = {k: float(v) for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return metrics, ""

    def _weigh(self, ref: ProjectRef, reference: Reference, report: DriftReport) -> DriftReport:
        """Each compared column's share of the model's importance, and the verdict it makes
        (workbench.core.drift_verdict); findings added later re-judge with the weights kept."""
        if not report.features:  # an unreadable or empty batch: nothing to weigh
            return report
        found = model_importance(self.session, ref.name, reference.version)
        return weigh(report, found.features, found.source, ref.manifest.drift, found.why_none)

    def _training_file(self, ref: ProjectRef, reference: Reference, batch: Path, batch_id: int) -> dict[str, Path]:
        """Write the retrain's data file into the object store; {data path: its object}."""
        state = self.session.workspace.ensure_state_dir()
        snapshots = SnapshotStore(state)
        tmp = state / "drift" / f"training-{batch_id}-{os.getpid()}{Path(reference.path).suffix}"
        try:
            write_training_file(reference.file, reference.path, batch, tmp, ref.manifest.drift.retrain.policy)
            entry = snapshots.objects.ingest(tmp, os.stat(tmp))
        finally:
            tmp.unlink(missing_ok=True)
        return {reference.path: snapshots.objects.object_path(entry.sha256)}


def _with_findings(report: DriftReport, extra: tuple[Finding, ...], spec) -> DriftReport:
    """The report with more findings, and the verdict they make."""
    findings = report.findings + extra
    verdict, rule = judge(report.features, findings, spec)
    return replace(report, findings=findings, verdict=verdict, rule=rule, drifted=verdict == "drifted")


def _relative(root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
