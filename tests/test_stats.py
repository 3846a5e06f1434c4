"""The bootstrap (obliviate/stats.py) against hand-computed percentile intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from obliviate.stats import bootstrap_ci, paired_bootstrap_means, percentile_interval, resample_indices

# four resamples of three items, written out so the interval can be computed by hand
INDEX = np.array([[0, 0, 0], [0, 1, 2], [2, 2, 2], [1, 1, 2]])


def test_mean_interval_by_hand():
    # resample means 1, 2, 3, 7/3 -> sorted 1, 2, 7/3, 3; numpy's linear percentile at
    # 2.5% sits at position 0.025 * 3 = 0.075, at 97.5% at 2.925
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0], index=INDEX)
    assert lo == pytest.approx(1 + 0.075 * (2 - 1))
    assert hi == pytest.approx(7 / 3 + 0.925 * (3 - 7 / 3))
    # any statistic: the medians of the resamples are 1, 2, 3, 2 -> sorted 1, 2, 2, 3
    assert bootstrap_ci([1.0, 2.0, 3.0], np.median, index=INDEX) == pytest.approx([1.075, 2.925])


def test_paired_ratio_by_hand():
    # 2 items: the target knows both, U neither, the attack brings back item 0 only
    cols = {"a": [1.0, 0.0], "t": [1.0, 1.0], "u": [0.0, 0.0]}
    index = np.array([[0, 0], [1, 1], [0, 1], [1, 0]])
    m = paired_bootstrap_means(cols, index=index)
    assert m["a"].tolist() == [1.0, 0.0, 0.5, 0.5] and m["t"].tolist() == [1.0] * 4
    ratio = (m["a"] - m["u"]) / (m["t"] - m["u"])  # 1, 0, 1/2, 1/2 -> sorted 0, 1/2, 1/2, 1
    lo, hi = percentile_interval(ratio)
    assert lo == pytest.approx(0.075 * 0.5) and hi == pytest.approx(0.5 + 0.925 * 0.5)


def test_paired_means_leave_out_items_a_model_was_not_probed_on():
    m = paired_bootstrap_means({"x": [1.0, np.nan, 0.0]}, index=np.array([[0, 1, 2], [1, 1, 1], [0, 1, 1]]))
    assert m["x"][0] == 0.5 and math.isnan(m["x"][1]) and m["x"][2] == 1.0


def test_pairing_keeps_a_ratio_of_identical_items_exact():
    # the attack restores exactly the items the target knew: every paired draw gives ratio 1;
    # resampling the two models' items independently would give a wide interval
    t = np.array([1.0, 0.0] * 20)
    m = paired_bootstrap_means({"a": t, "t": t})
    assert percentile_interval(m["a"] / m["t"]) == [1.0, 1.0]
    rng = np.random.default_rng(1)
    unpaired = [t[rng.integers(0, 40, 40)].mean() / t[rng.integers(0, 40, 40)].mean() for _ in range(1000)]
    lo, hi = percentile_interval(unpaired)
    assert hi - lo > 0.4


def test_seeded_and_of_the_binomial_width():
    x = np.array([1.0, 0.0] * 20)  # 40 items, mean 0.5: normal approximation +- 1.96 * sqrt(.25 / 40)
    lo, hi = bootstrap_ci(x)
    assert bootstrap_ci(x) == [lo, hi]  # seeded: the same interval every time
    assert lo == pytest.approx(0.5 - 0.155, abs=0.03) and hi == pytest.approx(0.5 + 0.155, abs=0.03)
    y = np.linspace(0.0, 1.0, 40)  # continuous values: another seed draws other resamples
    assert bootstrap_ci(y, seed=1) != bootstrap_ci(y, seed=0)
    assert resample_indices(40).shape == (1000, 40)


def test_empty_and_all_nan():
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert all(math.isnan(v) for v in percentile_interval([float("nan")] * 3))
    with pytest.raises(ValueError, match="different lengths"):
        paired_bootstrap_means({"a": [1.0], "b": [1.0, 2.0]})
