"""Answer accuracy of generations: normalised exact match / contains-answer (SQuAD-style
normalisation, Rajpurkar et al. 2016), optionally against a keyword of the answer."""

import re
import string

import numpy as np

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalise_answer(text: str) -> str:
    """Lowercase, strip punctuation, drop the articles a/an/the, collapse whitespace."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def _is_correct(prediction: str, answer: str, keyword: str | None) -> bool:
    pred = normalise_answer(prediction)
    key = normalise_answer(keyword) if keyword is not None else ""
    if key:
        # Whole words only: "paris" is in "she lives in paris", not in "parisian".
        return f" {key} " in f" {pred} "
    ans = normalise_answer(answer)
    if not ans:
        return pred == ans
    return ans in pred


def answer_correct(predictions: list[str], answers: list[str], keywords: list[str | None]) -> np.ndarray:
    """Per-item 0/1 correctness.

    With a keyword: the normalised keyword occurs as whole words in the normalised prediction.
    Without one: the normalised answer equals, or is contained in, the normalised prediction.
    """
    if not len(predictions) == len(answers) == len(keywords):
        raise ValueError(f"lengths differ: {len(predictions)} predictions, {len(answers)} answers, "
                         f"{len(keywords)} keywords")
    return np.array([_is_correct(p, a, k) for p, a, k in zip(predictions, answers, keywords, strict=True)],
                    dtype=np.float64)
