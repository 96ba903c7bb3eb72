"""The MLflow mirror: what to send (payloads) and the outbox's drain.

Runs and promotions only ever write outbox rows, in their own DuckDB transactions, so MLflow
being slow, down or misconfigured costs them nothing. Whoever drains (`workbench mirror sync`,
the background process the CLI starts after a command, the TUI) sends the items oldest first;
per project the order holds (a version's run before the version, the version before its
alias), a failure stops that project's queue until its backoff runs out, and a server that does
not answer stops the drain. One drain at a time per workspace (a file lock), and every send is
idempotent, so nothing arrives twice.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from workbench.adapters.duckdb_registry import DuckDBRegistryStore
from workbench.adapters.duckdb_schema import DEFAULT_MLFLOW_KEY
from workbench.adapters.locks import LockBusy, file_lock
from workbench.core.errors import MirrorError
from workbench.core.model import Artifact, RunRecord
from workbench.core.ports import MirrorTarget
from workbench.core.registry import DrainReport, MirrorStatus, OutboxItem

URI_ENV = "WORKBENCH_MLFLOW_URI"
SYNC_ENV = "WORKBENCH_MLFLOW_SYNC"
"""background (default): after a command that queued something, a detached process drains the
outbox; off: only `workbench mirror sync` (or the TUI) drains it."""
OFF = {"off", "none", "disabled", "false", "0"}
MAX_BACKOFF_S = 600.0
BATCH = 1000
"""Outbox items read at a time while draining."""


def resolve_tracking_uri(state_dir: Path, explicit: str | None = None) -> str:
    """An explicit URI, else $WORKBENCH_MLFLOW_URI, else $MLFLOW_TRACKING_URI, else a sqlite
    file in the workspace's state folder. `off` turns the mirror off."""
    for candidate in (explicit, os.environ.get(URI_ENV), os.environ.get("MLFLOW_TRACKING_URI")):
        if candidate and candidate.strip():
            return candidate.strip()
    return default_tracking_uri(state_dir)


def default_tracking_uri(state_dir: Path) -> str:
    """The workspace's own store: a sqlite file in its state folder."""
    return "sqlite:///" + str((state_dir / "mlflow.db").resolve())


def backoff_s(attempts: int) -> float:
    """5 s after the first failure, doubling, at most 10 minutes; jittered."""
    return min(MAX_BACKOFF_S, 5.0 * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)


def is_database_uri(uri: str) -> bool:
    return uri.split(":", 1)[0].split("+", 1)[0] in {"sqlite", "postgresql", "mysql", "mssql"}


NAMESPACE_ENV = "WORKBENCH_MLFLOW_NAMESPACE"
NAMESPACE_FILE = "mlflow-namespace"
NAMESPACE_CHARS = re.compile(r"[^\w\-]")


def mirror_namespace(state_dir: Path) -> str:
    """The name a workspace writes under on a shared tracking server: $WORKBENCH_MLFLOW_NAMESPACE,
    else the one it used before (kept in the state folder, so whoever drains later, the TUI or
    a colleague's shell, writes under the same names), else the engineer's user name."""
    explicit = os.environ.get(NAMESPACE_ENV, "").strip()
    path = state_dir / NAMESPACE_FILE
    if explicit:
        name = _namespace(explicit)
    else:
        try:
            return _namespace(path.read_text().strip())
        except (FileNotFoundError, MirrorError):
            from workbench.services.registry import current_user

            name = _namespace(current_user())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(name + "\n")
    return name


def _namespace(text: str) -> str:
    name = NAMESPACE_CHARS.sub("-", text.strip()).strip("-.")
    if not name:
        raise MirrorError(f"{NAMESPACE_ENV}={text!r}: the MLflow namespace needs letters or digits")
    return name


def is_shared_uri(uri: str) -> bool:
    """A tracking server or a database server, which a team may share; a sqlite file or a local
    folder is one machine's, and keeps the project's own names."""
    return uri.split(":", 1)[0].split("+", 1)[0].lower() not in {"sqlite", "file", ""} and "://" in uri


LINGER_ENV = "WORKBENCH_MLFLOW_LINGER_S"
DEFAULT_LINGER_S = 60.0
"""How long a background sync waits for more items before it exits."""
LINGER_POLL_S = 1.0
LOCK_POLL_S = 0.25
"""How often a foreground drain looks again while another process holds the mirror's lock."""


class MirrorService:
    def __init__(self, store: DuckDBRegistryStore, state_dir: Path, tracking_uri: str | None = None,
                 target_factory: Callable[[str], MirrorTarget] | None = None):
        self.store = store
        self.state_dir = state_dir
        self.tracking_uri = resolve_tracking_uri(state_dir, tracking_uri)
        self._factory = target_factory or self._mlflow
        self._target: MirrorTarget | None = None

    @property
    def off(self) -> bool:
        return self.tracking_uri.lower() in OFF

    @property
    def local_store(self) -> bool:
        """The workspace's own sqlite store, which moves with the workspace."""
        return self.tracking_uri == default_tracking_uri(self.state_dir)

    @property
    def ids_key(self) -> str:
        """How mlflow_ids names this tracking server: the workspace's own store by one name
        wherever the workspace is (its URI holds the workspace's absolute path)."""
        return DEFAULT_MLFLOW_KEY if self.local_store else self.tracking_uri

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "mirror.lock"

    def _mlflow(self, uri: str) -> MirrorTarget:
        from workbench.adapters.mlflow_mirror import MlflowMirror

        # A database URI has no artifact store of its own: runs' files go next to it, in the
        # workspace, rather than into ./mlruns of whatever folder the drain runs in.
        root = self.state_dir / "mlflow-artifacts" if is_database_uri(uri) else None
        if root is not None and os.environ.get("WORKBENCH_MLFLOW_ARTIFACTS"):
            root = Path(os.environ["WORKBENCH_MLFLOW_ARTIFACTS"]).resolve()
        if uri == default_tracking_uri(self.state_dir):
            from workbench.adapters.mlflow_local_store import relocate_local_store

            # A workspace that was moved or copied: its store's locations still name the old folder.
            relocate_local_store(self.state_dir / "mlflow.db", self.state_dir.parent)
            return MlflowMirror(uri, root)
        if not is_shared_uri(uri):
            return MlflowMirror(uri, root)
        # A server or a database may be shared by a team: names carry the workspace's namespace.
        from workbench.adapters.container_owner import workspace_id

        return MlflowMirror(uri, root, namespace=mirror_namespace(self.state_dir),
                            workspace_id=workspace_id(self.state_dir))

    # -- state ---------------------------------------------------------------------------

    def status(self) -> MirrorStatus:
        s = self.store.outbox_summary()
        if self.off:
            state = "off"
        elif s["pending"] == 0:
            state = "in_sync"
        elif s["failing"]:
            state = "error"
        else:
            state = "pending"
        return MirrorStatus(state=state, tracking_uri=self.tracking_uri, pending=s["pending"], failing=s["failing"],
                            last_error=s["last_error"], last_error_at=s["last_error_at"],
                            last_synced_at=s["last_synced_at"], next_attempt_at=s["next_attempt_at"])

    # -- draining --------------------------------------------------------------------------

    def drain(self, timeout_s: float = 60.0, force: bool = True, wait_for_lock: bool = True) -> DrainReport:
        """Send what is waiting, oldest first, for at most about `timeout_s` (one call to MLflow
        may overrun it). `force` ignores the backoff of failed items. Never raises for MLflow's
        sake: the outcome is in the report and in the outbox."""
        started = time.monotonic()
        if self.off:
            return DrainReport(0, 0, self.store.outbox_summary()["pending"], 0.0, "the MLflow mirror is off")
        deadline = started + (timeout_s if wait_for_lock else 0)
        while True:
            try:
                with file_lock(self.lock_path, 0, "the MLflow mirror"):
                    sent, failed, error = self._drain(started + timeout_s, force)
                break
            except LockBusy:
                sent, failed, error = 0, 0, "another workbench process is syncing MLflow now"
            # The holder is most often the background sync lingering after its drain: it sends
            # what is due within a second and then keeps the lock for a minute, idle. Waiting for
            # the lock would wait out that minute; what the caller wants is an empty outbox.
            if self.store.outbox_summary()["pending"] == 0:
                sent, failed, error = 0, 0, None
                break
            if time.monotonic() + LOCK_POLL_S > deadline:
                break
            time.sleep(LOCK_POLL_S)
        pending = self.store.outbox_summary()["pending"]
        return DrainReport(sent, failed, pending, time.monotonic() - started, error)

    def _drain(self, deadline: float, force: bool) -> tuple[int, int, str | None]:
        sent = failed = 0
        error = None
        blocked: set[str] = set()
        ids = None
        while time.monotonic() < deadline:
            items = [i for i in self.store.outbox_items(limit=BATCH) if i.project not in blocked]
            now = datetime.now(timezone.utc)
            progress = False
            for item in items:
                if time.monotonic() >= deadline:
                    break
                if item.project in blocked:
                    continue
                if not force and item.next_attempt_at is not None and item.next_attempt_at > now:
                    blocked.add(item.project)  # its turn has not come: keep the project's order
                    continue
                try:
                    target = self._connect()
                    if ids is None:
                        ids = self.store.mlflow_ids(self.ids_key)
                    new_ids = _send(target, item, ids)
                except Exception as exc:  # MirrorError, or a bug: either way the item waits
                    problem = exc if isinstance(exc, MirrorError) else MirrorError(f"internal error: {exc!r}")
                    self.store.item_failed(item.id, str(problem), backoff_s(item.attempts + 1))
                    failed += 1
                    error = str(problem)
                    blocked.add(item.project)
                    if problem.unreachable or self._target is None:
                        return sent, failed, error
                    continue
                ids.update(new_ids)
                self.store.item_done(item.id, self.ids_key, new_ids)
                sent += 1
                progress = True
            if not progress:
                break
        return sent, failed, error

    def _connect(self) -> MirrorTarget:
        if self._target is None:
            self._target = self._factory(self.tracking_uri)
        return self._target

    def sync_in_background(self, budget_s: float = 300.0) -> None:
        """What the detached `mirror sync --background` process does: drain what is due while
        nobody else is, then look once more after letting go of the lock, so an item queued
        while we were finishing is not left behind."""
        deadline = time.monotonic() + budget_s
        linger_s = float(os.environ.get(LINGER_ENV, DEFAULT_LINGER_S))
        while time.monotonic() < deadline:
            try:
                with file_lock(self.lock_path, 0, "the MLflow mirror"):
                    self._drain(deadline, force=False)
                    # Stay a while, holding the lock: in watch mode a run lands every few seconds,
                    # and one process that imported mlflow once beats a new process per run.
                    self._wait_for_due(min(linger_s, max(0.0, deadline - time.monotonic())))
            except LockBusy:
                return  # the holder looks again after it lets go
            if not self.has_due():
                return

    def _wait_for_due(self, seconds: float) -> bool:
        """Sleep first, then look: an item that is due but waits behind its project's backoff
        must not make this loop spin."""
        until = time.monotonic() + max(seconds, LINGER_POLL_S)
        while time.monotonic() < until:
            time.sleep(LINGER_POLL_S)
            if self.has_due():
                return True
        return False

    def has_due(self) -> bool:
        return not self.off and self.store.has_due_items()

    def start_background_sync(self, workspace_root: Path) -> bool:
        """Start a detached process that drains the outbox, unless there is nothing due, the
        mirror is off, or $WORKBENCH_MLFLOW_SYNC says not to. Returns whether it started one."""
        if os.environ.get(SYNC_ENV, "background").strip().lower() in OFF or not self.has_due():
            return False
        try:
            with file_lock(self.lock_path, 0, "the MLflow mirror"):
                pass
        except LockBusy:
            return False  # a drain is under way, and it looks for new items after it lets go
        env = dict(os.environ, **{URI_ENV: self.tracking_uri})
        try:
            subprocess.Popen([sys.executable, "-m", "workbench", "--workspace", str(workspace_root), "mirror", "sync",
                              "--background"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True, env=env)
        except OSError:
            return False  # the next command tries again; nothing is lost
        return True


def _send(target: MirrorTarget, item: OutboxItem, ids: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    p = item.payload
    if item.kind == "log_run":
        key = ("run", str(p["run_id"]))
        return {key: target.log_run(p, ids.get(key))}
    if item.kind == "register_version":
        run_key, version_key = ("run", str(p["run_id"])), ("version", f"{p['project']}:{p['version']}")
        run_id, version = target.register_version(p, ids.get(run_key), ids.get(version_key))
        return {run_key: run_id, version_key: version}
    if item.kind == "set_alias":
        version_key = ("version", f"{p['project']}:{p['version']}")
        return {version_key: target.set_alias(p, ids.get(version_key))}
    raise MirrorError(f"unknown outbox item kind {item.kind!r} (written by a newer workbench?)")


# -- payloads --------------------------------------------------------------------------------

def run_payload(record: RunRecord, primary_metric: str | None, model: Artifact | None,
                model_stage: str | None) -> dict[str, Any]:
    """Everything MLflow gets about a run, frozen when the run finishes."""
    params: dict[str, str] = {}
    owners: dict[str, str] = {}
    for stage in record.stages:
        for name, value in stage.params.items():
            if name in params and params[name] != value:
                # Two stages disagree on a name: keep both, each under its stage's name.
                params[f"{owners[name]}.{name}"] = params.pop(name)
                params[f"{stage.stage}.{name}"] = value
            elif name not in params:
                params[name], owners[name] = value, stage.stage
    tags = {
        "workbench.run_id": str(record.id),
        "workbench.project": record.project,
        "workbench.trigger": str(record.trigger),
        "workbench.status": str(record.status),
        "workbench.runner": record.runner,
        "workbench.snapshot_id": record.snapshot_id,
        "workbench.image_id": record.image_id,
        "workbench.image_tag": record.image_tag,
        "workbench.manifest_hash": record.manifest_hash,
        "workbench.inputs_digest": inputs_digest(record),
        "workbench.gates": f"{sum(g.passed is True for g in record.gates)} passed, "
                           f"{sum(g.passed is False for g in record.gates)} failed",
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": f"workbench run {record.id}",
    }
    if record.reason:
        tags["workbench.reason"] = record.reason
    if record.sweep is not None:
        tags["workbench.sweep"], tags["workbench.sweep_trial"] = record.sweep, str(record.sweep_trial)
    if record.reused_stages:
        tags["workbench.reused_stages"] = ",".join(record.reused_stages)
    for stage in record.stages:
        tags[f"workbench.cache_key.{stage.stage}"] = stage.cache_key
    for dataset in record.datasets:
        tags[f"workbench.data.{dataset.path}"] = dataset.fingerprint
    if primary_metric:
        tags["workbench.primary_metric"] = primary_metric
    finished = record.finished_at or record.started_at
    return {
        "run_id": record.id, "project": record.project, "run_name": f"{record.project} run {record.id}",
        "status": str(record.status), "started_ms": _ms(record.started_at), "finished_ms": _ms(finished),
        "params": params, "metrics": {k: (None if v != v else v) for k, v in record.metrics.items()},
        "tags": tags,
        "model": {"path": model.path, "name": model.name, "sha256": model.sha256, "stage": model_stage}
        if model else None,
    }


def inputs_digest(record: RunRecord) -> str:
    """One hash for everything that went into the run: its stages' cache keys."""
    text = "\n".join(f"{s.stage}:{s.cache_key}" for s in record.stages)
    return hashlib.sha256(text.encode()).hexdigest()


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)
