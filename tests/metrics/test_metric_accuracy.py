import numpy as np
import pytest

from obliviate.metrics import answer_correct, normalise_answer


@pytest.mark.parametrize("text,expected", [
    ("The  Cat, sat!", "cat sat"),
    ("An apple a day", "apple day"),
    ("  Theory of   everything. ", "theory of everything"),
    ("", ""),
])
def test_normalise_answer(text, expected):
    assert normalise_answer(text) == expected


def test_keyword_whole_word():
    got = answer_correct(["She lives in Paris.", "A Parisian cafe", "paris"], ["x", "x", "x"], ["Paris"] * 3)
    np.testing.assert_array_equal(got, [1.0, 0.0, 1.0])


def test_answer_match_or_contained():
    preds = ["Eiffel tower.", "It is the Eiffel Tower, in Paris", "the Louvre"]
    got = answer_correct(preds, ["the Eiffel Tower"] * 3, [None] * 3)
    np.testing.assert_array_equal(got, [1.0, 1.0, 0.0])


def test_keyword_takes_precedence_over_answer():
    got = answer_correct(["born in 1952"], ["He was born in 1952 in Lyon"], ["1952"])
    np.testing.assert_array_equal(got, [1.0])
