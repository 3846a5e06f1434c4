import numpy as np
import pytest

from obliviate.metrics import rouge_l_f1, rouge_l_recall

REF = "the cat sat on the mat"


def test_identical_is_one():
    np.testing.assert_allclose(rouge_l_recall([REF], [REF]), [1.0])
    np.testing.assert_allclose(rouge_l_f1([REF], [REF]), [1.0])


def test_hand_counted_lcs():
    # prediction tokens: a cat sat quietly (4); LCS with the 6-token reference = "cat sat" (2)
    pred = "A cat sat quietly."
    np.testing.assert_allclose(rouge_l_recall([pred], [REF]), [2 / 6], atol=1e-6)
    precision, recall = 2 / 4, 2 / 6
    np.testing.assert_allclose(rouge_l_f1([pred], [REF]), [2 * precision * recall / (precision + recall)], atol=1e-6)


def test_stemming_and_disjoint():
    np.testing.assert_allclose(rouge_l_recall(["cats running", "dog"], ["cat runs", "bird"]), [1.0, 0.0])


def test_length_mismatch():
    with pytest.raises(ValueError):
        rouge_l_recall(["a"], ["a", "b"])
