"""Bootstrap confidence intervals over probed items (Efron & Tibshirani 1993, "An Introduction
to the Bootstrap", ch. 13: the percentile interval).

With 40 forget facts one fact is 2.5 points, so every aggregate the tool reports over items
(forget/retain accuracy, ROUGE, probability, truth ratio, and the audit's recovery ratios) gets
a 95% interval: draw n items with replacement `n_resamples` times (seeded, so a rerun gives the
same interval), recompute the statistic on each draw, and take the 2.5th and 97.5th
percentiles. Statistics of several per-item columns (a recovery score uses K(U), K(T), K(O),
K(A(U)), K(A(O)) on the same items) are *paired*: every column is resampled with the same
item indices, so the interval of the ratio reflects how the items co-vary, which resampling
each model's items separately would not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

N_RESAMPLES = 1000
LEVEL = 0.95
SEED = 0


def resample_indices(n: int, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(n_resamples, n) item indices drawn with replacement; the same (n, n_resamples, seed)
    always gives the same draws."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def percentile_interval(samples: Sequence[float] | np.ndarray, level: float = LEVEL) -> list[float]:
    """[lo, hi]: the (1 - level)/2 and (1 + level)/2 percentiles (linear interpolation, numpy's
    default) of the finite bootstrap statistics; [nan, nan] when none is finite."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if not len(s):
        return [float("nan"), float("nan")]
    lo, hi = np.percentile(s, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def paired_bootstrap_means(columns: Mapping[str, Sequence[float] | np.ndarray], n_resamples: int = N_RESAMPLES,
                           seed: int = SEED, index: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """{name: (n_resamples,) means of the column over paired draws of items}, vectorised; NaN
    values (an item a model was not probed on) are left out of a mean, and a draw with no
    finite value gives NaN. The statistic of a ratio of means is then computed per draw."""
    cols = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    lengths = {len(v) for v in cols.values()}
    if len(lengths) != 1:
        raise ValueError(f"paired bootstrap: columns of different lengths {sorted(lengths)}")
    n = lengths.pop()
    if n == 0:
        return {k: np.full(n_resamples if index is None else len(index), np.nan) for k in cols}
    index = resample_indices(n, n_resamples, seed) if index is None else np.asarray(index)
    out = {}
    for k, v in cols.items():
        finite = np.isfinite(v)
        count = finite[index].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = np.where(count > 0, np.where(finite, v, 0.0)[index].sum(axis=1) / count, np.nan)
    return out


def bootstrap_ci(values: Sequence[float] | np.ndarray, statistic: Callable[[np.ndarray], float] | None = None,
                 n_resamples: int = N_RESAMPLES, seed: int = SEED, level: float = LEVEL,
                 index: np.ndarray | None = None) -> list[float]:
    """The percentile interval of `statistic` (default: the mean) of one per-item column."""
    x = np.asarray(values, dtype=np.float64)
    if not len(x):
        return [float("nan"), float("nan")]
    index = resample_indices(len(x), n_resamples, seed) if index is None else np.asarray(index)
    if statistic is None:
        return percentile_interval(x[index].mean(axis=1), level)  # the mean, vectorised
    return percentile_interval([statistic(x[row]) for row in index], level)
