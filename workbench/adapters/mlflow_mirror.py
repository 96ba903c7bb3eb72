"""MLflow as a mirror of the workbench's runs and model registry.

Imported only by whoever drains the outbox (`workbench mirror sync`, its background process,
or the TUI's worker): `import mlflow` costs over a second, so nothing on the start-up or run
path imports this module.

Each call is idempotent. A run carries the tag `workbench.run_id` and, once logged completely,
`workbench.mirrored = 1`; a half-logged run (the drain died) is deleted and logged again. A
model version carries `workbench.version`; it is looked up by that tag before one is created.
Aliases are MLflow 3 aliases (`set_registered_model_alias`), not the deprecated stages.

On a team's shared server, a workspace writes under a namespace: its experiment and registered
model are named `<namespace>.<project>` (MLflow refuses '/' and ':' in a model name), and each
carries `workbench.namespace` and `workbench.workspace` (the workspace's id) as tags, like its
runs and versions. An experiment or registered model tagged with another workspace's id is
refused, never written into: two workspaces that chose the same namespace would otherwise
overwrite each other's versions and aliases (each numbers its versions from 1). The
workspace's own sqlite store has no namespace: names stay the project's.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from workbench.adapters.regular_files import NotRegularFile, hash_file
from workbench.core.errors import MirrorError

HTTP_DEFAULTS = {
    # MLflow's own defaults retry for minutes; the outbox retries anyway, with its own backoff.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    # Against a server, MLflow writes "View run ... at <url>" to stdout when a run ends: that
    # would land in `workbench mirror sync --json` and in the TUI's terminal.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
MIRRORED = "workbench.mirrored"
RUN_STATUS = {"succeeded": "FINISHED", "gate_failed": "FAILED", "failed": "FAILED", "running": "RUNNING"}
UNREACHABLE_MARKERS = ("Max retries exceeded", "Connection refused", "Failed to establish", "Name or service not known",
                       "timed out", "Read timed out", "Temporary failure in name resolution")
KEY_CHARS = re.compile(r"[^\w\-. /:]")
# MLflow's limits for one log_batch call and for a value.
MAX_PARAMS, MAX_TAGS, MAX_METRICS, MAX_VALUE = 100, 100, 1000, 6000


class MlflowMirror:
    """The MirrorTarget for an MLflow tracking server (or a sqlite file)."""

    def __init__(self, tracking_uri: str, artifact_root: Path | None = None, namespace: str | None = None,
                 workspace_id: str | None = None):
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        try:
            from mlflow import MlflowClient
        except ImportError as exc:  # pragma: no cover - mlflow is a dependency
            raise MirrorError(f"mlflow cannot be imported: {exc}") from None
        for name in ("mlflow", "alembic", "sqlalchemy"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        """Where runs' artifacts go for a database URI (a server chooses its own)."""
        self.namespace = namespace
        self.workspace_id = workspace_id
        self._experiments: dict[str, str] = {}
        self._models: set[str] = set()
        """Registered models known to exist (and to be this workspace's) in this drain."""
        with self._errors("connecting"):
            self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    # -- runs --------------------------------------------------------------------------------

    def log_run(self, payload: dict[str, Any], known_id: str | None) -> str:
        run_no = payload["run_id"]
        with self._errors(f"logging run {run_no}"):
            if known_id:
                run = self._get_run(known_id)
                if run is not None and run.data.tags.get(MIRRORED) == "1":
                    return known_id
            experiment = self._experiment(payload["project"])
            found = self.client.search_runs([experiment], filter_string=f"tags.`workbench.run_id` = '{run_no}'",
                                            max_results=100)
            for run in found:
                if run.data.tags.get(MIRRORED) == "1":
                    return run.info.run_id
            for run in found:  # half-logged by a drain that stopped: start it over
                self.client.delete_run(run.info.run_id)
            tags = {_key(k): _value(v) for k, v in payload["tags"].items()} | self._owner_tags()
            run = self.client.create_run(experiment, start_time=payload["started_ms"], tags=tags,
                                         run_name=payload["run_name"])
            run_id = run.info.run_id
            self._log_values(run_id, payload)
            model = payload.get("model")
            if model:
                path = Path(model["path"])
                if _sha256(path) == model["sha256"]:
                    self.client.log_artifact(run_id, str(path), "model")
                else:
                    self.client.set_tag(run_id, "workbench.model_missing", f"{model['path']} (gone or changed)")
            self.client.set_terminated(run_id, RUN_STATUS.get(payload["status"], "KILLED"),
                                       end_time=payload.get("finished_ms"))
            self.client.set_tag(run_id, MIRRORED, "1")  # last: marks the run complete
            return run_id

    def _log_values(self, run_id: str, payload: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param

        when = payload.get("finished_ms") or payload["started_ms"]
        params = [Param(_key(k), _value(v)) for k, v in payload["params"].items()]
        metrics = [Metric(_key(k), float("nan") if v is None else float(v), when, 0)
                   for k, v in payload["metrics"].items()]
        for start in range(0, len(params), MAX_PARAMS):
            self.client.log_batch(run_id, params=params[start:start + MAX_PARAMS])
        for start in range(0, len(metrics), MAX_METRICS):
            self.client.log_batch(run_id, metrics=metrics[start:start + MAX_METRICS])

    def _get_run(self, run_id: str):
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            if _code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return run if run.info.lifecycle_stage == "active" else None

    def name(self, project: str) -> str:
        """The experiment's and the registered model's name for a project."""
        return f"{self.namespace}.{project}" if self.namespace else project

    def _owner_tags(self) -> dict[str, str]:
        if not self.namespace:
            return {}
        return {"workbench.namespace": self.namespace, "workbench.workspace": self.workspace_id or ""}

    def _check_owner(self, kind: str, name: str, tags: dict[str, str]) -> None:
        owner = tags.get("workbench.workspace")
        if self.workspace_id and owner and owner != self.workspace_id:
            raise MirrorError(f"MLflow at {self.tracking_uri}: the {kind} {name} belongs to another workspace "
                              f"(id {owner}, not this one's {self.workspace_id}); set WORKBENCH_MLFLOW_NAMESPACE "
                              f"to a name of this workspace's own (now {self.namespace!r})")

    def _experiment(self, project: str) -> str:
        if project in self._experiments:
            return self._experiments[project]
        from mlflow.exceptions import MlflowException

        name = self.name(project)
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            location = (self.artifact_root / name).as_uri() if self.artifact_root else None
            try:
                experiment_id = self.client.create_experiment(
                    name, artifact_location=location, tags={"workbench.project": project} | self._owner_tags())
            except MlflowException as exc:  # another drain made it first
                if _code(exc) != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = self.client.get_experiment_by_name(name)
                self._check_owner("experiment", name, experiment.tags)
                experiment_id = experiment.experiment_id
        else:
            self._check_owner("experiment", name, experiment.tags)
            experiment_id = experiment.experiment_id
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment_id)
        self._experiments[project] = experiment_id
        return experiment_id

    # -- the model registry ------------------------------------------------------------------

    def register_version(self, payload: dict[str, Any], run_id: str | None,
                         known_version: str | None) -> tuple[str, str]:
        name, number = self.name(payload["project"]), payload["version"]
        with self._errors(f"registering version {number} of {name}"):
            self._registered_model(name)
            existing = self._find_version(name, number, known_version)
            if existing is not None:
                return existing.run_id or run_id or "", str(existing.version)
            if run_id is None or self._get_run(run_id) is None:
                run_id = self.log_run(payload["run"], None)
            tags = {"workbench.version": str(number), "workbench.run_id": str(payload["run_id"]),
                    "workbench.sha256": payload["sha256"], "workbench.artifact": payload["artifact_name"],
                    "workbench.stage": payload["stage"]} | self._owner_tags()
            metric = payload.get("primary_metric")
            value = payload.get("primary_value")
            description = (f"workbench version {number} of {name}, from run {payload['run_id']}"
                           + (f"; {metric} {value:.6g}" if metric and value is not None else ""))
            created = self.client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id,
                                                       tags=tags, description=description)
            return run_id, str(created.version)

    def set_alias(self, payload: dict[str, Any], known_version: str | None) -> str:
        name, alias, number = self.name(payload["project"]), payload["alias"], payload["version"]
        with self._errors(f"setting {alias} of {name} to version {number}"):
            existing = self._find_version(name, number, known_version)
            if existing is None:
                raise MirrorError(f"MLflow at {self.tracking_uri}: version {number} of {name} is not registered "
                                  "there (it was mirrored to another tracking server?)")
            self.client.set_registered_model_alias(name, alias, str(existing.version))
            self.client.set_model_version_tag(name, str(existing.version), f"workbench.{alias}.audit_id",
                                              str(payload.get("audit_id")))
            return str(existing.version)

    def _registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        if name in self._models:
            return
        try:
            model = self.client.get_registered_model(name)
        except MlflowException as exc:
            if _code(exc) != "RESOURCE_DOES_NOT_EXIST":
                raise
            project = name[len(self.namespace) + 1:] if self.namespace else name
            try:
                self.client.create_registered_model(name, tags={"workbench.project": project} | self._owner_tags(),
                                                    description=f"Model versions of the workbench project {project}"
                                                    + (f" in the namespace {self.namespace}" if self.namespace else ""))
            except MlflowException as again:
                if _code(again) != "RESOURCE_ALREADY_EXISTS":
                    raise
                self._check_owner("registered model", name, self.client.get_registered_model(name).tags)
        else:
            self._check_owner("registered model", name, model.tags)
        self._models.add(name)

    def _find_version(self, name: str, number: int, known: str | None):
        from mlflow.exceptions import MlflowException

        if known:
            try:
                version = self.client.get_model_version(name, known)
                self._check_owner("registered model", name, version.tags)
                return version
            except MlflowException as exc:
                if _code(exc) != "RESOURCE_DOES_NOT_EXIST":
                    raise
        found = self.client.search_model_versions(f"name = '{name}' and tags.`workbench.version` = '{number}'")
        version = min(found, key=lambda v: int(v.version)) if found else None
        if version is not None:
            self._check_owner("registered model", name, version.tags)
        return version

    # -- errors ------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Whatever MLflow (or requests, or SQLAlchemy under it) raises becomes a MirrorError."""
        try:
            yield
        except MirrorError:
            raise
        except Exception as exc:
            # What this drain took for known may be gone (deleted on the server): look again next time.
            self._models.clear()
            self._experiments.clear()
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            unreachable = any(marker in str(exc) for marker in UNREACHABLE_MARKERS)
            if unreachable:
                text = "not reachable (" + _reason(str(exc)) + ")"
            if len(text) > 300:
                text = text[:297] + "..."
            raise MirrorError(f"MLflow at {self.tracking_uri}, {doing}: {text}", unreachable=unreachable) from exc


def _code(exc) -> str:
    return str(getattr(exc, "error_code", ""))


def _reason(text: str) -> str:
    for marker in UNREACHABLE_MARKERS:
        if marker in text:
            return marker.lower()
    return "no answer"


def _key(name: str) -> str:
    return KEY_CHARS.sub("_", str(name))[:250] or "_"


def _value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 3] + "..."


def _sha256(path: Path) -> str | None:
    """The model file's sha256; None when it is gone or not a regular file of its own: a
    symlink put in its place is not followed (its target would be copied into MLflow)."""
    try:
        return hash_file(path, follow=False)
    except (OSError, NotRegularFile):
        return None
