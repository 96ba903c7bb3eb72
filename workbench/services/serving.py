"""`workbench serve`: one server container per alias (production, staging), each following its
alias's deploy pointer, so a promotion or rollback swaps what it answers with (runtime/wb_serve.py).

Starting: the alias must point at a release; the serving image is the project's environment
image plus FastAPI and uvicorn (serving_image.py); the training data's columns are written to a
schema file the server checks requests against; the server is up once /health answers 200.
A promotion writes into each release the columns (schema.json) and the per-row rules of the data
contract (contract.json) its version was trained under, both from the version's run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from workbench.core.errors import WorkbenchError
from workbench.core.served_contract import SERVED_CONTRACT_DOCUMENT
from workbench.core.ports import LogSink
from workbench.services.session import WorkbenchSession

ALIASES = ("production", "staging")
START_TIMEOUT_S = 90.0
NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                 "UBIGINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL")


@dataclass(frozen=True)
class ServerStatus:
    project: str
    alias: str
    version: int | None
    url: str
    port: int | None
    container: str
    since: str
    healthy: bool
    problem: str = ""

    def as_json(self) -> dict:
        return {"project": self.project, "alias": self.alias, "version": self.version, "url": self.url,
                "port": self.port, "container": self.container, "since": self.since, "healthy": self.healthy,
                "problem": self.problem}


def training_schema(data_path: Path, target: str | None, kind: str | None = None) -> dict:
    """The training data's columns and kinds (number, string, boolean), target left out, read by
    DuckDB's type sniffing of the whole file (a CSV header alone does not say a column's type)."""
    import duckdb

    if not data_path.is_file():
        raise WorkbenchError(f"cannot serve: the training data {data_path} is missing, and requests are "
                             "checked against its columns")
    suffix = (kind or data_path.suffix).lower()
    reader = "read_parquet" if suffix in (".parquet", ".pq") else "read_csv_auto"
    con = duckdb.connect(":memory:")
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {reader}(?)", [str(data_path)]).fetchall()
    except duckdb.Error as exc:
        raise WorkbenchError(f"cannot read the columns of {data_path}: {exc}") from None
    finally:
        con.close()
    columns = {}
    for name, kind, *_ in rows:
        if name == target:
            continue
        base = str(kind).split("(")[0].upper()
        columns[name] = "number" if base in NUMERIC_TYPES else "boolean" if base == "BOOLEAN" else "string"
    return {"columns": columns}


SCHEMA_DOCUMENT = "schema.json"
"""The release document holding the columns its version was trained on (read by wb_serve.py)."""


def version_schema(session: WorkbenchSession, project: str, version: int) -> dict:
    """The columns of the data file `version` was trained on, as its run recorded it (the
    object store's copy, not the file as it is now): what its server checks requests against,
    so a hot swap to a version trained on other columns checks them too."""
    from workbench.services.drift import DriftService

    ref = session.project(project)
    if ref.manifest is None:
        raise WorkbenchError(str(ref.error))
    drift = DriftService(session)
    data = drift._data_file(ref)
    mv = session.registry.version(ref.name, version)
    sha = mv.data_fingerprints.get(data)
    if sha is None:
        raise WorkbenchError(f"{ref.name} version {version} (run {mv.run_id}) recorded no {data}")
    file = drift._content(sha, mv.snapshot_id, data, session.workspace.state_dir / "objects")
    # The object store names files by hash: tell the reader which format it holds.
    return training_schema(file, ref.manifest.data.target, kind=Path(data).suffix)


def version_contract(session: WorkbenchSession, project: str, version: int) -> dict | None:
    """The per-row rules of the contract of the data file `version` was trained on, as that
    contract stood in its run's snapshot (not as it is now), in contract.json's shape
    (workbench.core.served_contract); None when that run had no contract beside the file."""
    from workbench.core.contract import CONTRACT_STAGE, contract_path_for, parse_contract
    from workbench.core.served_contract import served_contract
    from workbench.services.drift import DriftService

    ref = session.project(project)
    if ref.manifest is None:
        raise WorkbenchError(str(ref.error))
    data = DriftService(session)._data_file(ref)
    contract = contract_path_for(data)
    mv = session.registry.version(ref.name, version)
    file = _run_file(session, mv.run_id, mv.snapshot_id, contract, CONTRACT_STAGE)
    if file is None:
        return None
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"cannot read {contract} as run {mv.run_id} recorded it: {exc}") from None
    return served_contract(parse_contract(text, contract), ref.manifest.data.target)


def _run_file(session: WorkbenchSession, run_id: int, snapshot_id: str, path: str, stage: str) -> Path | None:
    """A project file as run `run_id` saw it: in its snapshot folder, else (a snapshot removed by
    `workbench gc`) the object the stage `stage` recorded as its input; None: the run had no such file."""
    state = session.workspace.state_dir
    snapshot = state / "snapshots" / snapshot_id if snapshot_id else None
    if snapshot is not None and snapshot.is_dir():
        file = snapshot / path
        return file if file.is_file() else None
    record = session.get_run(run_id)
    sha = next((i.sha256 for s in record.stages if s.stage == stage for i in s.inputs if i.path == path), None)
    if sha is None:
        return None
    file = state / "objects" / sha[:2] / sha[2:]
    if not file.is_file():
        raise WorkbenchError(f"run {run_id}'s {path} (sha256 {sha[:12]}) is no longer in the object store")
    return file


def serving_documents(session: WorkbenchSession, project: str, version: int) -> dict[str, str]:
    """A promotion's release documents for serving: the version's schema and the per-row rules
    of its data contract. A schema that cannot be read is left out (the server then checks
    requests against the data file's columns at `workbench serve` time) rather than stop the
    promotion; so is a contract (the server then checks none)."""
    documents = {}
    try:
        documents[SCHEMA_DOCUMENT] = json.dumps(version_schema(session, project, version), indent=2) + "\n"
    except WorkbenchError:
        pass
    try:
        contract = version_contract(session, project, version)
    except WorkbenchError:  # ContractError included: the run's contract stage would have failed on it
        contract = None
    if contract is not None:
        documents[SERVED_CONTRACT_DOCUMENT] = json.dumps(contract, indent=2) + "\n"
    return documents


def _free_port(host: str) -> int:
    """A port free now, fixed in the container's binding: one the engine picks is picked again
    when a dead server is restarted, and its clients would lose it."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, 0))
        except OSError as exc:
            raise WorkbenchError(f"cannot serve on {host}: {exc.strerror or exc}") from None
        return probe.getsockname()[1]


def _health(url: str, timeout: float = 2.0) -> tuple[int, dict]:
    from workbench.adapters.server_http import ServerUnreachable, get

    try:
        status, body = get(url + "/health", timeout)
    except ServerUnreachable:
        return 0, {}
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}


def _challenger_of(alias: str, serving) -> dict:
    """Production's server also loads staging's release when `[serving] canary` or `shadow`
    asks for it (the deploy folder it mounts holds both pointers); staging's own server never."""
    if alias != "production" or not (serving.canary > 0 or serving.shadow):
        return {}
    return {"challenger": "staging", "canary": serving.canary, "shadow": serving.shadow}


class ServingService:
    def __init__(self, session: WorkbenchSession, client=None):
        from workbench.adapters.docker_engine import connect_engine

        self.session = session
        self.client = connect_engine(client)
        self.state_dir = session.workspace.state_dir

    def start(self, project: str, aliases: tuple[str, ...], host: str, port: int, on_log: LogSink,
              poll_s: float = 1.0) -> list[ServerStatus]:
        from workbench.adapters.docker_images import EnvironmentImages
        from workbench.adapters.serving_containers import (ServerSpec, prepare_traffic_dir, remove, servers,
                                                            start_server)
        from workbench.adapters.serving_image import ensure_serving_image
        from workbench.adapters.traffic_files import traffic_folder

        ref = self.session.project(project)
        if ref.manifest is None:
            raise WorkbenchError(str(ref.error))
        manifest = ref.manifest
        registry = self.session.registry
        missing = [alias for alias in aliases if registry.deployed(manifest.name, alias) is None]
        if missing:
            raise WorkbenchError(f"cannot serve {manifest.name}: no version is in {' or '.join(missing)} yet "
                                 f"(promote one: workbench promote {manifest.name} VERSION --to {missing[0]})")
        running = [s for s in servers(self.client, self.state_dir, manifest.name)
                   if s.alias in aliases and s.status in ("created", "running")]
        if running:
            raise WorkbenchError(f"{manifest.name} ({running[0].alias}) is already served by {running[0].container} "
                                 f"on port {running[0].port}: `workbench serve stop {manifest.name}` first")
        if not manifest.data.paths:
            raise WorkbenchError(f"cannot serve {manifest.name}: [data] paths names no training data to check "
                                 "requests against")
        schema_dir = self.state_dir / "serving" / manifest.name
        schema_dir.mkdir(parents=True, exist_ok=True)
        schema = training_schema(ref.path / manifest.data.paths[0], manifest.data.target)
        tmp = schema_dir / ".schema.json.tmp"
        tmp.write_text(json.dumps(schema, indent=2))
        os.chmod(tmp, 0o644)
        os.replace(tmp, schema_dir / "schema.json")

        env = EnvironmentImages(self.client).ensure(str(ref.path), manifest.environment, on_log, project=manifest.name)
        image = ensure_serving_image(self.client, env.image_id, env.image_tag, on_log)
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        started = []
        try:
            for offset, alias in enumerate(aliases):
                spec = ServerSpec(project=manifest.name, alias=alias, image=image,
                                  deploy_dir=registry.deploy.project_dir(manifest.name), schema_dir=schema_dir,
                                  project_dir=ref.path, predict=manifest.serving.predict,
                                  memory_bytes=manifest.environment.memory_bytes, cpus=manifest.environment.cpus,
                                  host=host, port=port + offset if port else _free_port(host), since=since,
                                  poll_s=poll_s, **_challenger_of(alias, manifest.serving),
                                  traffic_dir=prepare_traffic_dir(traffic_folder(self.state_dir, manifest.name, alias))
                                  if manifest.serving.log_requests else None,
                                  segment_rows=manifest.serving.segment_rows,
                                  segment_s=manifest.serving.segment_seconds,
                                  contract=manifest.serving.contract)
                started.append(start_server(self.client, spec, self.state_dir).name)
            return [self._await_healthy(manifest.name, name) for name in started]
        except BaseException:
            for name in started:
                remove(self.client, name)
            raise

    def _await_healthy(self, project: str, name: str) -> ServerStatus:
        from workbench.adapters.serving_containers import logs_tail

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            status = next((s for s in self.status(project) if s.container == name), None)
            if status is not None and status.healthy:
                return status
            alive = status is not None and status.problem != "exited"
            # The server is up but the alias's model would not load (a broken predict function,
            # a model file its library cannot read): waiting will not fix it.
            broken = status is not None and status.problem.startswith("could not load")
            if not alive or broken or time.monotonic() > deadline:
                logs = logs_tail(self.client, name)
                raise WorkbenchError(f"the server {name} did not become healthy"
                                     + (f" ({status.problem})" if status and status.problem else "")
                                     + (":\n" + logs if logs else ""))
            time.sleep(0.2)

    def status(self, project: str | None = None) -> list[ServerStatus]:
        from workbench.adapters.serving_containers import servers

        found = []
        for server in servers(self.client, self.state_dir, project):
            url = f"http://{server.host}:{server.port}" if server.port else ""
            if server.status != "running":
                found.append(ServerStatus(server.project, server.alias, None, url, server.port, server.container,
                                          server.since, False, server.status))
                continue
            code, body = _health(url.replace("0.0.0.0", "127.0.0.1")) if url else (0, {})
            found.append(ServerStatus(server.project, server.alias, body.get("version"), url, server.port,
                                      server.container, body.get("since") or server.since, code == 200,
                                      body.get("problem") or ("" if code == 200 else "not answering yet")))
        return found

    def exit_code(self, container: str) -> int | None:
        """The exit code of a server container that stopped (None if it cannot be read)."""
        import docker.errors
        import requests

        try:
            return self.client.containers.get(container).attrs.get("State", {}).get("ExitCode")
        except (docker.errors.DockerException, requests.RequestException):
            return None

    def restart(self, container: str) -> None:
        """Start a server container that died again (same port, same mounts)."""
        import docker.errors
        import requests

        try:
            self.client.containers.get(container).start()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise WorkbenchError(f"cannot restart the server container {container}: {exc}") from None

    def stop(self, project: str | None = None, containers: list[str] | None = None) -> list[str]:
        from workbench.adapters.serving_containers import remove, servers

        stopped = []
        for server in servers(self.client, self.state_dir, project):
            if containers is None or server.container in containers:
                if remove(self.client, server.container):
                    stopped.append(server.container)
        return stopped


DEAD = ("exited", "dead")
"""A server container in these states crashed or was killed (out of memory, `docker kill`); one
that is gone was stopped on purpose (`workbench serve stop`)."""


class ServerSupervisor:
    """Keeps the servers one `workbench serve` (or the TUI) started alive: a crashed server is
    started again on the same port, at once the first time, then after growing pauses, and
    given up on when it keeps crashing (core/restart_policy.py). Call check() about once a second."""

    def __init__(self, service: ServingService, project: str, containers: list[str], policy=None):
        from workbench.core.restart_policy import RestartPolicy

        self.service = service
        self.project = project
        self.containers = list(containers)
        self.policy = policy or RestartPolicy()
        self.due: dict[str, float] = {}
        """Crashed servers waiting for their restart: container -> monotonic time it is due."""
        self.given_up: set[str] = set()

    def check(self, now: float | None = None) -> tuple[list[str], bool]:
        """(what happened, one line each; whether any of the servers is still served)."""
        from workbench.adapters.serving_containers import logs_tail

        now = time.monotonic() if now is None else now
        said: list[str] = []
        found = {s.container: s for s in self.service.status(self.project) if s.container in self.containers}
        for name in self.containers:
            server = found.get(name)
            if server is None or name in self.given_up:
                continue
            if name in self.due:
                if now >= self.due[name]:
                    del self.due[name]
                    self.service.restart(name)
                    said.append(f"the {server.alias} server {name}: restarted it")
                continue
            if server.problem not in DEAD:
                continue
            code = self.service.exit_code(name)
            delay = self.policy.crashed(name, now)
            if delay is None:
                self.given_up.add(name)
                logs = logs_tail(self.service.client, name)
                said.append(f"the {server.alias} server {name} stopped (exit code {code}), crash "
                            f"{self.policy.crashes(name, now)} in {self.policy.window_s / 60:g} minutes: "
                            "not restarting it again" + (f"; its last lines:\n{logs}" if logs else ""))
            elif delay == 0:
                self.service.restart(name)
                said.append(f"the {server.alias} server {name} stopped (exit code {code}): restarted it")
            else:
                self.due[name] = now + delay
                said.append(f"the {server.alias} server {name} stopped (exit code {code}): restarting it in "
                            f"{delay:g} s (crash {self.policy.crashes(name, now)} of "
                            f"{self.policy.max_crashes} allowed in {self.policy.window_s / 60:g} minutes)")
        alive = any(name in found and name not in self.given_up for name in self.containers)
        return said, alive
