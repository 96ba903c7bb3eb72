"""What the main screen's workers do, on worker threads: plain functions of the services, so
they are easy to read and to test without an app. Each raises WorkbenchError for the user."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from workbench.core.errors import WorkbenchError
from workbench.services.inspect import compare_runs, validation_report
from workbench.services.reproductions import ReproductionVerdict, reproduction
from workbench.services.workspace import ProjectClash
from workbench.ui.widgets.projects import ProjectRow

TREND_RUNS = 300
"""The trend shows at most this many of the newest runs (it draws one bar per run)."""


def read_projects(session, watch) -> list[ProjectRow]:
    rows = []
    for ref in session.projects():
        if ref.error:
            clash = isinstance(ref.error, ProjectClash)
            rows.append(ProjectRow(ref.name, str(ref.path), error=str(ref.error),
                                   problem="name used twice" if clash else "manifest invalid",
                                   # two rows of one name must say which folder each is
                                   folder=_folder(session, ref.path) if clash else ""))
            continue
        manifest = ref.manifest
        last = session.runs(str(ref.path), limit=1)
        rows.append(ProjectRow(  # model versions come after (read_aliases): the registry is slower
            ref.name, str(ref.path), primary_metric=manifest.primary_metric,
            maximize=getattr(manifest, "primary_metric_goal", "maximize") != "minimize",
            watching=watch.is_watching(ref.name), busy=watch.busy(ref.name),
            last_status=last[0].status if last else None))
    return rows


def _folder(session, path) -> str:
    """A project folder as the user knows it: relative to the workspace (`wages-dup/`)."""
    try:
        return f"{Path(path).relative_to(session.workspace.root)}/"
    except ValueError:
        return str(path)


def read_start(session, watch) -> tuple[dict[str, tuple] | None, list[ProjectRow]]:
    """At start: what the store holds (its fingerprint, read first) and the projects. Every
    other first read follows the projects, so it sees at least this fingerprint's state: the
    first poll reads again only what changed after it."""
    return read_generation(session), read_projects(session, watch)


def read_generation(session) -> dict[str, tuple] | None:
    """What the workspace's state holds, as a fingerprint (see WorkbenchSession.generation);
    None when the store cannot be read just now (busy, broken): the next tick asks again, and
    the panes say what is wrong when they read."""
    try:
        parts = dict(session.generation())
    except WorkbenchError:
        return None
    parts["projects"] = projects_fingerprint(session)
    return parts


def projects_fingerprint(session) -> tuple:
    """The workspace's project folders and each manifest's (mtime, size): a folder made, removed
    or renamed, or a manifest edited (broken, fixed, renamed), records nothing in the store, so
    the store's fingerprint alone misses it. Cheap: the listing is cached for half a second
    (services/workspace.py) and a manifest is parsed again only when its file changed."""
    found = []
    for ref in session.projects():
        try:
            st = ref.manifest_path.stat()
            found.append((str(ref.path), st.st_mtime_ns, st.st_size))
        except OSError:  # removed between the listing and now: the next tick sees it gone
            found.append((str(ref.path), None, None))
    return tuple(found)


def read_all_aliases(session, projects: list[str]) -> dict[str, dict[str, int]]:
    """Every project's aliases at once, for the Projects pane (`prod v3 · stg v4`)."""
    return {name: read_aliases(session, name) for name in projects}


def read_aliases(session, project: str) -> dict[str, int]:
    """Which versions hold production and staging; empty while the registry has none (or the
    registry is not there: the projects pane then shows "—")."""
    try:
        return dict(session.registry.aliases(project))
    except (WorkbenchError, AttributeError, ImportError):
        return {}


def start_services(session, watch, watch_on_start: bool) -> tuple[str, list[int], list[str]]:
    """Make the runner (Docker or local), settle what a dead workbench left running, and
    watch the projects whose manifest asks for it. Returns (runner, interrupted runs, problems)."""
    runner = session.runner.name
    report = session.recover()
    problems = []
    if watch_on_start:
        tried = set()
        for ref in session.projects():
            if ref.manifest is not None and ref.manifest.watch.enabled and ref.name not in tried:
                tried.add(ref.name)  # two folders of one name: one attempt, one notice
                try:
                    watch.watch(ref.name)
                except WorkbenchError as exc:
                    problems.append(f"{ref.name}: cannot watch: {exc}")
    from workbench.ui.screens.alert_status import start_delivery

    problem = start_delivery(session)  # alerts of this process (and waiting ones) go out from here
    if problem:
        problems.append(problem)
    return runner, report.interrupted_runs, problems


@dataclass(frozen=True)
class RunInsights:
    """What the run detail shows beside the record: the Evaluation and Explanations tabs'
    payloads (stage -> payload) or why they could not be read, and the reproducibility verdict."""

    evaluations: dict[str, dict] = field(default_factory=dict)
    evaluation_problem: str | None = None
    explanations: dict[str, dict] = field(default_factory=dict)
    explanation_problem: str | None = None
    explanation_notes: dict[str, str] = field(default_factory=dict)
    """Stage -> why its model has no explanation (not a LightGBM model, ...)."""
    reproduction: ReproductionVerdict | None = None


def read_run(session, run_id: int):
    """The run (its record holds the lineage too), its validation report and its insights."""
    record = session.get_run(run_id)
    return record, validation_report(record), read_insights(session, record)


def read_insights(session, record) -> RunInsights:
    """Each part on its own: one that cannot be read says why in its tab, the others still show."""
    values: dict = {}
    for name, read in (("evaluations", lambda: session.evaluations(record.id)),
                       ("explanations", lambda: session.explanations(record.id)),
                       ("explanation_notes", lambda: session.explanation_notes(record.id))):
        try:
            values[name] = read()
        except WorkbenchError as exc:
            if name != "explanation_notes":
                values[name.removesuffix("s") + "_problem"] = str(exc)
    try:
        values["reproduction"] = reproduction(session, record.id, record)
    except WorkbenchError:
        values["reproduction"] = None  # the detail still shows; the next read tries again
    return RunInsights(**values)


def read_diff(session, base: int, run_id: int, label: str):
    """What changed from run `base` to run `run_id`, and what `base` is to the user ("marked",
    "previous")."""
    return compare_runs(session, base, run_id), label


def read_trend(session, project: str) -> list[float]:
    """The primary metric of the newest runs, oldest first (runs without it left out)."""
    runs = session.runs(project, limit=TREND_RUNS)
    return [r.primary_metric for r in reversed(runs) if r.primary_metric is not None]


def toggle_watch(watch, project: str) -> bool:
    """Watch the project, or stop; returns whether it is watched now."""
    if watch.is_watching(project):
        watch.unwatch(project)
        return False
    watch.watch(project)
    return True


def read_models(session, project: str):
    """The project's model versions, newest first (registering runs a stopped workbench missed),
    and what each alias's deploy pointer resolves to (its metadata.json, with the release path)."""
    registry = session.registry
    return registry.models(project), {alias: registry.deployed(project, alias) for alias in ("production", "staging")}


def read_mirror(session) -> str:
    """The MLflow mirror's state in a few words (`MLflow in sync`, `MLflow: 3 pending`, ...);
    reads the outbox only: mlflow is never imported here."""
    try:
        return session.registry.mirror_status().summary
    except WorkbenchError as exc:
        return f"MLflow: error: {exc}"


def preview_promotion(session, project: str, version: int | None, alias: str):
    """What promoting `version` to `alias` would do (version None: roll production back); nothing
    is written or audited."""
    if version is None:
        return session.registry.rollback(project, alias=alias, dry_run=True)
    return session.registry.promote(project, version, alias, dry_run=True)


def apply_promotion(session, project: str, preview, reason: str = ""):
    """Do what the user confirmed, with their reason for the audit row; refused ("moved
    meanwhile") if the alias changed hands since the preview. Starts the MLflow sync when
    something moved.

    Confirming a refused preview records the refusal, as the CLI records a refused attempt.
    That is decided again first: if it would go through now, nothing is written and the new
    preview comes back (allowed, not applied) to be confirmed."""
    registry = session.registry
    if not preview.allowed:
        preview = preview_promotion(session, project, preview.version if preview.action == "promote" else None,
                                    preview.alias)
        if preview.allowed:
            return preview
    if preview.action == "rollback":
        decision = registry.rollback(project, alias=preview.alias, reason=reason, expected_from=preview.from_version)
    else:
        decision = registry.promote(project, preview.version, preview.alias, reason=reason,
                                    expected_from=preview.from_version)
    if decision.applied:
        registry.request_mirror_sync()
    return decision
