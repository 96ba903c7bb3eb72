"""The model registry use cases: register versions, promote, roll back, list, audit, mirror.

Both front ends call this (the CLI through `workbench models|promote|rollback|history|mirror`,
the TUI directly). The policy is decided by workbench.core.promotion inside the registry
store's transaction; this layer adds what needs the file system: the deploy pointer (the model
file is verified and copied before the transaction, and the pointer switched after it commits,
under a per-project lock so pointers switch in commit order), the audit anchor (written after
each commit, see workbench.core.audit) and the MLflow outbox's drain.

A crash between the commit and the anchor write or the pointer switch leaves them one step
behind the store; `reconcile` (run when a session opens the store, so by the next command of
any kind) brings both up to date, or says what it could not repair.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from workbench.adapters.audit_files import AuditFiles
from workbench.adapters.deploy import DeployPointers, ModelCheck
from workbench.adapters.duckdb_promotion_facts import AliasFacts
from workbench.adapters.duckdb_registry import UNCHECKED, DuckDBRegistryStore, UncheckedType
from workbench.adapters.duckdb_store import DuckDBLineageStore
from workbench.adapters.locks import LockBusy
from workbench.core.contract import CONTRACT_STAGE
from workbench.core.audit import AuditTampered, IntegrityReport
from workbench.core.errors import WorkbenchError
from workbench.core.manifest import Manifest
from workbench.core.model import RunRecord, RunStatus, StageStatus, Trigger
from workbench.core.promotion import (
    ALIASES, Alias, Check, Decision, VersionFacts, decide_promotion, rollback_target, with_checks,
)
from workbench.core.registry import AuditEntry, DrainReport, MirrorStatus, ModelVersion
from workbench.services.faults import fault_point
from workbench.services.mirror import MirrorService, inputs_digest, run_payload
from workbench.services.workspace import Workspace, load_manifest

__all__ = ["RegistryService", "UNCHECKED"]


def current_user() -> str:
    """Who the audit trail names: $WORKBENCH_USER (for bots and CI), else the login name."""
    name = os.environ.get("WORKBENCH_USER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


class RegistryService:
    def __init__(self, workspace: Workspace, lineage: DuckDBLineageStore, mlflow_uri: str | None = None,
                 mirror_target=None):
        """`mlflow_uri` overrides $WORKBENCH_MLFLOW_URI; `mirror_target(uri)` replaces MLflow (tests)."""
        self.workspace = workspace
        self.audit = AuditFiles(workspace.state_dir / "audit")
        self.store = DuckDBRegistryStore(lineage, self.audit)
        self.lineage = lineage
        self.deploy = DeployPointers(workspace.state_dir / "deploy")
        self.mirror = MirrorService(self.store, workspace.state_dir, mlflow_uri, mirror_target)
        self.card_files = None
        """(project, version) -> {file name: text}: the model card a promotion writes into the
        release beside metadata.json (set by WorkbenchSession; None writes none)."""
        self.alerts = None
        """workbench.services.alerts.Alerts: an applied promotion or rollback is an alert (set by
        WorkbenchSession; None sends none)."""

    # -- registering -----------------------------------------------------------------------

    def after_run(self, record: RunRecord, manifest: Manifest, register: bool = True,
                  late: bool = False) -> tuple[ModelVersion | None, bool]:
        """Queue a finished run for MLflow and register its model as a version.

        A version is registered when the run succeeded, ran the whole pipeline (a `--stage`
        run may lack the metrics the gates need) and logged an artifact of the manifest's
        model kind; a `reproduce` run only checks an existing version. The same model file is
        one version: a rerun that reuses it returns the existing one. Returns (version or
        None, whether it was created now).

        `register=False` queues the run for MLflow only (a sweep's trials: only the best one
        becomes a version); `late=True` registers a run queued that way, once the sweep knows
        it is the best.
        """
        self._refuse_another_folder(record)
        model, stage = _model_artifact(record, manifest.promotion.model_artifact_kind)
        payload = run_payload(record, manifest.primary_metric, model, stage.stage if stage else None)
        draft = None
        # the built-in contract stage is not one of the manifest's (it ran, or the run failed)
        complete = {s.stage for s in record.stages if s.stage != CONTRACT_STAGE} == set(manifest.stages)
        if (register and model is not None and record.status is RunStatus.SUCCEEDED and complete
                and record.trigger is not Trigger.REPRODUCE):
            metrics = record.metrics
            draft = ModelVersion(
                project=record.project, version=0, run_id=record.id, created_at=datetime.now(timezone.utc),
                stage=stage.stage, artifact_name=model.name, artifact_path=model.path, sha256=model.sha256,
                size=model.size, run_status=str(record.status), run_reason=record.reason, metrics=metrics,
                params={k: v for s in record.stages for k, v in s.params.items()}, gates=tuple(record.gates),
                primary_metric=manifest.primary_metric,
                primary_value=metrics.get(manifest.primary_metric) if manifest.primary_metric else None,
                snapshot_id=record.snapshot_id, image_id=record.image_id, manifest_hash=record.manifest_hash,
                data_fingerprints={d.path: d.fingerprint for d in record.datasets},
                inputs_digest=inputs_digest(record),
            )
        version, created = self.store.record_run(record.project, record.id, payload, draft,
                                                 cache_key=stage.cache_key if stage else "", late=late)
        if created and version is not None and manifest.promotion.auto_staging and record.gates_passed:
            self.promote(record.project, version.version, Alias.STAGING,
                         reason=f"[promotion] auto_staging: run {record.id} passed every gate",
                         user="workbench (auto_staging)")
        return version, created

    def _refuse_another_folder(self, record: RunRecord) -> None:
        """A project's registry takes runs of one folder. A copy of the project under the same
        name (which the workspace refuses to run; this covers a copy made while a run was under
        way) must not add versions to the original's. A project whose old folder no longer
        holds it was moved or renamed: its runs carry on."""
        folder = self.store.run_folder(record.id)
        if folder is None:
            return
        for other in sorted(self.store.version_folders(record.project) - {folder}):
            if self.workspace.folder_holds(other, record.project):
                raise WorkbenchError(
                    f"run {record.id} of {record.project} was made in {folder}, but {record.project}'s model "
                    f"versions come from {other}, which is still a project named {record.project}: a name "
                    "identifies one folder, so this run is neither registered nor mirrored; rename one of them "
                    "(project.name in its workbench.toml)")

    def catch_up(self) -> list[int]:
        """Register and queue runs a stopped workbench recorded but never registered."""
        done = []
        for run_id, project_path in self.store.unrecorded_runs():
            try:
                manifest, _ = load_manifest(Path(project_path))
                self.after_run(self.lineage.get_run(run_id), manifest)
            except WorkbenchError:
                continue  # project gone or manifest broken: the run stays as it is
            done.append(run_id)
        return done

    # -- reading ---------------------------------------------------------------------------

    def models(self, project: str) -> list[ModelVersion]:
        """The project's versions, newest first, each with its aliases (`status`)."""
        name = self._manifest(project).name
        self.catch_up()
        return self.store.list_versions(name)

    def version(self, project: str, version: int) -> ModelVersion:
        return self.store.get_version(self._manifest(project).name, version)

    def version_for_run(self, project: str, run_id: int) -> ModelVersion | None:
        """The version a run's model file is, registered by that run or an earlier one."""
        manifest = self._manifest(project)
        return self.store.version_for_run(manifest.name, run_id, manifest.promotion.model_artifact_kind)

    def aliases(self, project: str) -> dict[str, int]:
        return self.store.aliases(self._manifest(project).name)

    def unverified_aliases(self, project: str) -> dict[str, str]:
        """Alias -> why the audit trail does not vouch for it (a forged or edited alias row; when
        the trail itself does not verify, every alias of the project), for listings to mark it
        rather than show it as if it held; empty when all verify."""
        name = self._manifest(project).name
        try:
            self.store.guard(name)
        except AuditTampered as exc:
            aliases = self.store.aliases(name)
            own = {alias: p.detail for alias in aliases for p in exc.problems
                   if p.table == "aliases" and p.row == f"{name} {alias}"}
            if own or not exc.problems:
                return own
            why = f"the audit trail does not verify ({exc.problems[0]})"
            return {alias: why for alias in aliases}
        return {}

    def history(self, project: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Audit rows, newest first: every promotion, rollback and refusal."""
        name = self._manifest(project).name if project else None
        return self.store.history(name, limit)

    def verify(self, project: str | None = None) -> IntegrityReport:
        """Everything the audit trail vouches for (chain, anchor, aliases, version seals), and
        `project`'s share of the rows; an anchor a crash left behind is repaired and said so."""
        name = self._manifest(project).name if project else None
        return self.store.verify(name)

    def deployed(self, project: str, alias: str) -> dict | None:
        """The deploy pointer's metadata for the alias (what a serving process would load)."""
        return self.deploy.current(self._manifest(project).name, _alias(alias))

    # -- promoting ---------------------------------------------------------------------------

    def promote(self, project: str, version: int, to: str, reason: str = "", user: str | None = None,
                dry_run: bool = False, expected_from: int | None | UncheckedType = UNCHECKED) -> Decision:
        """Move `to` (staging or production) to `version`, if the policy allows it.

        With `dry_run`, only say what would happen (nothing is written or audited): the TUI
        shows that decision (gates, champion/challenger) for confirmation, then calls again with
        `expected_from=decision.from_version`, so that if the alias moved in between, the
        promotion is refused ("moved meanwhile") rather than replacing a version nobody saw.
        A refusal is returned (and audited), not raised: look at `decision.allowed`.
        """
        manifest = self._manifest(project)
        name, alias = manifest.name, _alias(to)
        self.catch_up()
        mv = self.store.get_version(name, version)

        def decide(candidate: VersionFacts | None, facts: AliasFacts, check: ModelCheck) -> Decision:
            candidate = replace(candidate, model_intact=check.ok, model_problem=check.problem)
            return decide_promotion(name, candidate, alias, facts.holder, facts.champion, manifest.gates,
                                    manifest.promotion, manifest.primary_metric, manifest.primary_metric_goal)

        if dry_run:
            check = self.deploy.check(mv.artifact_path, mv.sha256, mv.version, mv.run_id)
            return self.store.preview(name, alias, version, lambda c, f: decide(c, f, check))
        return self._apply(name, alias, version, mv, decide, expected_from, user, reason)

    def rollback(self, project: str, to_version: int | None = None, alias: str = "production", reason: str = "",
                 user: str | None = None, dry_run: bool = False,
                 expected_from: int | None | UncheckedType = UNCHECKED) -> Decision:
        """Put the alias back on the version it replaced (or on `to_version`, which must have
        held it before). Gates and the champion are not re-checked: the target served under
        this alias already; its model file is verified. Refusals are returned and audited."""
        manifest = self._manifest(project)
        name, alias = manifest.name, _alias(alias)
        preview = self.store.preview(name, alias, None, lambda _c, f: rollback_target(name, alias, f.moves, f.holder,
                                                                                       to_version))
        target = preview.version if preview.allowed else None
        mv = self.store.get_version(name, target) if target is not None else None

        def decide(_candidate, facts: AliasFacts, check: ModelCheck | None) -> Decision:
            decision = rollback_target(name, alias, facts.moves, facts.holder, to_version)
            if decision.allowed and check is not None:
                if decision.version != target:
                    decision = with_checks(decision, Check("alias_unchanged", False,
                                                           f"{alias} moved meanwhile: the rollback now goes to "
                                                           f"version {decision.version}, not {target}; check again"))
                elif check.ok:
                    decision = with_checks(decision, Check("model_intact", True,
                                                           f"model file sha256 {mv.sha256[:12]} verified"))
                else:
                    decision = with_checks(decision, Check("model_intact", False, check.problem))
            return decision

        if dry_run:
            check = self.deploy.check(mv.artifact_path, mv.sha256, mv.version, mv.run_id) if mv else None
            return self.store.preview(name, alias, None, lambda c, f: decide(c, f, check))
        if isinstance(expected_from, UncheckedType):
            expected_from = preview.from_version
        return self._apply(name, alias, None, mv, decide, expected_from, user, reason)

    def _apply(self, name: str, alias: str, version: int | None, mv: ModelVersion | None, decide,
               expected_from, user: str | None, reason: str) -> Decision:
        """Under the project's deploy lock: stage the release (the model file copied and
        verified), decide again and record the move in one transaction, anchor the audit
        chain's new head, then switch the pointer. A failed transaction discards the staged
        release; the pointer never saw it. (The fault points are for the crash tests.)"""
        with self.deploy.locked(name):
            self._repair_pointers(name)
            release, check = (self.deploy.prepare(name, mv.version, mv.run_id, mv.artifact_path, mv.sha256)
                              if mv else (None, None))
            try:
                fault_point("before_commit")
                applied = self.store.apply(name, alias, version, lambda c, f: decide(c, f, check), expected_from,
                                           user or current_user(), socket.gethostname(), reason)
            except BaseException:
                self.deploy.discard(release)
                raise
            fault_point("after_commit")
            fault_point("before_anchor")
            self.store.write_anchor(applied.anchor)
            fault_point("before_switch")
            self._switch(applied.decision, mv, release, user, reason)
            fault_point("after_switch")
        self._alert(applied.decision, user, reason)
        return applied.decision

    def _alert(self, decision: Decision, user: str | None, reason: str) -> None:
        from workbench.core.alert_events import promotion_alert

        alert = promotion_alert(decision) if self.alerts is not None else None
        if alert is not None:
            kind, summary, details = alert
            self.alerts.emit(kind, decision.project, summary, details | {"by": user or current_user(),
                                                                         "reason": reason})

    def _switch(self, decision: Decision, mv: ModelVersion | None, release, user: str | None, reason: str) -> None:
        if not decision.applied or release is None or mv is None:
            self.deploy.discard(release)
            return
        self.deploy.activate(decision.project, decision.alias, release, _metadata(mv, decision, user, reason),
                             self._card(mv))

    def _repair_pointers(self, project: str) -> list[str]:
        """Point each alias's deploy folder at its holder: a workbench that stopped between
        committing a promotion and switching the pointer leaves them apart. Only an alias
        state the audit trail vouches for is deployed (AuditTampered otherwise). Returns what
        it repaired or could not, one line each. Call under the project's deploy lock."""
        aliases = self.store.aliases(project)
        stale = {alias: holder for alias, holder in aliases.items()
                 if (self.deploy.current(project, alias) or {}).get("version") != holder}
        if not stale:
            return []
        self.store.guard(project)
        said = []
        for alias, holder in stale.items():
            was = (self.deploy.current(project, alias) or {}).get("version")
            was = f"version {was}" if was is not None else "nothing"
            mv = self.store.get_version(project, holder)
            release, check = self.deploy.prepare(project, mv.version, mv.run_id, mv.artifact_path, mv.sha256)
            if release is None:
                said.append(f"{project} {alias}: the deploy pointer holds {was}, the registry version {holder}, "
                            f"and it cannot be repaired: {check.problem}")
                continue
            entry = next((e for e in self.store.history(project, 200) if e.alias == alias and e.to_version == holder
                          and e.action != "refuse"), None)
            decision = Decision(project=project, alias=alias, version=holder,
                                action=entry.request if entry else "promote",
                                from_version=entry.from_version if entry else None, checks=(), applied=True,
                                audit_id=entry.id if entry else None, at=entry.at.isoformat() if entry else None)
            self.deploy.activate(project, alias, release,
                                 _metadata(mv, decision, entry.actor if entry else None, entry.reason if entry else ""),
                                 self._card(mv))
            said.append(f"{project} {alias}: the deploy pointer held {was}, the registry version {holder} (a "
                        "promotion stopped before switching it); repaired")
        return said

    def _card(self, mv: ModelVersion) -> dict[str, str]:
        """The version's model card for its release. The promotion has committed by now: a card
        that cannot be built says why in its place rather than stop the pointer's switch."""
        if self.card_files is None:
            return {}
        try:
            return self.card_files(mv.project, mv.version)
        except WorkbenchError as exc:
            return {"model-card.md": f"# Model card: {mv.project} version {mv.version}\n\n"
                                     f"The card could not be built: {exc}\n"}

    def reconcile(self) -> list[str]:
        """Bring the audit anchor and the deploy pointers in line with the store after a crash,
        or say why not: one line per thing found. Cheap when all agree (one short read and a
        metadata.json per alias), so every session runs it when it opens the store."""
        said = []
        anchor_current, aliases = self.store.quick_state()
        if not anchor_current:
            report = self.store.verify()
            said += report.repaired
            if report.problems:
                said.append(f"the audit trail does not verify ({report.problems[0]}"
                            + (f", and {len(report.problems) - 1} more" if len(report.problems) > 1 else "")
                            + "): promotions are refused; see `workbench history PROJECT --verify`")
                return said
        stale = sorted({project for (project, alias), holder in aliases.items()
                        if (self.deploy.current(project, alias) or {}).get("version") != holder})
        for project in stale:
            try:
                with self.deploy.locked(project, timeout_s=2.0):
                    said += self._repair_pointers(project)
            except LockBusy:
                continue  # a promotion of it is under way; it repairs the pointers itself
            except AuditTampered as exc:
                # The guard's message starts with the project's name: said once here.
                said.append(f"{project}: deploy pointers not repaired: "
                            f"{str(exc).removeprefix(f'{project}: ').removeprefix('refused: ')}")
        return said

    # -- the MLflow mirror -------------------------------------------------------------------

    @property
    def tracking_uri(self) -> str:
        return self.mirror.tracking_uri

    def mirror_status(self) -> MirrorStatus:
        """in_sync / pending / error / off, with counts and the last error: for a status bar."""
        return self.mirror.status()

    def drain_mirror(self, timeout_s: float = 60.0, force: bool = True) -> DrainReport:
        """Send what the outbox holds to MLflow now (blocking; imports mlflow, about 1-2 s)."""
        self.catch_up()
        return self.mirror.drain(timeout_s=timeout_s, force=force)

    def request_mirror_sync(self) -> bool:
        """Start a detached process that drains the outbox, if anything is due (never blocks)."""
        return self.mirror.start_background_sync(self.workspace.root)

    # -- helpers ---------------------------------------------------------------------------

    def _manifest(self, project: str) -> Manifest:
        return self.workspace.project(project).manifest


def _alias(name: str) -> str:
    value = str(name).strip().lower()
    if value not in ALIASES:
        raise WorkbenchError(f"alias must be {' or '.join(ALIASES)}, got {name!r}")
    return value


def _model_artifact(record: RunRecord, kind: str):
    """The run's model file: the last stage's artifact of the model kind (stages in order)."""
    found = (None, None)
    for stage in record.stages:
        if stage.status not in (StageStatus.SUCCEEDED, StageStatus.REUSED):
            continue
        for artifact in stage.artifacts:
            if artifact.kind == kind:
                found = (artifact, stage)
                break
    return found


def _metadata(mv: ModelVersion, decision: Decision, user: str | None, reason: str) -> dict:
    """What the deploy folder says about its model: enough to trace it without the workbench."""
    return {
        "project": mv.project, "alias": decision.alias, "version": mv.version, "run_id": mv.run_id,
        "stage": mv.stage, "artifact": mv.artifact_name, "snapshot_id": mv.snapshot_id, "image_id": mv.image_id,
        "manifest_hash": mv.manifest_hash, "inputs_digest": mv.inputs_digest,
        "data_fingerprints": mv.data_fingerprints, "metrics": {k: v for k, v in mv.metrics.items() if v == v},
        "primary_metric": mv.primary_metric, "action": decision.action, "from_version": decision.from_version,
        "audit_id": decision.audit_id, "promoted_at": decision.at, "promoted_by": user or current_user(),
        "reason": reason,
    }

