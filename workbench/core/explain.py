"""What a LightGBM model leans on: gain and split importance per feature, read from the model's
own text, and the mean absolute SHAP values a stage measured (explanations.json), merged into
one payload per model; and how two versions' importances differ.

Pure: no lightgbm here. The host never imports it (1.7 s), so the importances are read from
model.txt the way LightGBM computes `Booster.feature_importance`: every split of every tree
whose gain is above zero counts once for `split` and adds its gain for `gain`. LightGBM keeps
a split's gain as a 32-bit float, so each value is rounded to one before it is summed (in
doubles, tree by tree), which makes the sums agree with LightGBM's own to the last bits.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

MODEL_FIRST_LINE = "tree"
"""Every LightGBM text model starts with this line (then `version=v4`)."""
SHAP_FILE = "explanations.json"
"""The protocol file `wb.explain` writes into a stage's output folder."""
RANK_BY = ("gain", "split", "shap")


class NotLightGBMModel(ValueError):
    """The file is not a LightGBM text model; the message says what it is instead."""


@dataclass(frozen=True)
class ModelImportance:
    features: tuple[str, ...]
    gain: tuple[float, ...]
    split: tuple[int, ...]
    trees: int


@dataclass(frozen=True)
class ShapSummary:
    """What one stage's explanations.json says: mean |SHAP| per feature over `rows` rows."""

    mean_abs_shap: dict[str, float]
    rows: int
    model_sha256: str | None = None
    """The model file it explained, when the stage named it (wb.explain(..., model_file=...))."""


def looks_like_lightgbm(head: bytes) -> bool:
    """Whether a file's first bytes are a LightGBM text model's."""
    return head.split(b"\n", 1)[0].rstrip(b"\r") == MODEL_FIRST_LINE.encode()


def parse_lightgbm_model(text: str, name: str = "model") -> ModelImportance:
    """Gain and split importance per feature, as LightGBM's `feature_importance` computes them
    over every tree in the file. NotLightGBMModel names what is wrong with anything else."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != MODEL_FIRST_LINE:
        first = lines[0][:40] if lines else ""
        raise NotLightGBMModel(f"{name} is not a LightGBM model (its first line is {first!r}, not 'tree')")
    header: dict[str, str] = {}
    trees: list[dict[str, str]] = []
    current = header
    for line in lines[1:]:
        if line.startswith("Tree="):
            current = {}
            trees.append(current)
        elif line == "end of trees":
            break
        elif "=" in line:
            key, _, value = line.partition("=")
            current[key] = value
    if "feature_names" not in header:
        raise NotLightGBMModel(f"{name} is not a LightGBM model (no feature_names line in its header)")
    features = tuple(header["feature_names"].split())
    gain = [0.0] * len(features)
    split = [0] * len(features)
    for number, tree in enumerate(trees):
        try:
            used = [int(v) for v in tree.get("split_feature", "").split()]
            # float32, as LightGBM holds them: summing the printed doubles drifts by ~1e-5.
            gains = array("f", [float(v) for v in tree.get("split_gain", "").split()])
        except ValueError as exc:
            raise NotLightGBMModel(f"{name}: tree {number} cannot be read ({exc})") from None
        if len(used) != len(gains):
            raise NotLightGBMModel(f"{name}: tree {number} has {len(used)} split features but {len(gains)} gains")
        for feature, value in zip(used, gains):
            if not 0 <= feature < len(features):
                raise NotLightGBMModel(f"{name}: tree {number} splits on feature {feature}, "
                                       f"but the model names {len(features)}")
            if value > 0:
                gain[feature] += value
                split[feature] += 1
    return ModelImportance(features, tuple(gain), tuple(split), len(trees))


def parse_shap_summary(value: object, where: str = SHAP_FILE) -> ShapSummary:
    """The content of an explanations.json, checked; ValueError names the key that is wrong."""
    if not isinstance(value, dict):
        raise ValueError(f"{where} must hold a JSON object")
    rows = value.get("rows")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise ValueError(f"{where}: 'rows' must be a whole number >= 0, got {rows!r}")
    means = value.get("mean_abs_shap")
    if not isinstance(means, dict):
        raise ValueError(f"{where}: 'mean_abs_shap' must be an object of feature -> number")
    clean: dict[str, float] = {}
    for feature, mean in means.items():
        if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not math.isfinite(mean) or mean < 0:
            raise ValueError(f"{where}: mean_abs_shap[{feature!r}] must be a finite number >= 0, got {mean!r}")
        clean[str(feature)] = float(mean)
    sha = value.get("model_sha256")
    if sha is not None and not isinstance(sha, str):
        raise ValueError(f"{where}: 'model_sha256' must be a string or null")
    return ShapSummary(clean, rows, sha or None)


def shap_for_model(importance: ModelImportance, sha256: str,
                   candidates: list[tuple[str, ShapSummary]]) -> tuple[ShapSummary | None, list[str]]:
    """The SHAP summary that explains this model, and notes on those that almost did.

    `candidates`: (stage, summary) in run order. A summary naming a model file explains that
    file only; one that names none explains the model whose features it lists exactly."""
    notes = []
    for stage, summary in candidates:
        if summary.model_sha256 is not None and summary.model_sha256 != sha256:
            continue
        if set(summary.mean_abs_shap) == set(importance.features):
            return summary, notes
        missing = sorted(set(importance.features) - set(summary.mean_abs_shap))
        extra = sorted(set(summary.mean_abs_shap) - set(importance.features))
        notes.append(f"stage {stage}'s {SHAP_FILE} does not list the model's features "
                     f"(missing {_few(missing)}; not in the model {_few(extra)}): its SHAP values are left out")
    return None, notes


def explanation_payload(model: str, sha256: str, importance: ModelImportance,
                        shap: ShapSummary | None) -> dict:
    """One model's explanation: the shape the store keeps and every front end reads."""
    features = [{"feature": name, "gain": importance.gain[i], "split": importance.split[i],
                 "mean_abs_shap": shap.mean_abs_shap[name] if shap else None}
                for i, name in enumerate(importance.features)]
    return {"model": model, "model_sha256": sha256, "shap_rows": shap.rows if shap else None,
            "features": ranked(features, "gain")}


def ranked(features: list[dict], by: str = "gain") -> list[dict]:
    """Features by `by` (gain, split or shap), largest first; ties (and missing SHAP) by name."""
    key = "mean_abs_shap" if by == "shap" else by
    if by not in RANK_BY:
        raise ValueError(f"rank by one of {', '.join(RANK_BY)}, not {by!r}")
    return sorted(features, key=lambda f: (-(f[key] if f[key] is not None else -1.0), f["feature"]))


def shares(features: list[dict], by: str = "gain") -> dict[str, float]:
    """Each feature's share of the total (gain, split or shap); all 0 when the total is 0."""
    key = "mean_abs_shap" if by == "shap" else by
    values = {f["feature"]: float(f[key] or 0.0) for f in features}
    total = sum(values.values())
    return {name: (value / total if total > 0 else 0.0) for name, value in values.items()}


@dataclass(frozen=True)
class FeatureShift:
    """One feature in two explanations: rank (1 = most important, None = absent) and values."""

    feature: str
    rank_before: int | None
    rank_after: int | None
    share_before: float | None
    share_after: float | None
    shap_before: float | None
    shap_after: float | None

    @property
    def rank_change(self) -> int | None:
        """Places moved up (positive) or down (negative); None when absent from either."""
        if self.rank_before is None or self.rank_after is None:
            return None
        return self.rank_before - self.rank_after

    @property
    def share_change(self) -> float | None:
        if self.share_before is None or self.share_after is None:
            return None
        return self.share_after - self.share_before


def diff_explanations(before: dict | None, after: dict | None, by: str = "gain") -> list[FeatureShift]:
    """How the features' importance moved from `before` to `after` (payloads as
    explanation_payload makes them), in `after`'s order, then features only `before` has.
    Shares, not raw gains, are compared: gains grow with the data and the number of trees."""
    old = ranked(before["features"], by) if before else []
    new = ranked(after["features"], by) if after else []
    old_rank = {f["feature"]: i + 1 for i, f in enumerate(old)}
    new_rank = {f["feature"]: i + 1 for i, f in enumerate(new)}
    old_share, new_share = shares(old, by), shares(new, by)
    old_shap = {f["feature"]: f["mean_abs_shap"] for f in old}
    new_shap = {f["feature"]: f["mean_abs_shap"] for f in new}
    names = [f["feature"] for f in new] + [f["feature"] for f in old if f["feature"] not in new_rank]
    return [FeatureShift(name, old_rank.get(name), new_rank.get(name), old_share.get(name), new_share.get(name),
                         old_shap.get(name), new_shap.get(name)) for name in names]


def _few(names: list[str], limit: int = 4) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
