"""The model registry's records: versions, the audit trail, and the MLflow mirror's state.

Plain dataclasses: the registry store persists them, the CLI prints them, the TUI shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from workbench.core.gates import GateResult


@dataclass(frozen=True)
class ModelVersion:
    """A trained model registered from a run: numbered per project, tied to the run's lineage."""

    project: str
    version: int
    run_id: int
    """The run that registered it; its code snapshot, data, params and image are the version's."""
    created_at: datetime
    stage: str
    """The pipeline stage that wrote the model file."""
    artifact_name: str
    artifact_path: str
    sha256: str
    size: int
    run_status: str
    run_reason: str
    metrics: dict[str, float]
    params: dict[str, str]
    gates: tuple[GateResult, ...]
    """Gate results as the run recorded them (a promotion re-checks the manifest's gates)."""
    primary_metric: str | None
    primary_value: float | None
    snapshot_id: str
    image_id: str
    manifest_hash: str
    data_fingerprints: dict[str, str]
    """Data file path -> sha256."""
    inputs_digest: str
    """sha256 over the run's stage cache keys: one hash for all its inputs, params and image."""
    aliases: tuple[str, ...] = ()
    """Aliases it holds now."""
    ever_in: tuple[str, ...] = ()
    """Aliases it has ever held."""
    reproduced_by: int | None = None
    """A `reproduce` run that wrote the same model file, if any."""

    @property
    def status(self) -> str:
        """production, staging, archived (held an alias once, not now) or registered."""
        for alias in ("production", "staging"):
            if alias in self.aliases:
                return alias
        return "archived" if self.ever_in else "registered"

    @property
    def gates_passed(self) -> bool:
        return all(g.passed is True for g in self.gates)


@dataclass(frozen=True)
class AuditEntry:
    """One promotion, rollback or refusal. Append-only; each row hashes the one before it."""

    id: int
    at: datetime
    actor: str
    host: str
    project: str
    action: str
    """promote, rollback or refuse."""
    request: str
    """What was asked: promote or rollback."""
    alias: str
    version: int | None
    """The version asked for."""
    from_version: int | None
    """The alias's holder before."""
    to_version: int | None
    """The alias's holder after (the same as before when refused)."""
    reason: str
    """Why, in the user's words (--reason)."""
    message: str
    """The decision: what moved, or every rule that refused it, with the numbers."""
    checks: list[dict[str, Any]] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    comparison: dict[str, Any] | None = None
    """Champion/challenger numbers: metric, goal, both versions and values, delta, tolerance."""
    row_hash: str = ""


@dataclass(frozen=True)
class OutboxItem:
    """One pending call to MLflow, kept in DuckDB until MLflow has it."""

    id: int
    project: str
    kind: str
    """log_run, register_version or set_alias."""
    key: str
    """What it is about, e.g. run:12, version:3, alias:production."""
    payload: dict[str, Any]
    created_at: datetime
    attempts: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class MirrorStatus:
    """How far MLflow is behind: what the TUI's status bar and `workbench mirror status` show."""

    state: str
    """in_sync, pending (items waiting, no error yet), error (the last attempt failed) or off."""
    tracking_uri: str
    pending: int
    failing: int
    """Pending items whose last attempt failed."""
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_synced_at: datetime | None = None
    next_attempt_at: datetime | None = None

    @property
    def summary(self) -> str:
        if self.state == "in_sync":
            return "MLflow in sync"
        if self.state == "off":
            return f"MLflow mirror off ({self.pending} pending)"
        if self.state == "pending":
            return f"MLflow: {self.pending} pending"
        return f"MLflow: {self.pending} pending, error: {self.last_error}"


@dataclass(frozen=True)
class DrainReport:
    sent: int
    failed: int
    pending: int
    """Items still waiting afterwards."""
    seconds: float
    error: str | None = None
