"""What served traffic says, for `workbench serve status` and the TUI's Serving view: each
version's live quality (its predictions joined with the feedback sent for them) and the request
totals (count, errors, latency percentiles) per version and role over the last minutes.

    live_quality(session, "telco-churn")          # {version: Quality(metric, value, labelled_rows)}
    traffic_totals(session, "telco-churn", minutes=5)   # {(version, role): Totals}

Both read the closed segments of the project's traffic log (adapters/traffic_log.py); the metric
follows the project's task (core/serving_quality.py): AUC for a classifier answering
probabilities, accuracy for one answering labels, RMSE for a regression.
"""

from __future__ import annotations

import time
from collections import defaultdict

from workbench.adapters.traffic_log import ALIASES, REQUESTS, closed_segments, read_feedback, read_requests, traffic_dir
from workbench.core.serving_quality import Quality, Totals, live_quality as measure, totals
from workbench.services.session import WorkbenchSession


def live_quality(session: WorkbenchSession, project: str, alias: str = "production",
                 by_role: bool = False) -> dict:
    """{version: Quality} over every logged answer of the alias that feedback labelled (with
    `by_role`, keyed by (version, role)). A request whose labels do not match its rows one for
    one is left out."""
    ref = session.project(project)
    manifest = ref.manifest
    folder = traffic_dir(session.workspace.state_dir, ref.name, alias)
    labels = read_feedback(folder)
    predictions: dict = defaultdict(list)
    truths: dict = defaultdict(list)
    if labels:
        for segment in closed_segments(folder, REQUESTS):
            for _line, request in read_requests(segment):
                if request is None or request.status != 200 or request.outputs is None:
                    continue
                found = labels.get(request.request_id)
                if found is None or len(found) != len(request.outputs):
                    continue
                key = (request.version, request.role) if by_role else request.version
                predictions[key].extend(request.outputs)
                truths[key].extend(found)
    evaluation = manifest.evaluation if manifest is not None else None
    task = evaluation.task if evaluation is not None else "auto"
    positive = evaluation.positive if evaluation is not None else None
    return {key: measure(task, predictions[key], truths[key], positive) for key in predictions}


def traffic_totals(session: WorkbenchSession, project: str, minutes: float = 5.0, now: float | None = None,
                   aliases: tuple[str, ...] = ALIASES) -> dict[tuple, Totals]:
    """{(alias, version, role): Totals} of the requests that arrived in the last `minutes`. Only
    segments written to since then are read."""
    name = session.project(project).name
    now = time.time() if now is None else now
    since = now - minutes * 60
    statuses: dict = defaultdict(list)
    seconds: dict = defaultdict(list)
    for alias in aliases:
        for segment in closed_segments(traffic_dir(session.workspace.state_dir, name, alias), REQUESTS):
            if segment.mtime < since:
                continue
            for _line, request in read_requests(segment):
                if request is not None and since <= request.at <= now:
                    key = (alias, request.version, request.role)
                    statuses[key].append(request.status)
                    seconds[key].append(request.seconds)
    return {key: totals(statuses[key], seconds[key]) for key in statuses}


__all__ = ["Quality", "Totals", "live_quality", "traffic_totals"]
