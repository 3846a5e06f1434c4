"""Membership-inference scores and MUSE's PrivLeak.

Every score follows one convention: HIGHER = LESS member-like (a model that has memorised an
item gives it a low score). Detection AUC separates members (forget) from non-members (holdout).
"""

import zlib

import numpy as np
from sklearn.metrics import roc_auc_score

SCORES: dict[str, str] = {
    "loss": "mean answer NLL (Yeom et al. 2018)",
    "zlib": "mean NLL / zlib-compressed length in bytes (Carlini et al. 2021)",
    "min_k": "-mean of the lowest k% token log-probs (Min-K%, Shi et al. 2023)",
    "min_k_pp": "-mean of the lowest k% vocabulary-standardised token log-probs (Min-K%++, Zhang et al. 2024)",
}


def loss_score(nll_avg: np.ndarray) -> np.ndarray:
    """LOSS attack (Yeom et al. 2018): the mean token NLL itself."""
    return np.asarray(nll_avg, dtype=np.float64)


def zlib_score(nll_avg: np.ndarray, texts: list[str]) -> np.ndarray:
    """zlib attack (Carlini et al. 2021, sec. 6.1): nll_avg / len(zlib.compress(text)) in bytes,
    so text that is merely easy to compress does not look memorised."""
    nll = np.asarray(nll_avg, dtype=np.float64)
    if nll.shape[0] != len(texts):
        raise ValueError(f"{nll.shape[0]} nll values but {len(texts)} texts")
    sizes = np.array([len(zlib.compress(t.encode("utf-8"))) for t in texts], dtype=np.float64)
    return nll / sizes


def _lowest_k_mean(values: np.ndarray, k: float, item: int) -> float:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError(f"item {item}: no tokens")
    n = max(1, int(values.size * k))
    return float(np.sort(values)[:n].mean())


def min_k_score(token_logp: list[np.ndarray], k: float = 0.4) -> np.ndarray:
    """Min-K% Prob (Shi et al. 2023, eq. 1): -mean of the max(1, int(k |y|)) lowest token log-probs."""
    return np.array([-_lowest_k_mean(lp, k, i) for i, lp in enumerate(token_logp)], dtype=np.float64)


def min_k_pp_score(token_logp: list[np.ndarray], token_mu: list[np.ndarray], token_sigma: list[np.ndarray],
                   k: float = 0.4) -> np.ndarray:
    """Min-K%++ (Zhang et al. 2024, eq. 4): per token z = (logp - mu) / sigma, where mu and sigma
    are the mean and std of log p(v|prefix) under p(.|prefix) over the vocabulary; score =
    -mean of the max(1, int(k |y|)) lowest z. sigma is clamped to >= 1e-6."""
    if not len(token_logp) == len(token_mu) == len(token_sigma):
        raise ValueError("token_logp, token_mu and token_sigma must have one entry per item")
    scores = []
    for i, (lp, mu, sigma) in enumerate(zip(token_logp, token_mu, token_sigma, strict=True)):
        z = (np.asarray(lp, np.float64) - np.asarray(mu, np.float64)) / np.maximum(np.asarray(sigma, np.float64),
                                                                                  1e-6)
        scores.append(-_lowest_k_mean(z, k, i))
    return np.array(scores, dtype=np.float64)


def mia_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """Detection AUC of members (label 1) vs non-members (label 0), detector = -score.

    1.0: members perfectly detectable; 0.5: indistinguishable (what a model that never saw the
    forget set should give); below 0.5: members look *less* member-like than non-members.
    """
    members = np.asarray(member_scores, dtype=np.float64)
    nonmembers = np.asarray(nonmember_scores, dtype=np.float64)
    labels = np.concatenate([np.ones(members.size), np.zeros(nonmembers.size)])
    return float(roc_auc_score(labels, -np.concatenate([members, nonmembers])))


def privleak(auc_model: float, auc_oracle: float) -> float:
    """MUSE's PrivLeak (Shi et al. 2024, sec. 3.2), in MUSE's sign convention.

    MUSE's AUC labels the forget set so that memorisation drives it towards 0; in terms of our
    detection AUC that is A = 1 - AUC. PrivLeak = (A_model - A_oracle) / A_oracle * 100.
    With an oracle at 0.5: a model whose members are perfectly detectable gives -100 (leaks),
    one equal to the oracle gives 0, and a positive value means over-unlearning. NaN when
    A_oracle = 0.
    """
    a_model, a_oracle = 1.0 - auc_model, 1.0 - auc_oracle
    if a_oracle == 0:
        return float("nan")
    return (a_model - a_oracle) / a_oracle * 100.0
