"""Truth ratio and forget quality (TOFU, Maini et al. 2024, sec. 2.5.1 and eq. 1).

R_i = geomean_j p_len(perturbed_ij) / p_len(paraphrased_i): how much more likely the model
finds wrong answers than a paraphrase of the right one.
"""

import numpy as np
from scipy.stats import ks_2samp


def truth_ratio(nll_avg_paraphrased: np.ndarray, nll_avg_perturbed: np.ndarray) -> np.ndarray:
    """Per-item R_i = exp(mean_j(-nll_avg_perturbed_ij) + nll_avg_paraphrased_i); perturbed is (n, k)."""
    para = np.asarray(nll_avg_paraphrased, dtype=np.float64)
    pert = np.asarray(nll_avg_perturbed, dtype=np.float64)
    if pert.ndim != 2 or pert.shape[0] != para.shape[0]:
        raise ValueError(f"nll_avg_perturbed must have shape ({para.shape[0]}, k), got {pert.shape}")
    with np.errstate(over="ignore"):
        return np.exp(para - pert.mean(axis=1))


def forget_truth_ratio(r: np.ndarray) -> float:
    """TOFU's forget-set aggregate: mean_i min(R_i, 1/R_i)."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return float(np.mean(np.minimum(r, 1.0 / r)))


def retain_truth_ratio(r: np.ndarray) -> float:
    """TOFU's retain / utility aggregate: mean_i max(0, 1 - R_i)."""
    return float(np.mean(np.maximum(0.0, 1.0 - np.asarray(r, dtype=np.float64))))


def forget_quality(r_model: np.ndarray, r_oracle: np.ndarray) -> float:
    """TOFU's forget quality: p-value of the two-sample KS test between the model's and the
    retain-only oracle's per-item truth ratios on the same forget items (high = indistinguishable)."""
    return float(ks_2samp(np.asarray(r_model, dtype=np.float64), np.asarray(r_oracle, dtype=np.float64)).pvalue)
