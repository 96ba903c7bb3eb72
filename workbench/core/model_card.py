"""A model card per version: what a reader needs to trust (or not) a model, in one document.

`build_card` turns what the stores hold (the version, its run's record, its evaluation and
explanations, the audit rows that moved it, the reproducibility verdict) into one plain dict:
that dict is `workbench card --json` and `model-card.json` in a deploy release, and
`render_markdown` writes the same facts as Markdown, so the two never disagree. Pure: the
service gathers, this only arranges.
"""

from __future__ import annotations

import math
from typing import Any

from workbench.core.formatting import metric as fmt_metric
from workbench.core.model import RunRecord
from workbench.core.registry import AuditEntry, ModelVersion

SCHEMA = "workbench.model-card/1"
TOP_FEATURES = 10


def _number(value: Any) -> Any:
    """NaN is not JSON: a metric that is not a number is null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _lineage(version: ModelVersion, record: RunRecord | None) -> dict:
    data_paths = set(version.data_fingerprints)
    code: dict[str, str] = {}
    params: dict[str, str] = dict(version.params)
    for stage in record.stages if record else []:
        for f in stage.inputs:
            if f.path not in data_paths:
                code.setdefault(f.path, f.sha256)
        params.update(stage.params)
    return {
        "snapshot_id": version.snapshot_id, "manifest_hash": version.manifest_hash,
        "inputs_digest": version.inputs_digest,
        "image": {"tag": record.image_tag if record else "", "id": version.image_id},
        "code": [{"path": p, "sha256": h} for p, h in sorted(code.items())],
        "data": [{"path": p, "sha256": h} for p, h in sorted(version.data_fingerprints.items())],
        "params": {k: params[k] for k in sorted(params)},
    }


def _profile(record: RunRecord | None) -> list[dict]:
    return [{"path": ds.path, "fingerprint": ds.fingerprint, "rows": ds.row_count,
             "columns": [{"name": c.name, "dtype": c.dtype, "nulls": c.nulls, "distinct": c.distinct,
                          "min": c.min, "max": c.max, "mean": _number(c.mean)} for c in ds.columns],
             "problems": list(ds.problems)} for ds in (record.datasets if record else [])]


def _evaluation(evaluations: dict[str, dict]) -> dict | None:
    if not evaluations:
        return None
    stage = list(evaluations)[-1]
    e = evaluations[stage]
    headline = {"auc": (e.get("roc") or {}).get("auc"), "average_precision": (e.get("pr") or {}).get("average_precision"),
                "ece": (e.get("calibration") or {}).get("ece"), "log_loss": e.get("log_loss")}
    for name in ("mae", "rmse", "r2"):
        headline[name] = (e.get("regression") or {}).get(name)
    return {"stage": stage, "task": e.get("task"), "rows": e.get("rows"), "label": e.get("label"),
            "threshold": e.get("threshold"), "confusion": e.get("confusion"),
            "headline": {k: v for k, v in headline.items() if v is not None},
            "groups": e.get("groups") or {}, "fairness": e.get("fairness") or {}}


def _explanations(explanations: dict[str, dict]) -> dict | None:
    if not explanations:
        return None
    stage = list(explanations)[-1]
    x = explanations[stage]
    features = list(x.get("features") or [])
    by = "mean_abs_shap" if any(f.get("mean_abs_shap") is not None for f in features) else "gain"
    features.sort(key=lambda f: -(f.get(by) or 0.0))
    return {"stage": stage, "model": x.get("model"), "model_sha256": x.get("model_sha256"),
            "shap_rows": x.get("shap_rows"), "ranked_by": by, "features": len(features),
            "top_features": [{"feature": f.get("feature"), "gain": f.get("gain"), "split": f.get("split"),
                              "mean_abs_shap": f.get("mean_abs_shap")} for f in features[:TOP_FEATURES]]}


def _promotions(version: int, history: list[AuditEntry]) -> list[dict]:
    """Every audit row about this version, oldest first: moves to it, away from it, refusals."""
    rows = [e for e in history if version in (e.version, e.to_version, e.from_version)]
    rows.sort(key=lambda e: e.id)
    return [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action, "request": e.request,
             "alias": e.alias, "from_version": e.from_version, "to_version": e.to_version, "reason": e.reason,
             "message": e.message} for e in rows]


def build_card(version: ModelVersion, record: RunRecord | None, evaluations: dict[str, dict],
               explanations: dict[str, dict], history: list[AuditEntry],
               reproduction: dict[str, Any], goal: str = "maximize") -> dict:
    """The card as a JSON-ready dict. `reproduction`: {"verdict": reproduced | not reproduced |
    rerun incomplete | not checked, "run": the cold rerun's id or None, "detail": words}."""
    return {
        "schema": SCHEMA,
        "project": version.project, "version": version.version, "run_id": version.run_id,
        "created_at": version.created_at.isoformat(), "status": version.status, "aliases": list(version.aliases),
        "stage": version.stage,
        "model": {"file": version.artifact_name, "sha256": version.sha256, "size": version.size},
        "primary_metric": {"name": version.primary_metric, "value": _number(version.primary_value), "goal": goal},
        "lineage": _lineage(version, record),
        "data_profile": _profile(record),
        "metrics": {k: _number(v) for k, v in sorted(version.metrics.items())},
        "evaluation": _evaluation(evaluations),
        "gates": [{"rule": g.rule, "passed": g.passed, "value": _number(g.value), "detail": g.detail}
                  for g in version.gates],
        "explanations": _explanations(explanations),
        "promotions": _promotions(version.version, history),
        "reproducibility": dict(reproduction),
    }


# -- Markdown ---------------------------------------------------------------------------------

def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return fmt_metric(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _short(value: str | None, n: int = 12) -> str:
    return (value or "—").removeprefix("sha256:")[:n] or "—"


def render_markdown(card: dict) -> str:
    """The card as Markdown: headings a reader scans, tables that render on any forge."""
    out = [f"# Model card: {card['project']} version {card['version']}", ""]
    pm = card["primary_metric"]
    aliases = ", ".join(card["aliases"]) or "none"
    out += [f"- **Status:** {card['status']} (aliases: {aliases})",
            f"- **Run:** {card['run_id']} (stage `{card['stage']}`), registered {card['created_at']}",
            f"- **Model file:** `{card['model']['file']}`, sha256 `{card['model']['sha256']}`, "
            f"{card['model']['size']:,} bytes",
            f"- **Primary metric:** {pm['name'] or '—'} = {_cell(pm['value'])} ({pm['goal']})",
            f"- **Reproducibility:** {card['reproducibility'].get('verdict', 'not checked')}: "
            f"{card['reproducibility'].get('detail', '')}", ""]

    lin = card["lineage"]
    out += ["## Lineage", "",
            f"- snapshot `{lin['snapshot_id'] or '—'}`, manifest `{_short(lin['manifest_hash'], 16)}`, "
            f"inputs digest `{_short(lin['inputs_digest'], 16)}`",
            f"- image `{lin['image']['tag'] or '—'}` `{_short(lin['image']['id'], 19)}`", ""]
    out += _table(["kind", "path", "sha256"], [["code", f["path"], _short(f["sha256"], 16)] for f in lin["code"]]
                  + [["data", f["path"], _short(f["sha256"], 16)] for f in lin["data"]])
    if lin["params"]:
        out += ["Params:", ""] + _table(["param", "value"], [[k, v] for k, v in lin["params"].items()])

    out += ["## Data", ""]
    if not card["data_profile"]:
        out += ["No data profile recorded for this run.", ""]
    for ds in card["data_profile"]:
        out += [f"`{ds['path']}`: {ds['rows']:,} rows, {len(ds['columns'])} columns, "
                f"fingerprint `{_short(ds['fingerprint'], 16)}`", ""]
        out += [f"- ! {p}" for p in ds["problems"]] + ([""] if ds["problems"] else [])
        out += _table(["column", "type", "nulls", "distinct", "min", "max", "mean"],
                      [[c["name"], c["dtype"], c["nulls"], c["distinct"], c["min"], c["max"], c["mean"]]
                       for c in ds["columns"]])

    out += ["## Metrics", ""] + _table(["metric", "value"], [[k, v] for k, v in card["metrics"].items()])

    ev = card["evaluation"]
    out += ["## Evaluation and slices", ""]
    if ev is None:
        out += ["No evaluation recorded (no stage declares a predictions file).", ""]
    else:
        facts = ", ".join(f"{k} {_cell(v)}" for k, v in ev["headline"].items())
        threshold = f", threshold {_cell(ev['threshold'])}" if ev.get("threshold") is not None else ""
        out += [f"Stage `{ev['stage']}`, {ev['task']}, {ev['rows']:,} rows{threshold}: {facts}.", ""]
        if ev.get("confusion"):
            labels = [str(x) for x in ev["confusion"]["labels"]]
            out += _table(["actual \\ predicted"] + labels,
                          [[label] + list(row) for label, row in zip(labels, ev["confusion"]["matrix"])])
        regression = ev["task"] == "regression"
        for column, rows in ev["groups"].items():
            fair = ev["fairness"].get(column) or {}
            out += [f"### Slices by `{column}`", "",
                    f"Demographic parity difference {_cell(fair.get('demographic_parity_difference'))}, "
                    f"equalized odds difference {_cell(fair.get('equalized_odds_difference'))}.", ""]
            extra = ["MAE"] if regression else ["TPR", "FPR", "AUC"]
            keys = ["mae"] if regression else ["tpr", "fpr", "auc"]
            out += _table(["group", "size", "base rate", "prediction rate"] + extra,
                          [[r.get("group"), r.get("size"), r.get("base_rate"), r.get("prediction_rate")]
                           + [r.get(k) for k in keys] for r in rows])

    out += ["## Gates", ""]
    out += _table(["gate", "result", "detail"],
                  [[g["rule"], {True: "pass", False: "FAIL"}.get(g["passed"], "not evaluated"), g["detail"]]
                   for g in card["gates"]]) if card["gates"] else ["No gates declared.", ""]

    ex = card["explanations"]
    out += ["## Explanations", ""]
    if ex is None:
        out += ["No explanations recorded (not a LightGBM model, or none was written).", ""]
    else:
        shap = f"mean |SHAP| on {ex['shap_rows']:,} rows" if ex.get("shap_rows") else "no SHAP sample"
        out += [f"`{ex['model']}` (stage `{ex['stage']}`), {shap}; top {len(ex['top_features'])} of "
                f"{ex['features']} features by {ex['ranked_by'].replace('mean_abs_shap', 'mean |SHAP|')}.", ""]
        out += _table(["feature", "mean abs SHAP", "gain", "splits"],
                      [[f["feature"], f["mean_abs_shap"], f["gain"], f["split"]] for f in ex["top_features"]])

    out += ["## Promotions", ""]
    if not card["promotions"]:
        out += ["Never promoted, rolled back or refused.", ""]
    else:
        def move(p: dict) -> str:
            held = lambda v: f"v{v}" if v is not None else "none"  # noqa: E731
            return f"stays {held(p['from_version'])}" if p["action"] == "refuse" else \
                f"{held(p['from_version'])} → {held(p['to_version'])}"
        out += _table(["#", "when", "who", "action", "alias", "move", "reason"],
                      [[p["id"], p["at"], p["actor"], p["action"], p["alias"], move(p), p["reason"] or "—"]
                       for p in card["promotions"]])
    return "\n".join(out).rstrip() + "\n"
