"""Length-normalised answer probabilities (TOFU, Maini et al. 2024, sec. 2.5).

p_len(y|x) = exp(-nll_avg(y|x)), nll_avg the mean token cross-entropy over answer tokens.
"""

import numpy as np
from scipy.special import logsumexp


def length_normalised_prob(nll_avg: np.ndarray) -> np.ndarray:
    """TOFU's per-item probability p_len(y|x) = exp(-nll_avg)."""
    return np.exp(-np.asarray(nll_avg, dtype=np.float64))


def normalised_choice_prob(nll_avg_correct: np.ndarray, nll_avg_perturbed: np.ndarray) -> np.ndarray:
    """TOFU's probability on the utility sets: p_c / (p_c + sum_j p_j), with p = p_len.

    `nll_avg_correct` has shape (n,), `nll_avg_perturbed` shape (n, k). Computed in log space
    (logsumexp) so that long or unlikely answers do not underflow to 0/0.
    """
    correct = -np.asarray(nll_avg_correct, dtype=np.float64)
    perturbed = -np.asarray(nll_avg_perturbed, dtype=np.float64)
    if perturbed.ndim != 2 or perturbed.shape[0] != correct.shape[0]:
        raise ValueError(f"nll_avg_perturbed must have shape ({correct.shape[0]}, k), got {perturbed.shape}")
    all_logp = np.concatenate([correct[:, None], perturbed], axis=1)
    return np.exp(correct - logsumexp(all_logp, axis=1))
