"""Reference profiles (workbench.core.drift_profile) on disk, so that a drift check reads only
the batch: `<workspace>/.workbench/drift/profiles/<sha256>-<key>.npz`, one per reference
content (its sha256) and per what else shapes a profile (`key`: the format version, PSI's bins,
how many values are kept exactly). `workbench gc` deletes the profiles whose `<sha256>` is no
longer a kept object, so the name must start with it.

One .npz file (numpy arrays, and the column facts as JSON in a text array): loaded with
allow_pickle=False, so a planted file can hold data, never code. Written to a temporary name and
renamed into place: a reader sees the old file or the new one. A file that does not load (cut
short, another version, another reference) is reported as absent and rebuilt, never trusted.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from workbench.core.drift_profile import ATOMS, FORMAT_VERSION, ReferenceColumn, ReferenceProfile

log = logging.getLogger(__name__)
ARRAYS = ("psi_edges", "psi_counts", "noise_grid", "noise_counts", "values", "atoms", "category_counts")
FILE_MODE = 0o644


def profile_key(psi_bins: int, exact_rows: int) -> str:
    return f"v{FORMAT_VERSION}-bins{psi_bins}-exact{exact_rows}"


class ProfileStore:
    def __init__(self, state_dir: Path):
        self.folder = state_dir / "drift" / "profiles"

    def path(self, sha256: str, key: str) -> Path:
        return self.folder / f"{sha256}-{key}.npz"

    def load(self, sha256: str, key: str) -> ReferenceProfile | None:
        """The stored profile, or None when there is none or it does not load as one."""
        path = self.path(sha256, key)
        if not path.is_file():
            return None
        try:
            return _read(path, sha256, key)
        except Exception as exc:  # noqa: BLE001 - a cut-short zip raises any of a dozen kinds; all mean "rebuild"
            log.info("drift profile %s does not load (%s): rebuilding it", path.name, exc)
            return None

    def save(self, sha256: str, key: str, profile: ReferenceProfile) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(sha256, key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        meta = {"format": FORMAT_VERSION, "sha256": sha256, "key": key, "rows": profile.rows,
                "psi_bins": profile.psi_bins, "exact_rows": profile.exact_rows,
                "rejected": [list(r) for r in profile.rejected], "columns": []}
        arrays: dict[str, np.ndarray] = {}
        for i, col in enumerate(profile.columns.values()):
            meta["columns"].append({
                "name": col.name, "source_type": col.source_type, "present": col.present, "numeric": col.numeric,
                "low_cardinality": col.low_cardinality, "distinct": col.distinct, "mean": col.mean, "sd": col.sd,
                "wasserstein_error": col.wasserstein_error, "value_range": col.value_range,
                "categories": list(col.categories)})
            for field in ARRAYS:
                value = getattr(col, field)
                if value.size:
                    arrays[f"{i}.{field}"] = value
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def _read(path: Path, sha256: str, key: str) -> ReferenceProfile:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"][()]))
        if meta["format"] != FORMAT_VERSION or meta["sha256"] != sha256 or meta["key"] != key:
            raise ValueError("made for another reference or version")
        columns = {}
        for i, facts in enumerate(meta["columns"]):
            arrays = {field: np.asarray(data[f"{i}.{field}"]) if f"{i}.{field}" in data else np.zeros(0)
                      for field in ARRAYS}
            col = ReferenceColumn(
                name=str(facts["name"]), source_type=str(facts["source_type"]), present=int(facts["present"]),
                numeric=bool(facts["numeric"]), low_cardinality=bool(facts["low_cardinality"]),
                distinct=int(facts["distinct"]), mean=float(facts["mean"]), sd=float(facts["sd"]),
                wasserstein_error=float(facts["wasserstein_error"]), value_range=float(facts["value_range"]),
                categories=tuple(str(c) for c in facts["categories"]), **arrays)
            _check(col)
            columns[col.name] = col
    return ReferenceProfile(int(meta["rows"]), columns, int(meta["psi_bins"]), int(meta["exact_rows"]),
                            tuple((int(line), str(what)) for line, what in meta["rejected"]))


def _check(col: ReferenceColumn) -> None:
    """The shapes a comparison relies on: what a truncated or hand-edited file would break."""
    if len(col.categories) != len(col.category_counts):
        raise ValueError(f"{col.name}: categories and counts differ in length")
    if col.compared_as_numbers:
        if len(col.psi_counts) != len(col.psi_edges) + 1 or len(col.noise_grid) != len(col.noise_counts):
            raise ValueError(f"{col.name}: bins and counts differ in length")
        if not col.values.size and len(col.atoms) != ATOMS:
            raise ValueError(f"{col.name}: neither values nor {ATOMS} atoms")
        if int(col.psi_counts.sum()) != col.present:
            raise ValueError(f"{col.name}: bin counts do not add up to its values")
