"""Gathering a model card (workbench.core.model_card): the version from the registry, its run's
record, evaluation and explanations from the lineage store, the audit rows that moved it and
the reproducibility verdict. Used by `workbench card` and by a promotion, which writes the card
into the deploy release beside metadata.json."""

from __future__ import annotations

import json

from workbench.core.errors import WorkbenchError
from workbench.core.model_card import build_card, render_markdown
from workbench.services.reproductions import reproduction

AUDIT_ROWS = 10_000


def reproducibility(session, version) -> dict:
    """The verdict the registry vouches for (a cold rerun with the version's cache key wrote the
    same model and metrics), else the newest cold rerun of the run, else "not checked"."""
    if version.reproduced_by:
        return {"verdict": "reproduced", "run": version.reproduced_by,
                "detail": f"cold run {version.reproduced_by} wrote the same model file and metrics"}
    verdict = reproduction(session, version.run_id)
    if verdict is None:
        return {"verdict": "not checked", "run": None,
                "detail": f"run {version.run_id} was never rerun cold (R in the TUI, `workbench reproduce "
                          f"{version.run_id}`)"}
    word = {True: "reproduced", False: "not reproduced", None: "rerun incomplete"}[verdict.matched]
    return {"verdict": word, "run": verdict.reproduce_run, "detail": verdict.summary}


def model_card(session, project: str, version: int) -> dict:
    """The card of `project`'s model `version` as a dict (raises WorkbenchError, e.g. no such version)."""
    registry = session.registry
    ref = session.project(project)
    name = ref.name
    mv = next((v for v in registry.models(name) if v.version == version), None)
    if mv is None:
        mv = registry.version(name, version)  # raises naming the versions there are
    try:
        record = session.get_run(mv.run_id)
    except WorkbenchError:
        record = None  # the run's lineage is gone: the card says what the version itself holds
    evaluations = session.evaluations(mv.run_id)
    explanations = session.version_explanations(name, version)
    history = registry.history(name, limit=AUDIT_ROWS)
    goal = getattr(ref.manifest, "primary_metric_goal", "maximize") if ref.manifest else "maximize"
    return build_card(mv, record, evaluations, explanations, history, reproducibility(session, mv), goal)


def card_files(session, project: str, version: int) -> dict[str, str]:
    """`model-card.md` and `model-card.json`, as a deploy release holds them."""
    card = model_card(session, project, version)
    return {"model-card.md": render_markdown(card),
            "model-card.json": json.dumps(card, indent=2, sort_keys=False, default=str) + "\n"}
