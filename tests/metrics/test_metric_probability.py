import numpy as np
import pytest

from obliviate.metrics import length_normalised_prob, normalised_choice_prob


def test_length_normalised_prob():
    np.testing.assert_allclose(length_normalised_prob(np.array([0.0, np.log(2.0)])), [1.0, 0.5], atol=1e-12)


def test_normalised_choice_prob_by_hand():
    # p_c = e^-1, perturbed p = e^-2, e^-0.5
    got = normalised_choice_prob(np.array([1.0, 0.0]), np.array([[2.0, 0.5], [0.0, 0.0]]))
    expected = [np.exp(-1) / (np.exp(-1) + np.exp(-2) + np.exp(-0.5)), 1 / 3]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_normalised_choice_prob_is_stable_for_huge_nll():
    # exp(-1000) underflows to 0; a naive p_c / sum would give 0/0.
    np.testing.assert_allclose(normalised_choice_prob(np.array([1000.0]), np.array([[1000.0, 1001.0]])),
                               [1 / (2 + np.exp(-1))], atol=1e-6)


def test_normalised_choice_prob_shape_error():
    with pytest.raises(ValueError, match="shape"):
        normalised_choice_prob(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
