"""What a drift check needs of the reference, computed once per reference content, and what it
needs of a batch: the shapes workbench.core.drift compares, and the pure functions that make
them from numpy arrays.

A reference of a million rows used to be read, cast to text and numbers and sorted again for
every batch. Its profile holds, per column, only what the comparison reads:

  every column   rows with a value, the type the file gave it, whether every value is a
                 (finite) number
  numbers        mean and population standard deviation; PSI's quantile-bin inner edges and the
                 reference's counts in them (workbench.core.drift_stats.quantile_bins); the
                 NOISE_GRID quantile grid of the Wasserstein noise floor; the values themselves,
                 sorted, when there are at most `exact_rows` of them (KS needs them; a
                 Wasserstein distance from them is exact); else ATOMS equal-weight atoms
  categories     the count of each category (low-cardinality integers named f"{v:g}", text by
                 its value); for text, the number of distinct values (identifiers are not
                 compared, and their values are not kept)

Wasserstein on a large reference: the atoms are the reference's quantiles at the middle of each
of ATOMS blocks of equal mass (atom k = the inverted_cdf quantile at (k + 1/2) / ATOMS). Written
as quantile functions, W1(P, Q) = integral over u in [0, 1] of |F_P^-1(u) - F_Q^-1(u)|, and the
atoms' quantile function on block k, [k/ATOMS, (k+1)/ATOMS), is one value between the
reference's quantiles at the block's two ends. So on that block the two differ by at most the
block's range, and

    W1(reference, atoms) <= sum over blocks of (1/ATOMS) * range_k = (max - min) / ATOMS,

the blocks' ranges lying end to end. By the triangle inequality the distance of a batch to the
atoms differs from its distance to the full reference by at most W1(reference, atoms): the
normalized Wasserstein statistic is off by at most that divided by the scale (the standard
deviation), so by at most (max - min) / (ATOMS * sd). The batch is not compressed (it is sorted
in full: a 200,000-row column sorts in a millisecond). The profile stores the exact
W1(reference, atoms) per column (`wasserstein_error`, usually far below the bound: only the
blocks in a heavy tail are wide), and a report says so when a column's distance lies within it
of its threshold. Every other statistic (PSI, noise floors, KS, chi-squared, JS, the mean shift,
the findings) is exact: the same numbers as comparing the full columns.

Pure: numpy only.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from workbench.core.drift_stats import bin_counts, noise_grid, psi_edges, scale_of

FORMAT_VERSION = 1
"""Bumped when what a profile holds or how it is computed changes: older profiles are rebuilt."""
ATOMS = 4096
"""Equal-weight atoms that stand for a large reference's distribution in a Wasserstein distance."""
EXACT_ROWS = 10_000
"""A column with at most this many values (or at most small_reference_rows, if higher) keeps them
all, sorted: 80 KB, and its Wasserstein distance is exact."""
LOW_CARDINALITY = 10
"""Integer-valued numbers with at most this many distinct reference values are categories."""
ID_LIKE_SHARE = 0.9
"""A text column whose reference has distinct values for more than this share of its rows (and
more than ID_LIKE_MIN of them) looks like an identifier and is not compared."""
ID_LIKE_MIN = 50
EXAMPLES = 50
"""Non-numbers of a batch column kept for a type-change finding (its first ones, in row order)."""

_EMPTY = np.zeros(0)

VALUES, CATEGORIES, NOTHING = "values", "categories", "nothing"
"""What a batch column must provide for its reference column (ReferenceColumn.needs)."""


@dataclass(frozen=True, eq=False)
class ReferenceColumn:
    """One reference column, as a drift check needs it (see the module docstring)."""

    name: str
    source_type: str
    present: int
    """Values that are not missing."""
    numeric: bool
    """Every present value is a finite number (and there is at least one)."""
    low_cardinality: bool = False
    distinct: int = 0
    """Text columns: distinct values."""
    mean: float = math.nan
    sd: float = math.nan
    """Population standard deviation (numpy's np.std)."""
    psi_edges: np.ndarray = field(default_factory=lambda: _EMPTY)
    psi_counts: np.ndarray = field(default_factory=lambda: _EMPTY)
    noise_grid: np.ndarray = field(default_factory=lambda: _EMPTY)
    noise_counts: np.ndarray = field(default_factory=lambda: _EMPTY)
    values: np.ndarray = field(default_factory=lambda: _EMPTY)
    """All present values, sorted, when there are at most exact_rows of them; else empty."""
    atoms: np.ndarray = field(default_factory=lambda: _EMPTY)
    """ATOMS equal-weight quantiles, when `values` is empty (a large numeric column)."""
    wasserstein_error: float = 0.0
    """W1(values, atoms) in the column's units: the most the atoms move a Wasserstein distance."""
    value_range: float = 0.0
    """max - min of the values (the error's documented bound is value_range / ATOMS)."""
    categories: tuple[str, ...] = ()
    category_counts: np.ndarray = field(default_factory=lambda: _EMPTY)

    @property
    def id_like(self) -> bool:
        return not self.numeric and self.distinct > ID_LIKE_MIN and self.distinct > ID_LIKE_SHARE * self.present

    @property
    def compared_as_numbers(self) -> bool:
        return self.numeric and not self.low_cardinality

    @property
    def needs(self) -> str:
        """What a batch column must provide: its finite numbers (VALUES; low-cardinality ones are
        counted from them), its text categories (CATEGORIES), or only its counts (NOTHING)."""
        if self.present == 0:
            return NOTHING
        if self.numeric:
            return VALUES
        return NOTHING if self.id_like else CATEGORIES

    @property
    def distribution(self) -> np.ndarray:
        """Sorted equal-weight values for a Wasserstein distance: all of them, or the atoms."""
        return self.values if self.values.size else self.atoms

    @property
    def scale(self) -> float:
        return scale_of(self.sd, self.mean)

    def category_map(self) -> dict[str, int]:
        return dict(zip(self.categories, (int(n) for n in self.category_counts)))


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """A reference table's profile: its columns in file order."""

    rows: int
    columns: dict[str, ReferenceColumn]
    psi_bins: int
    exact_rows: int
    rejected: tuple[tuple[int, str], ...] = ()
    """CSV rows of the reference that could not be read and are left out: (line, what was wrong)."""


@dataclass(frozen=True, eq=False)
class BatchColumn:
    """One batch column, as much as its reference column needs (ReferenceColumn.needs)."""

    name: str
    rows: int
    """The batch's rows (missing values included)."""
    present: int
    non_numbers: int = 0
    """Present values that are not finite numbers."""
    examples: tuple[str, ...] = ()
    """The first few of them (EXAMPLES, row order), when the reference column is numbers."""
    values: np.ndarray | None = None
    """Its finite numbers in row order (VALUES)."""
    categories: Mapping[str, int] | None = None
    """{text: count} of its present values (CATEGORIES)."""

    @property
    def numeric(self) -> bool:
        return self.present > 0 and self.non_numbers == 0


def exact_rows_for(small_reference_rows: int) -> int:
    return max(EXACT_ROWS, small_reference_rows)


# -- the reference ------------------------------------------------------------------------------

def numeric_profile(name: str, source_type: str, values: np.ndarray, psi_bins: int, exact_rows: int) -> ReferenceColumn:
    """A column whose every present value is a finite number: `values` are those, in row order
    (the mean and sd are summed in that order, as a comparison of the full column does)."""
    present = len(values)
    ordered = np.sort(values)
    distinct = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
    if len(distinct) <= LOW_CARDINALITY and bool(np.all(distinct == np.round(distinct))):
        names, counts = number_categories(values)
        return ReferenceColumn(name, source_type, present, True, low_cardinality=True, categories=names,
                             category_counts=counts)
    edges = psi_edges(ordered, psi_bins)
    grid, grid_counts = noise_grid(ordered)
    kept, atoms, error = ordered, _EMPTY, 0.0
    if present > exact_rows:
        kept = _EMPTY
        atoms = ordered[atom_ranks(present, ATOMS)]
        error = compression_error(ordered, atoms)
    return ReferenceColumn(name, source_type, present, True, mean=float(np.mean(values)), sd=float(np.std(values)),
                         psi_edges=edges, psi_counts=bin_counts(edges, ordered), noise_grid=grid,
                         noise_counts=grid_counts, values=kept, atoms=atoms, wasserstein_error=error,
                         value_range=float(ordered[-1] - ordered[0]))


def text_profile(name: str, source_type: str, present: int, distinct: int,
                 categories: Mapping[str, int] | None) -> ReferenceColumn:
    """A column with a non-number among its values (or none at all); `categories` may be None
    when the column looks like an identifier (its values are not kept)."""
    column = ReferenceColumn(name, source_type, present, False, distinct=distinct)
    if column.id_like or not categories:
        return column
    return ReferenceColumn(name, source_type, present, False, distinct=distinct, categories=tuple(categories),
                         category_counts=np.array(list(categories.values()), dtype=np.int64))


def number_categories(values: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Numbers as categories named f"{v:g}" with their counts (names that collide keep the
    larger value's count, as the {name: count} of a full comparison always did)."""
    distinct, counts = np.unique(values, return_counts=True)
    named = {f"{v:g}": int(n) for v, n in zip(distinct.tolist(), counts.tolist())}
    return tuple(named), np.array(list(named.values()), dtype=np.int64)


def atom_ranks(n: int, q: int) -> np.ndarray:
    """Indices into n sorted values of the inverted_cdf quantiles at (k + 1/2) / q, k < q."""
    k = np.arange(q, dtype=np.int64)
    return np.maximum(((2 * k + 1) * n + 2 * q - 1) // (2 * q) - 1, 0)


def compression_error(ordered: np.ndarray, atoms: np.ndarray) -> float:
    """W1 between n sorted values (weight 1/n each) and q equal-weight atoms (n >= q), from the
    quantile functions: value i covers u in [i/n, (i+1)/n), atom k covers [k/q, (k+1)/q), and
    a value's interval meets at most two atoms' (worked in units of 1/(n q), as integers)."""
    n, q = len(ordered), len(atoms)
    i = np.arange(n, dtype=np.int64)
    first = (i * q) // n
    in_first = np.minimum((i + 1) * q, (first + 1) * n) - i * q
    second = np.minimum(first + 1, q - 1)
    total = in_first * np.abs(ordered - atoms[first]) + (q - in_first) * np.abs(ordered - atoms[second])
    return float(total.sum() / (n * q))


def profile_from_columns(columns: Mapping, psi_bins: int, exact_rows: int, rows: int | None = None
                         ) -> ReferenceProfile:
    """The profile of in-memory columns (workbench.core.drift.ColumnData: text and numbers)."""
    profiles = {}
    for name, col in columns.items():
        text, numbers = col.text, col.numbers
        present = len(text) - int(np.count_nonzero(text == None))  # noqa: E711 (elementwise)
        finite = numbers[~np.isnan(numbers)]
        if present > 0 and len(finite) == present:
            profiles[name] = numeric_profile(name, col.source_type, finite, psi_bins, exact_rows)
        else:
            counts = text_counts(text)
            profiles[name] = text_profile(name, col.source_type, present, len(counts), counts)
    total = rows if rows is not None else max((len(c.text) for c in columns.values()), default=0)
    return ReferenceProfile(total, profiles, psi_bins, exact_rows)


def text_counts(text: np.ndarray) -> dict[str, int]:
    counts = Counter(text.tolist())
    counts.pop(None, None)
    return dict(counts)


# -- the batch ----------------------------------------------------------------------------------

def batch_from_column(col, needs: str) -> BatchColumn:
    """A BatchColumn from an in-memory column (ColumnData), with what `needs` asks for."""
    text, numbers = col.text, col.numbers
    missing = text == None  # noqa: E711 (elementwise)
    present = len(text) - int(np.count_nonzero(missing))
    bad = ~missing & np.isnan(numbers)
    non_numbers = int(np.count_nonzero(bad))
    examples = tuple(str(v) for v in text[bad][:EXAMPLES]) if non_numbers else ()
    values = numbers[~np.isnan(numbers)] if needs == VALUES else None
    categories = text_counts(text) if needs == CATEGORIES else None
    return BatchColumn(col.name, len(text), present, non_numbers, examples, values, categories)


def needed(profile: ReferenceProfile, names: Sequence[str]) -> dict[str, str]:
    """{batch column: what it must provide} for the batch columns the reference also has."""
    return {name: profile.columns[name].needs for name in names if name in profile.columns}
