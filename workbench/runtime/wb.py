"""The stage side of the workbench protocol. Dependency-free; `import wb` in a stage.

A stage writes into its output folder ($WB_OUTPUT_DIR):
  metrics.json    {"name": number, ...}          via wb.log_metrics / wb.log_metric
  params.json     {"name": value, ...}           via wb.log_params
  artifacts.json  [{"name": "model.txt", "kind": "model"}, ...] via wb.log_artifact
  explanations.json  {"rows": n, "mean_abs_shap": {"feature": value, ...}, ...} via wb.explain
Progress goes to stdout as a marker line the workbench parses: `::wb progress DONE/TOTAL LABEL`.
"""

import json
import math
import os
import sys

PROGRESS_MARKER = "::wb progress"


def _env_path(name, default):
    return os.environ.get(name) or default


def project_dir():
    """The run's snapshot of the project (read-only); also the working directory."""
    return _env_path("WB_PROJECT_DIR", os.getcwd())


def output_dir():
    """The stage's output folder: the only place a stage may write."""
    path = _env_path("WB_OUTPUT_DIR", os.path.join(os.getcwd(), "wb-output"))
    os.makedirs(path, exist_ok=True)
    return path


def output_path(name):
    return os.path.join(output_dir(), name)


def upstream(stage, name=None):
    """The output folder of an upstream stage (one listed in `depends_on`), or a file in it."""
    base = os.environ.get("WB_UPSTREAM_DIR")
    if not base:
        raise RuntimeError("WB_UPSTREAM_DIR is not set: run this stage through the workbench")
    path = os.path.join(base, stage)
    if not os.path.isdir(path):
        raise RuntimeError("no outputs of stage %r: is it listed in depends_on?" % stage)
    return os.path.join(path, name) if name else path


def _merge_json(filename, updates, as_list=False):
    path = output_path(filename)
    current = [] if as_list else {}
    if os.path.exists(path):
        with open(path) as fh:
            current = json.load(fh)
    if as_list:
        current = [c for c in current if c.get("name") != updates["name"]] + [updates]
    else:
        current.update(updates)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(current, fh, indent=2, sort_keys=not as_list)
    os.replace(tmp, path)


def log_metrics(metrics):
    """Record numeric metrics, e.g. {"auc": 0.84}. Later calls add to or overwrite earlier ones."""
    clean = {}
    for key, value in metrics.items():
        value = float(value)
        if math.isinf(value):
            raise ValueError("metric %r is infinite" % key)
        clean[str(key)] = value if not math.isnan(value) else None
    _merge_json("metrics.json", clean)


def log_metric(name, value):
    log_metrics({name: value})


def log_params(params):
    """Record the parameters the stage used (values are stored as text)."""
    _merge_json("params.json", {str(k): v for k, v in params.items()})


def log_artifact(name, kind="file"):
    """Declare a file the stage wrote in its output folder, e.g. log_artifact("model.txt", "model")."""
    if not os.path.exists(output_path(name)):
        raise FileNotFoundError("artifact %r is not in the output folder %s" % (name, output_dir()))
    _merge_json("artifacts.json", {"name": name, "kind": kind}, as_list=True)


EXPLANATIONS_FILE = "explanations.json"


def explain(booster, X, sample=1000, model_file=None, seed=0):
    """Write explanations.json: each feature's mean absolute SHAP value over `sample` rows of X
    (all of them when X has fewer), from LightGBM's own pred_contrib, so no new dependency.

    `booster`: a lightgbm.Booster (or a scikit-learn LGBM model, whose booster_ is used); `X`:
    the rows it predicts (a pandas DataFrame or a 2-D array), typically the evaluation rows.
    `model_file`: the model file the booster was loaded from (e.g. wb.upstream("train",
    "model.txt")); naming it ties these values to that file. The sample is drawn with `seed`,
    so a rerun explains the same rows. A multiclass model's values are summed over classes.
    Returns {feature: mean |SHAP|}."""
    import hashlib
    import random

    if int(sample) < 1:
        raise ValueError("wb.explain: sample must be at least 1, got %r" % (sample,))
    booster = getattr(booster, "booster_", booster)
    names = list(booster.feature_name())
    total = len(X)
    if total == 0:
        raise ValueError("wb.explain needs at least one row to explain")
    rows = X
    if total > sample:
        picked = sorted(random.Random(seed).sample(range(total), int(sample)))
        rows = X.iloc[picked] if hasattr(X, "iloc") else X[picked]
    contrib = booster.predict(rows, pred_contrib=True)
    if isinstance(contrib, list):  # sparse input, multiclass: one matrix per class
        raise TypeError("wb.explain needs dense rows (a DataFrame or an array), not a sparse matrix")
    width = len(names) + 1  # each class's block ends with the expected value
    if contrib.shape[1] % width:
        raise ValueError("the booster's contributions have %d columns, not a multiple of %d features + 1"
                         % (contrib.shape[1], len(names)))
    per_column = abs(contrib).mean(axis=0)
    means = {name: 0.0 for name in names}
    for block in range(contrib.shape[1] // width):
        for i, name in enumerate(names):
            means[name] += float(per_column[block * width + i])
    digest = None
    if model_file is not None:
        with open(model_file, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    summary = {"rows": int(contrib.shape[0]), "total_rows": int(total), "model_sha256": digest,
               "mean_abs_shap": means}
    path = output_path(EXPLANATIONS_FILE)
    with open(path + ".tmp", "w") as fh:
        json.dump(summary, fh, indent=2)
    os.replace(path + ".tmp", path)
    return means


def progress(done, total, label=""):
    """Report progress, e.g. boosting rounds; the workbench shows it instead of a frozen screen."""
    sys.stdout.write("%s %d/%d %s\n" % (PROGRESS_MARKER, done, total, label))
    sys.stdout.flush()


def load_params(path="params.toml", section=None):
    """Read a params file from the project, optionally one section of it (or a dotted key such
    as "split.seed", as a stage's `params` in workbench.toml names it). TOML (Python 3.11+) and
    JSON always; YAML (.yaml, .yml) when PyYAML is installed in the stage's environment."""
    with open(os.path.join(project_dir(), path), "rb") as fh:
        data = fh.read()
    lower = path.lower()
    if lower.endswith(".json"):
        params = json.loads(data.decode("utf-8"))
    elif lower.endswith((".yaml", ".yml")):
        import yaml

        params = yaml.safe_load(data) or {}
    else:
        import tomllib

        params = tomllib.loads(data.decode("utf-8"))
    if not section:
        return params
    if section in params:
        return params[section]
    for part in section.split("."):
        if not isinstance(params, dict) or part not in params:
            return {}
        params = params[part]
    return params
