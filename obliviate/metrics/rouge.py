"""ROUGE-L between generations and reference answers (Lin 2004), via `rouge-score`.

TOFU (Maini et al. 2024) reports ROUGE-L recall; MUSE (Shi et al. 2024) reports ROUGE-L F1
for VerbMem and KnowMem. Both use Porter stemming.
"""

from functools import cache

import numpy as np


@cache
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def _rouge_l(predictions: list[str], references: list[str], field: str) -> np.ndarray:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scorer = _scorer()
    # rouge-score's argument order is score(target, prediction).
    return np.array([getattr(scorer.score(ref, pred)["rougeL"], field)
                     for pred, ref in zip(predictions, references, strict=True)], dtype=np.float64)


def rouge_l_recall(predictions: list[str], references: list[str]) -> np.ndarray:
    """Per-item ROUGE-L recall, LCS(pred, ref) / |ref| (TOFU's `rouge`)."""
    return _rouge_l(predictions, references, "recall")


def rouge_l_f1(predictions: list[str], references: list[str]) -> np.ndarray:
    """Per-item ROUGE-L F1 (MUSE's VerbMem / KnowMem)."""
    return _rouge_l(predictions, references, "fmeasure")
