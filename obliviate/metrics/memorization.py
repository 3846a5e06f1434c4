"""Memorisation of answers under teacher forcing, from per-token argmax-correct flags.

`correct[i][t]` is True when argmax p(. | x_i, y_i,<t) == y_i,t for answer token t.
"""

import numpy as np


def _flags(correct: list[np.ndarray]) -> list[np.ndarray]:
    out = [np.asarray(c, dtype=bool).ravel() for c in correct]
    for i, c in enumerate(out):
        if c.size == 0:
            raise ValueError(f"item {i}: no answer tokens")
    return out


def exact_memorization(correct: list[np.ndarray]) -> np.ndarray:
    """Exact memorisation (Tirumala et al. 2022; open-unlearning `exact_memorization`): per item,
    the fraction of answer tokens predicted exactly under teacher forcing."""
    return np.array([c.mean() for c in _flags(correct)], dtype=np.float64)


def extraction_strength(correct: list[np.ndarray]) -> np.ndarray:
    """Extraction strength (Carlini et al. 2021; open-unlearning's definition): per item
    1 - k*/|y|, k* the smallest k in 0..|y| such that tokens k..|y|-1 are all predicted exactly.

    k* = (index of the last wrong token) + 1, so a wrong last token gives k* = |y| and 0, and an
    all-correct answer gives k* = 0 and 1. (open-unlearning's loop stops at k = |y| - 1 and
    scores an all-wrong answer 1/|y|; we do not repeat that off-by-one.)
    """
    values = []
    for c in _flags(correct):
        wrong = np.flatnonzero(~c)
        k_star = wrong[-1] + 1 if wrong.size else 0
        values.append(1.0 - k_star / c.size)
    return np.array(values, dtype=np.float64)
