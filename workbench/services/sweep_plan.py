"""What a sweep will search, settled before its first trial: the command line over the manifest's
`[sweep]`, every key checked against the project's params files and its stages.

A key must hold a single value in a params file the project has, and some stage must read it
(by key in its `params`, or the whole file in its `inputs`): otherwise every trial would be
the same run, reused, and the search would learn nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from workbench.adapters.params_files import ParamsReader
from workbench.core.errors import UsageError, WorkbenchError
from workbench.core.manifest import Manifest
from workbench.core.params_keys import ParamsFileError
from workbench.core.planning import matches_any
from workbench.core.sweep_spec import (
    DIRECTIONS, SAMPLERS, SweepParam, check_key, grid_size, parse_param_specs,
)
from workbench.services.stage_params import project_params_file
from workbench.services.workspace import ProjectRef

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class SweepRequest:
    """`workbench sweep PROJECT ...`; None: the manifest's `[sweep]`, then the defaults."""

    project: str
    params: tuple[str, ...] = ()
    """`KEY=SPEC` texts; empty: the manifest's `[sweep] params`."""
    trials: int | None = None
    sampler: str | None = None
    metric: str | None = None
    direction: str | None = None
    seed: int | None = None
    name: str | None = None
    register_all: bool = False
    """Register every successful trial's model as a version, not only the best one's."""
    jobs: int = 1


@dataclass(frozen=True)
class SweepPlan:
    name: str
    project: str
    """The project's name (its manifest's)."""
    specs: tuple[str, ...]
    params: tuple[SweepParam, ...]
    files: dict[str, str] = field(default_factory=dict)
    """Param name -> the params file its key is in (project-relative)."""
    trials: int = 20
    sampler: str = "tpe"
    metric: str = ""
    direction: str = "maximize"
    seed: int | None = None
    register_all: bool = False

    def attrs(self) -> dict:
        """What the study keeps, so a resumed sweep searches the same space the same way."""
        return {"project": self.project, "params": list(self.specs), "trials": self.trials,
                "sampler": self.sampler, "metric": self.metric, "seed": self.seed,
                "register_all": self.register_all,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: trials at once must be at least 1")


def plan_sweep(request: SweepRequest, ref: ProjectRef) -> SweepPlan:
    manifest = ref.manifest
    if manifest is None:
        raise WorkbenchError(f"{ref.path}: no workbench.toml")
    check_jobs(request.jobs)
    defaults = manifest.sweep
    specs = tuple(request.params) or defaults.params
    try:
        params = parse_param_specs(specs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sampler = request.sampler or defaults.sampler
    if sampler not in SAMPLERS:
        raise UsageError(f"--sampler {sampler}: use one of {', '.join(SAMPLERS)}")
    metric = request.metric or defaults.metric or manifest.primary_metric
    if not metric:
        raise UsageError(f"{manifest.name}: name the metric to optimize (--metric NAME, [sweep] metric, or "
                         "[project] primary_metric in its workbench.toml)")
    direction = request.direction or defaults.direction or manifest.primary_metric_goal
    if direction not in DIRECTIONS:
        raise UsageError(f"--direction {direction}: use maximize or minimize")
    trials = request.trials if request.trials is not None else defaults.trials
    if trials < 1:
        raise UsageError(f"--trials {trials}: give at least 1")
    if sampler == "grid":
        try:
            size = grid_size(params)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        # The grid is the search: without --trials it is walked whole, and never past its end.
        trials = size if request.trials is None else min(trials, size)
    name = request.name or f"{manifest.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if not NAME.match(name):
        raise UsageError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (at most 100, a letter or "
                         "digit first)")
    files = check_keys(params, manifest, ref)
    return SweepPlan(name, manifest.name, specs, params, files, trials, sampler, metric, direction,
                     request.seed, request.register_all)


def check_keys(params: tuple[SweepParam, ...], manifest: Manifest, ref: ProjectRef) -> dict[str, str]:
    """Param name -> its params file; UsageError for a key the files lack or no stage reads."""
    reader = ParamsReader(ref.path)
    default, why_not = project_params_file(manifest, ref.path)
    files = {}
    for param in params:
        file = param.ref.file or default
        if file is None:
            raise UsageError(f"--param {param.name}: {why_not}")
        try:
            check_key(reader(file), param, file)
        except ParamsFileError as exc:
            raise UsageError(f"--param {param.name}: {exc}") from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not _read_by_a_stage(param, file, default, manifest):
            raise UsageError(f"--param {param.name}: no stage of {manifest.name} reads {file}:{param.ref.key} "
                             f"(name it in a stage's params, e.g. params = [\"{param.ref.key.split('.')[0]}\"], "
                             "or list the file in its inputs); every trial would be the same run")
        files[param.name] = file
    return files


def _read_by_a_stage(param: SweepParam, file: str, default: str | None, manifest: Manifest) -> bool:
    for spec in manifest.stages.values():
        if matches_any(file, spec.inputs):
            return True
        for ref in spec.params:
            if (ref.file or default) == file and (param.ref.key == ref.key or param.ref.key.startswith(ref.key + ".")):
                return True
    return False
