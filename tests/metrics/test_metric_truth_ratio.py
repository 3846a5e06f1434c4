import numpy as np

from obliviate.metrics import forget_quality, forget_truth_ratio, retain_truth_ratio, truth_ratio


def test_truth_ratio_by_hand():
    para = np.array([1.0, 0.5])
    pert = np.array([[2.0, 3.0], [0.5, 0.5]])
    # geometric mean of p_len(perturbed) over p_len(paraphrased)
    expected = [np.sqrt(np.exp(-2.0) * np.exp(-3.0)) / np.exp(-1.0),
                np.sqrt(np.exp(-0.5) * np.exp(-0.5)) / np.exp(-0.5)]
    np.testing.assert_allclose(truth_ratio(para, pert), expected, atol=1e-6)
    np.testing.assert_allclose(truth_ratio(para, pert)[0], np.exp(-1.5), atol=1e-6)


def test_aggregates():
    r = np.array([0.5, 2.0, 1.0])
    assert abs(forget_truth_ratio(r) - (0.5 + 0.5 + 1.0) / 3) < 1e-6
    assert abs(retain_truth_ratio(r) - 0.5 / 3) < 1e-6


def test_forget_truth_ratio_handles_zero():
    assert forget_truth_ratio(np.array([0.0, 1.0])) == 0.5


def test_forget_quality():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.2, 0.8, size=40)
    assert forget_quality(a, a.copy()) == 1.0
    assert forget_quality(a, a + 5.0) < 0.01
