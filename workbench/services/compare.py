"""Compare runs: the params x metrics table that `workbench compare` prints and the TUI's
compare view shows (workbench.core.compare lays it out; the lineage store reads it, set-based).
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.core.compare import (CompareTable, build_table, labelled_columns, parse_sort, parse_wheres,
                                    resolve_column, resolve_where, where_names)
from workbench.core.errors import UsageError

DEFAULT_LIMIT = 50


@dataclass(frozen=True)
class CompareRequest:
    """What to compare. Without run ids: the project's newest runs (those matching `where`)."""

    project: str | None = None
    run_ids: tuple[int, ...] = ()
    where: tuple[str, ...] = ()
    """--where expressions; all must hold."""
    sort: str | None = None
    """A column label, `-` first for descending (`-auc`)."""
    limit: int | None = DEFAULT_LIMIT
    """At most this many runs (None: all); run ids given are all shown."""
    all_params: bool = False
    reference: int | None = None
    """The run the others are compared with (default: the first shown)."""
    match: str | None = None
    """Words each found in a run's id, trigger, status or runner (the TUI's runs filter)."""


class CompareService:
    def __init__(self, session) -> None:
        self.session = session
        self._store = None

    @property
    def store(self):
        if self._store is None:
            from workbench.adapters.duckdb_compare import DuckDBCompareStore

            self._store = DuckDBCompareStore(self.session.store)
        return self._store

    def compare(self, request: CompareRequest) -> CompareTable:
        """The table; UsageError for a malformed --where / --sort or a column no run has,
        RunNotFound for an id not recorded, ProjectNotFound for an unknown project."""
        if request.limit is not None and request.limit < 0:
            raise UsageError(f"--limit {request.limit}: give a count of runs (0 = all)")
        where = parse_wheres(list(request.where))  # before any read: a typo fails at once
        sort = parse_sort(request.sort)
        project = self._project(request)
        run_ids = list(request.run_ids) or None
        if run_ids is None and request.match:
            runs = self.session.runs(project, limit=request.limit or 1 << 62, match=request.match)
            if not runs:
                return build_table([])
            run_ids = [run.id for run in runs]
        resolved = None
        if where is not None:
            params, metrics = self.store.names(project, run_ids)
            resolved = resolve_where(where, labelled_columns(params, metrics))
        limit = None if run_ids or not request.limit else request.limit
        rows = self.store.rows(project, run_ids, resolved, limit)
        named = where_names(where)  # a per-group metric the filter names stays shown
        if sort is not None and rows:
            return build_table(rows, request.all_params, sort, request.reference, named)
        if sort is not None:  # nothing to sort, but a misspelt column is still said
            params, metrics = self.store.names(project, run_ids)
            resolve_column(sort.column, labelled_columns(params, metrics), "--sort")
        return build_table(rows, request.all_params, None, request.reference, named)

    def _project(self, request: CompareRequest) -> str | None:
        """The project's recorded name; with run ids and no project, any project's runs."""
        if request.project:
            return self.session.project(request.project).name
        if request.run_ids:
            return None
        refs = [r for r in self.session.projects() if r.manifest is not None]
        if len(refs) == 1:
            return refs[0].name
        names = ", ".join(r.name for r in refs) or "none"
        raise UsageError(f"name a project to compare its runs, or give run ids (projects: {names})")
