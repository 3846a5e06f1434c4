import zlib

import numpy as np
import pytest

from obliviate.metrics import (
    SCORES,
    loss_score,
    mia_auc,
    min_k_pp_score,
    min_k_score,
    privleak,
    zlib_score,
)

LOGP = np.array([-0.1, -2.0, -0.5, -3.0, -1.0])


def test_scores_registry():
    assert set(SCORES) == {"loss", "zlib", "min_k", "min_k_pp"}


def test_loss_and_zlib():
    np.testing.assert_allclose(loss_score([1.5, 2.0]), [1.5, 2.0])
    texts = ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "The quick brown fox jumps over the lazy dog"]
    expected = [2.0 / len(zlib.compress(texts[0].encode())), 2.0 / len(zlib.compress(texts[1].encode()))]
    got = zlib_score(np.array([2.0, 2.0]), texts)
    np.testing.assert_allclose(got, expected)
    assert got[0] > got[1]  # same loss, but repetitive text is "explained" by compressibility


def test_min_k_by_hand():
    # k = 0.4 of 5 tokens -> the 2 lowest: -3.0, -2.0
    np.testing.assert_allclose(min_k_score([LOGP]), [2.5], atol=1e-6)
    np.testing.assert_allclose(min_k_score([LOGP], k=0.1), [3.0], atol=1e-6)  # at least one token
    np.testing.assert_allclose(min_k_score([LOGP], k=1.0), [1.32], atol=1e-6)


def test_min_k_pp_by_hand():
    mu = np.array([-1.0, -1.0, -1.0, -1.0, -1.0])
    sigma = np.array([1.0, 2.0, 0.5, 4.0, 0.0])
    # z = [0.9, -0.5, 1.0, -0.5, 0.0]; lowest 2: -0.5, -0.5
    np.testing.assert_allclose(min_k_pp_score([LOGP], [mu], [sigma]), [0.5], atol=1e-6)
    # sigma 0 is clamped to 1e-6: z_5 = (-1.0 - -0.5) / 1e-6 = -5e5
    got = min_k_pp_score([LOGP], [mu + 0.5], [sigma], k=0.2)
    np.testing.assert_allclose(got, [5e5], rtol=1e-6)


def test_mia_auc():
    assert mia_auc(np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0])) == 1.0
    assert mia_auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5
    assert mia_auc(np.array([5.0, 6.0]), np.array([1.0, 2.0])) == 0.0
    # one of four (member, non-member) pairs mis-ordered
    assert abs(mia_auc(np.array([0.1, 1.5]), np.array([1.0, 2.0])) - 0.75) < 1e-6


def test_privleak():
    assert privleak(1.0, 0.5) == pytest.approx(-100.0, abs=1e-6)
    assert privleak(0.5, 0.5) == pytest.approx(0.0, abs=1e-6)
    assert privleak(0.25, 0.5) == pytest.approx(50.0, abs=1e-6)  # over-unlearned
    assert np.isnan(privleak(0.7, 1.0))


def test_set_metrics_zlib_compresses_the_text_the_nll_is_over():
    """Carlini et al. 2021: nll / zlib size of the *same* text; the NLL is over the answer only."""
    from obliviate.data.task import QAItem
    from obliviate.evaluate import EvalConfig, set_metrics

    items = [QAItem(question="Where was Ada Kowalski born, and in which year did she move?", answer="In Tarnow."),
             QAItem(question=None, answer="A raw text, all of it scored.")]
    logp = [np.array([-1.0, -2.0]), np.array([-0.5, -0.5, -2.0])]
    probe = {"nll_avg": np.array([1.5, 1.0]), "token_logp": logp, "correct": [np.array([1, 0])] * 2,
             "mu": [np.zeros(2), np.zeros(3)], "sigma": [np.ones(2), np.ones(3)]}
    got = set_metrics(items, probe, EvalConfig())["mia_zlib"]
    expected = [1.5 / len(zlib.compress(b"In Tarnow.")), 1.0 / len(zlib.compress(b"A raw text, all of it scored."))]
    np.testing.assert_allclose(got, expected)
