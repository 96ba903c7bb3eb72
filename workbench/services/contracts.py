"""Data contracts as a use case: find a project's contracts, infer a first one, check the data.

A project's contracts are the `<data file>.contract.toml` files beside the files its
`data.paths` match (workbench.core.contract). The pipeline checks them as its built-in
`contract` stage before the project's own stages (services/contract_stage.py); `workbench
contract check` runs the same check on the project's folder, and drift checks hold each batch
to the contract of the data file it is compared with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from workbench.core.contract import (
    DEFAULT_MARGIN, MIN_ROWS_FOR_BOUNDS, TABLE_RULES, Contract, ContractError, ContractReport, contract_path_for, infer_contract, parse_contract,
    render_contract,
)
from workbench.core.errors import WorkbenchError
from workbench.core.manifest import Manifest
from workbench.core.planning import matches_any

MAX_CONTRACT_BYTES = 4 * 1024 * 1024
"""A contract is a page or two of TOML; a file this large is not one."""
SKIPPED_DIRS = {".workbench", ".git", "__pycache__", "node_modules", ".venv", "venv"}


@dataclass(frozen=True)
class ProjectContract:
    data: str
    """The data file, relative to the project."""
    contract: str
    """Its contract file, relative to the project."""


def data_files(project_dir: Path, manifest: Manifest, files: list[str] | None = None) -> list[str]:
    """The project's data files (relative paths `data.paths` matches), from `files` (a
    snapshot's list) or a walk of the folder."""
    if files is None:
        files = []
        for dirpath, dirnames, filenames in os.walk(project_dir):
            dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
            rel = Path(dirpath).relative_to(project_dir)
            files += [(rel / name).as_posix() for name in filenames]
    return sorted(p for p in files if matches_any(p, manifest.data.paths) and not p.endswith(".contract.toml"))


def project_contracts(project_dir: Path, manifest: Manifest, files: list[str] | None = None) -> list[ProjectContract]:
    """Each data file that has a contract beside it, with that contract."""
    present = set(files) if files is not None else None
    found = []
    for data in data_files(project_dir, manifest, files):
        contract = contract_path_for(data)
        if (contract in present) if present is not None else (project_dir / contract).is_file():
            found.append(ProjectContract(data, contract))
    return found


def load_contract(project_dir: Path, contract: str) -> Contract:
    """The contract file, parsed; a ContractError names the file (as the project names it)."""
    path = project_dir / contract
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONTRACT_BYTES + 1)
    except OSError as exc:
        raise ContractError(contract, None, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONTRACT_BYTES:
        raise ContractError(contract, None, f"larger than {MAX_CONTRACT_BYTES // 1024 // 1024} MiB: not a contract")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ContractError(contract, None, "not UTF-8 text") from None
    return parse_contract(text, contract)


def check_data(project_dir: Path, item: ProjectContract, row_bounds: bool = True,
               data_file: Path | None = None, shown: str | None = None) -> ContractReport:
    """One data file checked against its contract (DuckDB). `data_file`: read this file in the
    data's place (a drift batch), named `shown` in the report."""
    from workbench.adapters.duckdb_contract import check_file  # DuckDB only when asked

    contract = load_contract(project_dir, item.contract)
    target = data_file or project_dir / item.data
    return check_file(str(target), contract, shown=shown or (item.data if data_file is None else str(data_file)),
                      row_bounds=row_bounds)


def batch_findings(project_dir: Path, data: str, batch: Path, shown: str, target: str | None) -> list[tuple[str, str, str | None]]:
    """A drift batch held to the contract of the data file it is compared with: [(severity or
    `invalid`, message, column)]; [] when that file has no contract. Its row count is not
    checked (a batch is a slice of the data), nor a missing label column (most batches are
    unlabelled)."""
    item = ProjectContract(data, contract_path_for(data))
    if not (project_dir / item.contract).is_file():
        return []
    try:
        report = check_data(project_dir, item, row_bounds=False, data_file=batch, shown=shown)
    except WorkbenchError as exc:
        return [("invalid", f"{item.contract} cannot be checked: {exc}", None)]
    found = []
    for b in report.breaches:
        if b.rule == "column" and b.column == target:
            continue
        column = f"{b.column}: " if b.column and b.rule not in TABLE_RULES else ""
        found.append((b.severity, f"{item.contract}: {column}{report.message(b)}", b.column))
    return found


def check_project(project_dir: Path, manifest: Manifest, files: list[str] | None = None) -> list[ContractReport]:
    """Every contract of the project, checked; [] when it has none."""
    return [check_data(project_dir, item) for item in project_contracts(project_dir, manifest, files)]


def infer_text(path: Path, shown: str | None = None, margin: float = DEFAULT_MARGIN) -> str:
    """A first contract for the data file, as TOML with a header saying how it was made."""
    from workbench.adapters.duckdb_contract import table_stats

    shown = shown or path.name
    if not path.is_file():
        raise WorkbenchError(f"{shown}: no such data file")
    rows, stats = table_stats(str(path), shown)
    try:
        contract = infer_contract(contract_path_for(shown), rows, stats, margin)
    except ValueError as exc:
        raise WorkbenchError(str(exc)) from None
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    header = (f"Data contract for {shown}, inferred by `workbench contract infer` on {when} from {rows:,} rows.\n"
              f"Checked before the project's stages: an error fails the run, a warning is recorded.\n"
              f"Margins to tighten: ranges are the values seen widened by {margin:.0%} of their span (a column\n"
              f"never below zero stays at zero); categories only for text columns of at most a few values;\n"
              f"nullable = false where no value was missing; unique = true where every value was distinct;\n"
              f"min_rows is half the rows seen. Reference: docs/contracts.md.")
    if rows < MIN_ROWS_FOR_BOUNDS:
        header += (f"\nFrom fewer than {MIN_ROWS_FOR_BOUNDS} rows: types and nullability only (bounds drawn "
                   "from so few rows would break on the next sample).")
    text = render_contract(contract, header)
    parse_contract(text, contract.source)  # never write a contract that does not load
    return text


def write_first_contracts(project_dir: Path, manifest: Manifest, force: bool = False) -> tuple[list[str], list[str]]:
    """`workbench init`: a contract beside each data file that has none (or every one with
    `force`). Returns (contracts written, problems): a file that cannot be read is said, and
    the project still initialised."""
    written, problems = [], []
    for data in data_files(project_dir, manifest):
        target = project_dir / contract_path_for(data)
        if target.exists() and not force:
            continue
        try:
            target.write_text(infer_text(project_dir / data, data))
        except WorkbenchError as exc:
            problems.append(str(exc))
            continue
        except OSError as exc:
            problems.append(f"cannot write {target}: {exc.strerror}")
            continue
        written.append(contract_path_for(data))
    return written, problems
