"""The statistics of a drift check: two-sample tests and distances between a reference sample
and a batch, and the binning that turns samples into counts. Plain numpy arrays in, numbers out;
which test a column gets and what counts as drifted is workbench.core.drift's.

Pure: numpy, and scipy.stats imported inside the functions that need it, so that reading drift
records (which never computes a statistic) does not pay for importing scipy.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Mapping, Sequence

import numpy as np

PSI_EPSILON = 1e-4
"""Stands in for an empty bin's share in PSI (ln 0 is undefined); the usual choice."""
PSI_LEVELS = ((0.1, "stable"), (0.25, "moderate"), (math.inf, "major"))


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: (D statistic, p-value)."""
    from scipy import stats  # here, not at import: reading drift records needs no scipy

    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def wasserstein_normalized(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein (earth mover's) distance in units of the reference's standard deviation.

    A constant reference has no spread to scale by: its mean's magnitude (or 1) stands in."""
    from scipy import stats

    distance = float(stats.wasserstein_distance(reference, current))
    scale = float(np.std(reference))
    if scale <= 0:
        scale = abs(float(np.mean(reference))) or 1.0
    return distance / scale


def wasserstein_sorted(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein (W1) distance between two sorted samples, each value weighing the same
    within its sample: the integral of |F_ref - F_cur| over the merged values, in O(n) after
    the sorts (scipy's wasserstein_distance sorts and argsorts both again, four times the
    time on a 200,000-row batch). Equal to scipy's up to rounding."""
    if len(reference) == 0 or len(current) == 0:
        return 0.0
    # Each reference value goes after the batch values equal to it; within a run of equal
    # values the step is 0, so the counts only need to be right at a run's last element.
    at = np.searchsorted(current, reference, side="right")
    merged = np.insert(current, at, reference)
    is_ref = np.zeros(len(merged), dtype=bool)
    is_ref[at + np.arange(len(reference))] = True
    ref_le = np.cumsum(is_ref)[:-1]
    cur_le = np.arange(1, len(merged)) - ref_le
    # A sum of products, not np.dot or @: BLAS's threads took 5-20 ms for one 24,000-long dot
    # product on this busy 2-core machine (a sum takes 0.05 ms), a second per 100 columns.
    return float(np.sum(np.abs(ref_le / len(reference) - cur_le / len(current)) * np.diff(merged)))


def chi2_test(reference_counts: Sequence[float], current_counts: Sequence[float]) -> tuple[float, float]:
    """Chi-squared test of homogeneity of two count vectors over the same categories:
    (statistic, p-value). Categories absent from both are dropped; one category left means
    there is nothing to test (0, 1)."""
    from scipy import stats

    table = np.array([reference_counts, current_counts], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def js_distance(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    """Jensen-Shannon distance (the square root of the divergence), base 2: 0 same, 1 disjoint."""
    from scipy.spatial.distance import jensenshannon

    p = np.asarray(reference_counts, dtype=float)
    q = np.asarray(current_counts, dtype=float)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    value = float(jensenshannon(p / p.sum(), q / q.sum(), base=2))
    return 0.0 if math.isnan(value) else value


def psi(reference_counts: Sequence[float], current_counts: Sequence[float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index: sum over bins of (a - e) * ln(a / e), where e and a are the
    reference's and the batch's shares; an empty bin's share counts as `epsilon`."""
    e = np.asarray(reference_counts, dtype=float)
    a = np.asarray(current_counts, dtype=float)
    if e.sum() == 0 or a.sum() == 0:
        return 0.0
    e = np.where(e == 0, epsilon, e / e.sum())
    a = np.where(a == 0, epsilon, a / a.sum())
    return float(np.sum((a - e) * np.log(a / e)))


# -- sampling noise ------------------------------------------------------------------------------
#
# A distance between a small batch and the reference is never zero, even when the batch is a
# random sample of the reference: 200 rows of a 25-category column sit at a Jensen-Shannon
# distance of about 0.15 from their own source, past the 0.1 threshold. On a wide table that
# noise alone drifted a third of the columns of every 200-row clean sample. So each distance is
# also held against its noise floor: what random samples of the batch's size drawn from the
# reference itself score (their mean plus NOISE_Z standard deviations, over NOISE_ROUNDS
# samples). The samples are multinomial draws over the reference's counts (categories, PSI bins,
# or at most NOISE_GRID quantiles of a number column), so the floor costs the same for a
# reference of a thousand rows or a million.

NOISE_ROUNDS = 40
NOISE_Z = 3.0
"""Per column, a floor at mean + 3 sd of the null leaves roughly one false drift in a few hundred
columns: on a 74-column table, three at once (the column rule) is rarer than one batch in a hundred."""
NOISE_GRID = 400


def noise_rng(column: str, rows: int) -> np.random.Generator:
    """Draws that depend only on the column and the batch size: the same check, the same report."""
    return np.random.default_rng([rows, *column.encode()[:64]])


def _floor(values: np.ndarray) -> float:
    return float(np.mean(values) + NOISE_Z * np.std(values))


def _shares(counts: np.ndarray, epsilon: float) -> np.ndarray:
    total = counts.sum(axis=-1, keepdims=True)
    return np.where(counts == 0, epsilon, counts / np.where(total == 0, 1, total))


def psi_noise(reference_counts: Sequence[float], rows: int, rng: np.random.Generator) -> float:
    """The PSI that `rows` values drawn from the reference itself stay under (see above)."""
    e = np.asarray(reference_counts, dtype=float)
    if e.sum() == 0 or rows == 0:
        return 0.0
    draws = rng.multinomial(rows, e / e.sum(), size=NOISE_ROUNDS).astype(float)
    ref, cur = _shares(e, PSI_EPSILON), _shares(draws, PSI_EPSILON)
    return _floor(np.sum((cur - ref) * np.log(cur / ref), axis=1))


def js_noise(reference_counts: Sequence[float], rows: int, rng: np.random.Generator) -> float:
    """The Jensen-Shannon distance (base 2) that `rows` values drawn from the reference stay under."""
    e = np.asarray(reference_counts, dtype=float)
    if e.sum() == 0 or rows == 0:
        return 0.0
    p = e / e.sum()
    q = rng.multinomial(rows, p, size=NOISE_ROUNDS) / rows
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
    return _floor(np.sqrt(np.clip((kl_p + kl_q) / 2, 0, None)))


def wasserstein_noise(reference: np.ndarray, rows: int, rng: np.random.Generator) -> float:
    """The normalized Wasserstein distance that `rows` values drawn from the reference stay
    under, over the reference compressed to at most NOISE_GRID quantiles."""
    if len(reference) == 0 or rows == 0:
        return 0.0
    grid, counts = noise_grid(reference)
    return wasserstein_noise_on_grid(grid, counts, wasserstein_scale(reference), rows, rng)


def noise_grid(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's NOISE_GRID quantiles (inverted_cdf), distinct, and how many of the grid's
    points each stands for: all wasserstein_noise needs of the reference (a profile keeps it)."""
    return np.unique(np.quantile(reference, np.linspace(0, 1, NOISE_GRID), method="inverted_cdf"),
                     return_counts=True)


def wasserstein_noise_on_grid(grid: np.ndarray, counts: np.ndarray, scale: float, rows: int,
                              rng: np.random.Generator) -> float:
    """wasserstein_noise from the reference's noise_grid and wasserstein_scale."""
    if rows == 0 or len(grid) < 2:
        return 0.0
    weights = counts / counts.sum()
    draws = rng.multinomial(rows, weights, size=NOISE_ROUNDS) / rows
    gaps = np.abs(np.cumsum(draws, axis=1) - np.cumsum(weights))[:, :-1]
    return _floor(gaps @ np.diff(grid) / scale)


def wasserstein_scale(reference: np.ndarray) -> float:
    """What a Wasserstein distance is divided by: the reference's standard deviation; for a
    constant reference its mean's magnitude, or 1."""
    return scale_of(float(np.std(reference)), float(np.mean(reference)))


def scale_of(sd: float, mean: float) -> float:
    return sd or abs(mean) or 1.0


def mean_noise(rows: int) -> float:
    """How far, in standard deviations, a mean of `rows` values drawn from the reference moves
    by chance (NOISE_Z standard errors)."""
    return NOISE_Z / math.sqrt(rows) if rows else math.inf


def psi_level(value: float) -> str:
    """stable (< 0.1), moderate (0.1 to 0.25), major (above 0.25)."""
    return next(name for bound, name in PSI_LEVELS if value < bound)


def quantile_bins(reference: np.ndarray, current: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both samples over the reference's quantile bins: right-closed, with edges at
    reference values (repeated edges of a discrete variable merge into one bin), the first bin
    open below and the last above."""
    inner = psi_edges(reference, bins)
    return bin_counts(inner, reference), bin_counts(inner, current)


def psi_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """quantile_bins' inner edges: the reference's quantiles (inverted_cdf), distinct, below its maximum."""
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf")
    return np.unique(edges[edges < np.max(reference)])


def bin_counts(inner: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many values fall in each of the bins that `inner` edges make (right-closed)."""
    return np.bincount(np.searchsorted(inner, values, side="left"), minlength=len(inner) + 1)


def category_counts(reference: Sequence | Mapping[str, int], current: Sequence | Mapping[str, int]
                    ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The union of categories (the reference's, most frequent first, then new ones) and the
    count of each in both samples. Either side may be given as values or as {category: count}."""
    ref_map = reference if isinstance(reference, Mapping) else Counter(map(str, reference))
    cur_map = current if isinstance(current, Mapping) else Counter(map(str, current))
    order = sorted(ref_map, key=lambda c: (-ref_map[c], c)) + sorted(c for c in cur_map if c not in ref_map)
    return (order, np.array([ref_map.get(c, 0) for c in order], dtype=float),
            np.array([cur_map.get(c, 0) for c in order], dtype=float))
