"""A drift check over table files, column group by column group: the reference's profile built
from its file (once per content; workbench.adapters.profile_store keeps it), and a batch file
checked against a profile. The statistics come from workbench.adapters.table_stats (DuckDB, and
numpy over float64 buffers), the comparison from workbench.core.drift. At most a group of
columns' values is in memory at a time, and each is compared as soon as it is read, so a
100,000-row by 1,000-column batch never becomes 800 MB of arrays.

`on_progress(done, total, phase)` is called as columns complete.
"""

from __future__ import annotations

from typing import Callable

from workbench.adapters.table_stats import TableStats
from workbench.core.drift import check_column, planned, report_from_checks
from workbench.core.drift_profile import (
    CATEGORIES, EXAMPLES, VALUES, BatchColumn, ReferenceProfile, numeric_profile, text_profile,
)
from workbench.core.drift_report import DriftReport
from workbench.core.manifest import DriftSpec

PROFILING, CHECKING = "profiling reference", "checking batch"
Progress = Callable[[int, int, str], None]


def no_progress(_done: int, _total: int, _phase: str) -> None:
    pass


def build_profile(table: TableStats, psi_bins: int, exact_rows: int,
                  on_progress: Progress = no_progress) -> ReferenceProfile:
    """The profile of an open reference table."""
    presence = table.presence()
    types = dict(table.columns)
    numeric = [n for n in types if 0 < presence[n].present == presence[n].finite]
    text = [n for n in types if n not in numeric]
    total, done = len(types), 0
    profiles = {}
    on_progress(0, total, PROFILING)
    for group in table.groups(numeric):
        for name, values in table.numbers(group).items():
            profiles[name] = numeric_profile(name, types[name], values, psi_bins, exact_rows)
        done += len(group)
        on_progress(done, total, PROFILING)
    distinct = table.distinct([n for n in text if presence[n].present])
    for name in text:
        present, count = presence[name].present, distinct.get(name, 0)
        column = text_profile(name, types[name], present, count, None)
        if present and not column.id_like:  # an identifier's million values are counted, never fetched
            column = text_profile(name, types[name], present, count, table.categories(name))
        profiles[name] = column
        done += 1
        on_progress(done, total, PROFILING)
    return ReferenceProfile(table.rows, {name: profiles[name] for name in types}, psi_bins, exact_rows,
                            table.rejected)


def check_table(table: TableStats, profile: ReferenceProfile, spec: DriftSpec, *, target: str | None,
                batch_name: str, reference_name: str, on_progress: Progress = no_progress) -> DriftReport:
    """An open batch table against the reference's profile (workbench.core.drift.compare's report)."""
    names = [name for name, _type in table.columns]
    present = table.present()
    plan = planned(profile, names, spec, target) if table.rows else []
    roles = {ref.name: role for ref, role in plan}
    total, done = len(plan), 0
    checks = {}
    on_progress(0, total, CHECKING)
    for group in table.groups([ref.name for ref, _role in plan if ref.needs == VALUES]):
        values = table.numbers(group)
        for name in group:
            numbers = values.pop(name)
            # Only a numeric reference column asks for values, and only there do non-numbers matter.
            non_numbers = present[name] - len(numbers)
            examples = table.non_numbers(name, EXAMPLES) if non_numbers else ()
            column = BatchColumn(name, table.rows, present[name], non_numbers, examples, numbers)
            checks[name] = check_column(profile.columns[name], column, spec, roles[name])
            done += 1
            on_progress(done, total, CHECKING)
    for ref, role in plan:
        if ref.needs == VALUES:
            continue
        wanted = ref.needs == CATEGORIES and present[ref.name] > 0
        column = BatchColumn(ref.name, table.rows, present[ref.name],
                             categories=table.categories(ref.name) if wanted else None)
        checks[ref.name] = check_column(ref, column, spec, role)
        done += 1
        on_progress(done, total, CHECKING)
    has_labels = bool(target) and present.get(target, 0) > 0
    return report_from_checks(profile, checks, names, table.rows, spec, target=target, has_labels=has_labels,
                              batch_name=batch_name, reference_name=reference_name)
