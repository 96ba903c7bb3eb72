"""The lineage store's tables, as an ordered list of migrations.

Migration N (1-based) brings a database from schema version N-1 to N: SQL, or a function of the
connection and the file's path for one that needs to compute. They only ever get appended: a
released migration is never edited, because databases in the field already ran it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import duckdb

from workbench.adapters.workspace_paths import WorkspacePaths
from workbench.core.errors import StoreError

# Timestamps are stored as naive UTC (TIMESTAMP): TIMESTAMPTZ would make every read depend on the
# session's time zone setting. Child tables of a run are keyed by (run_id, stage): stage names
# are unique within a run, and natural keys let the benchmark bulk-generate history with plain
# INSERT ... SELECT.
V1 = """
CREATE TABLE projects (
    name VARCHAR PRIMARY KEY,
    path VARCHAR NOT NULL
);

CREATE SEQUENCE run_ids START 1;

CREATE TABLE runs (
    id INTEGER PRIMARY KEY DEFAULT nextval('run_ids'),
    project VARCHAR NOT NULL,
    trigger VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    runner VARCHAR NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    duration_s DOUBLE,
    image_id VARCHAR NOT NULL DEFAULT '',
    image_tag VARCHAR NOT NULL DEFAULT '',
    reason VARCHAR NOT NULL DEFAULT '',
    manifest_hash VARCHAR NOT NULL DEFAULT '',
    snapshot_id VARCHAR NOT NULL DEFAULT '',
    stage_filter VARCHAR[] NOT NULL,
    changed_paths VARCHAR[] NOT NULL,
    superseded_by INTEGER,
    -- Who is running it: a 'running' row whose process is gone was interrupted. The process
    -- start time (clock ticks since boot) tells a reused pid from the original process.
    pid INTEGER,
    host VARCHAR,
    proc_start BIGINT,
    -- Denormalised at finish_run so that listing runs never touches the big child tables.
    primary_metric VARCHAR,
    primary_value DOUBLE,
    n_stages INTEGER NOT NULL DEFAULT 0,
    n_reused INTEGER NOT NULL DEFAULT 0,
    gates_passed INTEGER NOT NULL DEFAULT 0,
    gates_failed INTEGER NOT NULL DEFAULT 0
);
-- For listing a project's runs. DuckDB 2.0 plans `WHERE project = ? ORDER BY id DESC LIMIT n`
-- as a scan plus top-N all the same (row-group zone maps make that cheap); the index costs
-- little and is there for the planners that will use it.
CREATE INDEX runs_project_id ON runs (project, id);

CREATE TABLE stage_runs (
    run_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    project VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    command VARCHAR NOT NULL,
    cache_key VARCHAR NOT NULL,
    output_dir VARCHAR NOT NULL,
    output_digest VARCHAR NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    duration_s DOUBLE NOT NULL,
    exit_code INTEGER,
    reason VARCHAR NOT NULL,
    log_tail VARCHAR[] NOT NULL,
    reused_from_run INTEGER
);

CREATE TABLE input_files (
    run_id INTEGER NOT NULL,
    stage VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    size BIGINT NOT NULL
);

CREATE TABLE params (
    run_id INTEGER NOT NULL,
    stage VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    value VARCHAR NOT NULL
);

CREATE TABLE metrics (
    run_id INTEGER NOT NULL,
    stage VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    value DOUBLE
);

CREATE TABLE artifacts (
    run_id INTEGER NOT NULL,
    stage VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    size BIGINT NOT NULL
);

CREATE TABLE gate_results (
    run_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    metric VARCHAR NOT NULL,
    op VARCHAR NOT NULL,
    threshold DOUBLE NOT NULL,
    value DOUBLE,
    passed BOOLEAN,
    detail VARCHAR NOT NULL
);

CREATE TABLE datasets (
    fingerprint VARCHAR PRIMARY KEY,
    path VARCHAR NOT NULL,
    row_count BIGINT NOT NULL,
    columns STRUCT(
        name VARCHAR, dtype VARCHAR, count BIGINT, nulls BIGINT, "distinct" BIGINT,
        min VARCHAR, max VARCHAR, mean DOUBLE, std DOUBLE, q25 DOUBLE, q50 DOUBLE, q75 DOUBLE
    )[] NOT NULL
);

CREATE TABLE run_datasets (
    run_id INTEGER NOT NULL,
    fingerprint VARCHAR NOT NULL,
    path VARCHAR NOT NULL
);
"""

# The model registry (workbench/adapters/duckdb_registry.py). JSON values are stored as text:
# they are written and read whole, never queried inside.
V2_REGISTRY = """
-- A model version: a model file a successful run wrote, numbered per project. One file (by
-- sha256) is one version: a rerun that reuses the model does not register it again.
CREATE TABLE model_versions (
    project VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    stage VARCHAR NOT NULL,
    artifact_name VARCHAR NOT NULL,
    artifact_path VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    size BIGINT NOT NULL,
    run_status VARCHAR NOT NULL,
    run_reason VARCHAR NOT NULL,
    metrics VARCHAR NOT NULL,
    params VARCHAR NOT NULL,
    gates VARCHAR NOT NULL,
    primary_metric VARCHAR,
    primary_value DOUBLE,
    snapshot_id VARCHAR NOT NULL,
    image_id VARCHAR NOT NULL,
    manifest_hash VARCHAR NOT NULL,
    data_fingerprints VARCHAR NOT NULL,
    inputs_digest VARCHAR NOT NULL,
    -- The model stage's cache key: a `reproduce` run with the same key reproduces this version.
    cache_key VARCHAR NOT NULL,
    PRIMARY KEY (project, version),
    UNIQUE (project, sha256)
);

-- Who holds each alias now; audit_id is the audit row that moved it there.
CREATE TABLE aliases (
    project VARCHAR NOT NULL,
    alias VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    since TIMESTAMP NOT NULL,
    audit_id BIGINT NOT NULL,
    PRIMARY KEY (project, alias)
);

-- Append-only: rows are inserted, never updated or deleted. row_hash = sha256(prev_hash and
-- the row's fields), so an edited or removed row breaks the chain (`workbench history --verify`).
CREATE SEQUENCE audit_ids START 1;
CREATE TABLE audit (
    id BIGINT PRIMARY KEY,
    occurred_at TIMESTAMP NOT NULL,
    actor VARCHAR NOT NULL,
    host VARCHAR NOT NULL,
    project VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    request VARCHAR NOT NULL,
    alias VARCHAR NOT NULL,
    version INTEGER,
    from_version INTEGER,
    to_version INTEGER,
    reason VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    checks VARCHAR NOT NULL,
    gates VARCHAR NOT NULL,
    comparison VARCHAR,
    prev_hash VARCHAR NOT NULL,
    row_hash VARCHAR NOT NULL
);

-- Calls to MLflow waiting to be made: written in the same transaction as what they mirror,
-- drained in id order (per project) by whoever runs the mirror.
CREATE SEQUENCE outbox_ids START 1;
CREATE TABLE mlflow_outbox (
    id BIGINT PRIMARY KEY DEFAULT nextval('outbox_ids'),
    project VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    payload VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error VARCHAR,
    last_attempt_at TIMESTAMP,
    next_attempt_at TIMESTAMP,
    done_at TIMESTAMP
);

-- What MLflow called the things it was sent, per tracking server: a retried item finds its
-- run or version here (or by its workbench.* tags in MLflow) instead of creating a second one.
CREATE TABLE mlflow_ids (
    tracking_uri VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    mlflow_id VARCHAR NOT NULL,
    PRIMARY KEY (tracking_uri, kind, key)
);

-- Runs recorded before the registry existed are neither registered nor mirrored afterwards.
CREATE TABLE registry_state (name VARCHAR PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO registry_state SELECT 'baseline_run', coalesce(max(id), 0) FROM runs;
"""

# Drift checks (workbench/adapters/duckdb_drift.py): one row per batch (by content) per project.
V3_DRIFT = """
CREATE SEQUENCE drift_batch_ids START 1;
CREATE TABLE drift_batches (
    id BIGINT PRIMARY KEY DEFAULT nextval('drift_batch_ids'),
    project VARCHAR NOT NULL,
    -- Relative to the project when the batch is inside it, else absolute.
    batch_path VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    -- 'checking' while a process checks it (claimed, so two processes never check or retrain
    -- one batch twice), then 'checked'.
    state VARCHAR NOT NULL,
    landed_at TIMESTAMP NOT NULL,
    checked_at TIMESTAMP,
    rows BIGINT,
    reference_path VARCHAR,
    reference_sha256 VARCHAR,
    reference_run_id INTEGER,
    reference_version INTEGER,
    drifted BOOLEAN,
    share DOUBLE,
    drifted_columns INTEGER,
    compared_columns INTEGER,
    decay_metric VARCHAR,
    decay_baseline DOUBLE,
    decay_value DOUBLE,
    -- The whole DriftReport as JSON: written and read whole.
    report VARCHAR,
    retrain BOOLEAN NOT NULL DEFAULT false,
    retrain_cause VARCHAR,
    retrain_reason VARCHAR NOT NULL DEFAULT '',
    retrain_run_id INTEGER,
    UNIQUE (project, sha256)
);
"""

# Tamper evidence for the registry (workbench/core/audit.py): a version's seal is its row and the
# run facts it stands on, as JSON, MAC'd with the workspace's audit key when it is registered.
V4_VERSION_SEALS = """
CREATE TABLE version_seals (
    project VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    sealed VARCHAR NOT NULL,
    mac VARCHAR NOT NULL,
    PRIMARY KEY (project, version)
);
"""

# Paths relative to the workspace (a workspace renamed, moved or copied keeps working), and the
# project folder each run and version came from (a name identifies one folder: a copy of a
# project under the same name must not add versions to the original's registry).
V5_FOLDERS = """
ALTER TABLE runs ADD COLUMN project_path VARCHAR;
ALTER TABLE model_versions ADD COLUMN project_path VARCHAR;
"""
# Columns holding a path that earlier versions wrote absolute.
PATH_COLUMNS = (("projects", "path"), ("stage_runs", "output_dir"), ("artifacts", "path"),
                ("model_versions", "artifact_path"), ("datasets", "path"))
DEFAULT_MLFLOW_KEY = "workspace:.workbench/mlflow.db"
"""How mlflow_ids names the workspace's own sqlite MLflow store, wherever the workspace is."""


def v5_workspace_relative(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Make the absolute paths earlier versions stored relative to the workspace.

    The workspace may have been moved or copied before this ran, so the roots they were
    written under are read from the run folders themselves (`<root>/.workbench/runs/...`)."""
    con.execute(V5_FOLDERS)
    paths = WorkspacePaths.for_state_file(path)
    if paths.root is not None:
        found = con.execute("SELECT DISTINCT split_part(output_dir, '/.workbench/runs/', 1) FROM stage_runs "
                            "WHERE contains(output_dir, '/.workbench/runs/')").fetchall()
        roots = sorted({str(paths.root)} | {row[0] for row in found if row[0]}, key=len, reverse=True)
        for root in roots:
            prefix = root.rstrip("/") + "/"
            for table, column in PATH_COLUMNS:
                con.execute(f"UPDATE {table} SET {column} = substr({column}, ?) WHERE starts_with({column}, ?)",
                            [len(prefix) + 1, prefix])
            # Queued MLflow items name the model file they send; error texts are left as written.
            con.execute("UPDATE mlflow_outbox SET payload = replace(payload, ?, ?) WHERE contains(payload, ?)",
                        ['"' + prefix, '"', '"' + prefix])
            con.execute("UPDATE mlflow_ids SET tracking_uri = ? WHERE tracking_uri = ?",
                        [DEFAULT_MLFLOW_KEY, f"sqlite:///{prefix}.workbench/mlflow.db"])
    con.execute("UPDATE runs SET project_path = p.path FROM projects p WHERE p.name = runs.project")
    con.execute("UPDATE model_versions SET project_path = r.project_path FROM runs r WHERE r.id = model_versions.run_id")


# What a data file's lineage profile could not read: the rows it left out (with their lines), or
# why the file could not be read at all. A profile is keyed by content, so this is too.
V6_PROFILE_PROBLEMS = """
ALTER TABLE datasets ADD COLUMN problems VARCHAR[] NOT NULL DEFAULT [];
"""


# The params keys a stage named and the value each had in its run (canonical JSON), keyed like
# the other child tables of a run (workbench.adapters.duckdb_stage_params).
V7_STAGE_PARAMS = """
CREATE TABLE stage_params (
    run_id INTEGER NOT NULL,
    stage VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    file VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    value VARCHAR NOT NULL
);
"""


# What a run's LightGBM models lean on (workbench/adapters/duckdb_explanations.py): per model
# stage the file explained, per feature its gain, split count and mean |SHAP|. explained_runs
# marks a run as looked at, so a run with no model is not examined again on every read.
V8_EXPLANATIONS = """
CREATE TABLE explained_runs (
    run_id INTEGER PRIMARY KEY
);
CREATE TABLE explanations (
    run_id INTEGER NOT NULL,
    stage VARCHAR NOT NULL,
    model VARCHAR,
    model_sha256 VARCHAR,
    shap_rows INTEGER,
    note VARCHAR NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, stage)
);
CREATE TABLE feature_importance (
    run_id INTEGER NOT NULL,
    stage VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    feature VARCHAR NOT NULL,
    gain DOUBLE NOT NULL,
    split BIGINT NOT NULL,
    mean_abs_shap DOUBLE,
    PRIMARY KEY (run_id, stage, feature)
);
"""


# The evaluation the workbench computed from a stage's predictions file: the whole payload
# (curves, calibration, groups) as JSON, per run and stage (workbench.adapters.duckdb_evaluation).
V9_EVALUATIONS = """
CREATE TABLE evaluations (
    run_id INTEGER NOT NULL,
    stage VARCHAR NOT NULL,
    payload VARCHAR NOT NULL,
    PRIMARY KEY (run_id, stage)
);
"""


# A sweep trial's run carries the sweep's name (its id: unique in the workspace, the Optuna
# study's name) and the trial's number, written as the run starts (workbench.services.sweep).
V10_SWEEP_TRIALS = """
ALTER TABLE runs ADD COLUMN sweep VARCHAR;
ALTER TABLE runs ADD COLUMN sweep_trial INTEGER;
"""


# Where a stage ran when a cluster ran it: the worker's address, its host and the image id there
# (each worker builds the environment in its own engine). Empty for stages run on this machine.
V11_STAGE_PLACEMENT = """
ALTER TABLE stage_runs ADD COLUMN worker VARCHAR DEFAULT '';
ALTER TABLE stage_runs ADD COLUMN host VARCHAR DEFAULT '';
ALTER TABLE stage_runs ADD COLUMN image_id VARCHAR DEFAULT '';
"""


# Alerts waiting for their receivers (workbench/adapters/duckdb_alerts.py): an event once, and one
# delivery row per receiver it goes to, drained in event order per receiver. A receiver is a hash
# of its URL (which may hold a token) and shown as the URL without its secret part. event_id is
# the idempotency key a receiver gets (X-Workbench-Event-Id), the same on every retry.
V12_ALERTS = """
CREATE SEQUENCE alert_ids START 1;
CREATE TABLE alerts (
    id BIGINT PRIMARY KEY DEFAULT nextval('alert_ids'),
    event_id VARCHAR NOT NULL,
    project VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    summary VARCHAR NOT NULL,
    details VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE alert_deliveries (
    alert_id BIGINT NOT NULL,
    receiver VARCHAR NOT NULL,
    receiver_shown VARCHAR NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error VARCHAR,
    last_attempt_at TIMESTAMP,
    next_attempt_at TIMESTAMP,
    delivered_at TIMESTAMP,
    PRIMARY KEY (alert_id, receiver)
);
"""


MIGRATIONS: list[str | Callable[[duckdb.DuckDBPyConnection, str], None]] = [
    V1, V2_REGISTRY, V3_DRIFT, V4_VERSION_SEALS, v5_workspace_relative, V6_PROFILE_PROBLEMS, V7_STAGE_PARAMS,
    V8_EXPLANATIONS, V9_EVALUATIONS, V10_SWEEP_TRIALS, V11_STAGE_PLACEMENT, V12_ALERTS]


def migrate(con: duckdb.DuckDBPyConnection, path: str) -> int:
    """Bring the attached database up to the latest schema; return the version it is at.

    Runs inside the caller's transaction, so a failing migration leaves the file as it was.
    """
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
    current = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
    latest = len(MIGRATIONS)
    applied_at = datetime.now(timezone.utc).replace(tzinfo=None)
    if current > latest:
        raise StoreError(f"the lineage store {path} was written by a newer workbench "
                         f"(schema v{current}, this one knows v{latest}); upgrade workbench to open it")
    for version in range(current + 1, latest + 1):
        step = MIGRATIONS[version - 1]
        if callable(step):
            step(con, path)
        else:
            con.execute(step)
        con.execute("INSERT INTO schema_version VALUES (?, ?)", [version, applied_at])
    return latest
