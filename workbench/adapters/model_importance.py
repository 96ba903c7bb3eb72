"""A model version's feature importance from its model file itself: per feature, the total gain
of its splits, for the drift verdict when the version's run recorded no explanation.

The file is a LightGBM text model (model.txt). It is read the way every stage output is (a
regular file only, never through a symlink, at most MODEL_TEXT_CAP bytes), checked against the
sha256 the version recorded, and parsed by workbench.core.explain, whose gains agree with
`lightgbm.Booster(model_file=...).feature_importance("gain")` to the last bits: the host does not
import lightgbm (1.7 s) to read a few numbers. Every failure is a WorkbenchError that names the
file and what it is instead.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from workbench.adapters.regular_files import NotRegularFile, read_regular_bytes
from workbench.core.errors import WorkbenchError
from workbench.core.explain import NotLightGBMModel, parse_lightgbm_model

MODEL_TEXT_CAP = 1024**3
"""The most read of a model file (a 10,000-tree model is ~200 MB)."""


def model_file_gain(path: Path | str, sha256: str | None = None, name: str | None = None) -> dict[str, float]:
    """Feature -> total split gain of the LightGBM text model at `path` (0 for a feature no tree
    splits on). `sha256`: what the file must still hash to. WorkbenchError otherwise."""
    shown = name or Path(path).name
    try:
        data = read_regular_bytes(path, MODEL_TEXT_CAP)
    except FileNotFoundError:
        raise WorkbenchError(f"the model file {path} is gone") from None
    except (NotRegularFile, OSError) as exc:
        raise WorkbenchError(f"the model file {path} cannot be read: {exc}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise WorkbenchError(f"the model file {path} is no longer the one registered (sha256 {sha256[:12]})")
    try:
        importance = parse_lightgbm_model(data.decode("utf-8"), shown)
    except UnicodeDecodeError:
        raise WorkbenchError(f"{shown} is not a LightGBM model (not a text file)") from None
    except NotLightGBMModel as exc:
        raise WorkbenchError(str(exc)) from None
    return dict(zip(importance.features, importance.gain))
