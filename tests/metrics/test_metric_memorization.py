import numpy as np
import pytest

from obliviate.metrics import exact_memorization, extraction_strength


def _flags(*items):
    return [np.array(i, dtype=bool) for i in items]


def test_exact_memorization():
    np.testing.assert_allclose(exact_memorization(_flags([1, 0, 1, 1], [0, 0], [1])), [0.75, 0.0, 1.0])


@pytest.mark.parametrize("flags,expected", [
    ([0, 0, 0, 0], 0.0),        # nothing extractable (k* = |y|), not 1/|y|
    ([1, 1, 1, 1], 1.0),        # k* = 0
    ([1, 1, 1, 0], 0.0),        # last token wrong: k* = |y|
    ([0, 1, 0, 1, 1], 1 - 3 / 5),  # only the 2-token suffix is right: k* = 3
    ([0, 1, 1, 1], 1 - 1 / 4),
    ([1], 1.0),
    ([0], 0.0),
])
def test_extraction_strength_by_hand(flags, expected):
    np.testing.assert_allclose(extraction_strength(_flags(flags)), [expected], atol=1e-12)


def test_extraction_strength_matches_brute_force():
    rng = np.random.default_rng(0)
    items = [rng.random(rng.integers(1, 9)) < 0.7 for _ in range(200)]

    def brute(c):
        n = len(c)
        k = next(k for k in range(n + 1) if c[k:].all())
        return 1 - k / n

    np.testing.assert_allclose(extraction_strength(items), [brute(c) for c in items], atol=1e-12)


def test_empty_answer_is_an_error():
    with pytest.raises(ValueError, match="item 1"):
        exact_memorization(_flags([1], []))
