"""The built-in `contract` stage: a run's data checked against its contracts before any stage.

It runs in-process (DuckDB on the run's snapshot; no container is needed to read a table) and
its result is a StageResult like any other: recorded in the lineage with a cache key, reused
when neither the data nor the contracts changed, shown by `show`, the JSON and the TUI's
Validation tab (its report.json is a `validation_report` artifact with `ok` and `findings`).
Its key is the data files' and contract files' content hashes plus CHECKER_VERSION, so a new
contract, new data or a new checker reruns it, and nothing else does. An error-level breach
fails it, and then no project stage runs (each is marked not run, naming the contract); a
warning is recorded in its report and metrics and the run goes on.

A project without a contract file beside any of its data files has no contract stage.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from workbench.adapters.output_files import read_outputs
from workbench.core.contract import CONTRACT_STAGE, ContractReport, findings
from workbench.core.errors import WorkbenchError
from workbench.core.manifest import Manifest
from workbench.core.model import Artifact, InputFile, StageResult, StageStatus
from workbench.core.planning import CacheKeyParts
from workbench.services.contracts import check_data, project_contracts

CHECKER_VERSION = "contract-check/1"
"""Part of the stage's cache key and its recorded command: a change to what the check does
reruns it on unchanged data."""
REPORT = "report.json"


def contract_cache_key(inputs: dict[str, str]) -> str:
    return CacheKeyParts(stage=CONTRACT_STAGE, command=CHECKER_VERSION, inputs=inputs, image_id="builtin",
                         upstream={}, network=False).digest()


def run_contract_stage(manifest: Manifest, snapshot_dir: Path, files: dict, output_dir: Path,
                       find_reusable, on_started) -> StageResult | None:
    """The stage's result, or None when the project has no contract. `files`: the snapshot's
    {path: FileEntry}; `find_reusable(key)`: a reusable prior result or None (the caller checks
    its outputs are intact); `on_started()`: said once the check really runs."""
    items = project_contracts(snapshot_dir, manifest, list(files))
    if not items:
        return None
    paths = sorted({p for item in items for p in (item.data, item.contract)})
    inputs = {p: files[p].sha256 for p in paths}
    key = contract_cache_key(inputs)
    base = StageResult(stage=CONTRACT_STAGE, status=StageStatus.SKIPPED, command=CHECKER_VERSION, cache_key=key,
                       output_dir="", inputs=[InputFile(p, h, files[p].size) for p, h in inputs.items()])
    if CONTRACT_STAGE in manifest.stages:
        base.status = StageStatus.FAILED
        base.reason = (f"the project has a stage named {CONTRACT_STAGE!r}, the name of the built-in data contract "
                       "check: rename it in workbench.toml")
        return base
    prior = find_reusable(key)
    if prior is not None:
        return replace(prior, status=StageStatus.REUSED, inputs=base.inputs, started_at=None, finished_at=None,
                       duration_s=0.0, log_tail=[])

    on_started()
    started, clock = datetime.now(timezone.utc), time.monotonic()
    reports: list[ContractReport] = []
    problem = ""
    for item in items:
        try:
            reports.append(check_data(snapshot_dir, item))
        except WorkbenchError as exc:  # a contract that does not parse, data DuckDB cannot read
            problem = str(exc)
            break
    output_dir.mkdir(parents=True, exist_ok=True)
    report = report_json(reports, problem)
    (output_dir / REPORT).write_text(json.dumps(report, indent=2, default=str))
    tree = read_outputs(output_dir, lock=True)
    entry = tree.files[REPORT]
    errors, warnings = report["errors"], report["warnings"]
    if problem:
        status, reason = StageStatus.FAILED, problem
    elif errors:
        status, reason = StageStatus.FAILED, "the data breaks its contract: " + "; ".join(
            f["message"] for f in report["findings"] if f["level"] == "error")[:600]
    else:
        status, reason = StageStatus.SUCCEEDED, ""
    log = [line for r in reports for line in _lines(r)] + ([problem] if problem else [])
    return replace(base, status=status, reason=reason, output_dir=str(output_dir), output_digest=tree.digest,
                   started_at=started, finished_at=datetime.now(timezone.utc),
                   duration_s=time.monotonic() - clock, exit_code=0 if status is StageStatus.SUCCEEDED else 1,
                   log_tail=log[-50:],
                   metrics={"contract_errors": float(errors), "contract_warnings": float(warnings),
                            "contract_broken_rows": float(sum(b.count for r in reports for b in r.breaches
                                                              if b.rule not in ("column", "extra_column",
                                                                                "min_rows", "max_rows")))},
                   artifacts=[Artifact(REPORT, str(output_dir / REPORT), entry.sha256, entry.size,
                                       "validation_report")])


def report_json(reports: list[ContractReport], problem: str = "") -> dict:
    """The stage's report.json: the validation report shape (ok, findings) plus each contract's
    full report (every breach with its count and example lines)."""
    found = findings(reports)
    if problem:
        found.insert(0, {"level": "error", "check": "contract", "column": None, "message": problem})
    errors = sum(r.errors for r in reports) + (1 if problem else 0)
    return {"ok": errors == 0, "errors": errors, "warnings": sum(r.warnings for r in reports),
            "rows": sum(r.rows for r in reports), "findings": found,
            "contracts": [r.to_json() for r in reports]}


def _lines(report: ContractReport) -> list[str]:
    verdict = "passes" if report.passed else "breaks"
    lines = [f"{report.data}: {report.rows:,} rows {verdict} {report.contract} "
             f"({report.errors} errors, {report.warnings} warnings)"]
    lines += [f"  {b.severity} {b.column + ' ' if b.column else ''}{b.rule}: {report.message(b)}"
              for b in report.breaches]
    return lines


def blocked_result(name: str, command: str, contract: StageResult) -> StageResult:
    """A project stage the failed contract stage kept from running."""
    return StageResult(stage=name, status=StageStatus.SKIPPED, command=command, cache_key="", output_dir="",
                       reason=f"not run: upstream stage {contract.stage} {contract.status} (the data breaks its contract)")
