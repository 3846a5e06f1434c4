"""Metrics: pure functions of per-item values (NLLs, token log-probs, generations) computed
once by `obliviate.evaluate`. Each returns per-item values (float64 arrays) or an aggregate.

`METRICS` describes them as data: what each needs and which direction is better
(`None` where it depends on the set: on the forget set lower is better, on retain higher).
"""

from dataclasses import dataclass

from obliviate.metrics.accuracy import answer_correct, normalise_answer
from obliviate.metrics.memorization import exact_memorization, extraction_strength
from obliviate.metrics.mia import (
    SCORES,
    loss_score,
    mia_auc,
    min_k_pp_score,
    min_k_score,
    privleak,
    zlib_score,
)
from obliviate.metrics.probability import length_normalised_prob, normalised_choice_prob
from obliviate.metrics.rouge import rouge_l_f1, rouge_l_recall
from obliviate.metrics.truth_ratio import forget_quality, forget_truth_ratio, retain_truth_ratio, truth_ratio
from obliviate.metrics.utility import model_utility


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool | None
    needs: str
    description: str


METRICS: dict[str, MetricInfo] = {m.name: m for m in [
    MetricInfo("prob", None, "answer nll", "length-normalised answer probability exp(-nll_avg) (TOFU)"),
    MetricInfo("rouge", None, "generations", "ROUGE-L recall of the greedy answer (TOFU); F1 for MUSE"),
    MetricInfo("acc", None, "generations", "normalised exact-match / contains-answer accuracy"),
    MetricInfo("truth_ratio", None, "paraphrased + perturbed answer nll",
               "geomean p(perturbed) / p(paraphrased); forget: mean min(R, 1/R), retain: mean max(0, 1-R) (TOFU)"),
    MetricInfo("forget_quality", True, "truth ratios of the model and the oracle",
               "KS-test p-value between model and retain-only oracle truth ratios (TOFU)"),
    MetricInfo("model_utility", True, "retain and utility-set metrics",
               "harmonic mean of retain/utility prob, ROUGE and truth ratio (TOFU)"),
    MetricInfo("exact_mem", None, "token argmax flags", "teacher-forced argmax accuracy on answer tokens"),
    MetricInfo("extraction_strength", None, "token argmax flags",
               "1 - k*/|y|, k* the start of the longest exactly-predicted suffix"),
    MetricInfo("mia_loss", None, "answer nll", "MIA AUC, forget vs holdout, with the LOSS score"),
    MetricInfo("mia_zlib", None, "answer nll + answer text", "MIA AUC with the zlib score (Carlini et al. 2021)"),
    MetricInfo("mia_min_k", None, "token log-probs", "MIA AUC with Min-K% [k 0.4] (Shi et al. 2023)"),
    MetricInfo("mia_min_k_pp", None, "token log-probs + vocab mean/std",
               "MIA AUC with Min-K%++ [k 0.4] (Zhang et al. 2024)"),
    MetricInfo("privleak", None, "Min-K% AUC of the model and the oracle",
               "MUSE PrivLeak: relative AUC gap to the oracle in %; 0 is ideal, -100 leaks everything"),
    # in obliviate/metrics/multiple_choice.py and extraction.py (imported where used: they run models)
    MetricInfo("wmdp_acc", None, "letter logits (A-D) at the prompt end",
               "WMDP zero-shot multiple-choice accuracy, lm-eval prompt, argmax over A-D (Li et al. 2024)"),
    MetricInfo("wmdp_acc_calibrated", None, "letter logits (A-D) at the prompt end",
               "WMDP accuracy after subtracting each letter's mean logit over the set (Zhao et al. 2021)"),
    # obliviate/metrics/muse.py (MUSE, Shi et al. 2024)
    MetricInfo("verbmem", None, "128-token greedy continuations",
               "MUSE VerbMem: ROUGE-L F1 of the continuation of a forget-article prompt"),
    MetricInfo("knowmem", None, "32-token few-shot answers",
               "MUSE KnowMem: ROUGE-L F1 of few-shot QA answers (forget and retain2 questions)"),
    # obliviate/metrics/rwku.py (RWKU, Jin et al. 2024)
    MetricInfo("rwku_rouge", None, "generations",
               "RWKU's score: ROUGE-L recall of the answer in the greedy generation, per probe level"),
    MetricInfo("rwku_acc", None, "generations",
               "RWKU probe answered: the normalised answer occurs as whole words in the generation"),
    MetricInfo("rwku_mia_auc", None, "text nll / token log-probs", "MIA AUC, RWKU forget_mia vs retain_mia texts"),
    # obliviate/metrics/semeval.py (SemEval-2025 Task 4, Ramakrishna et al. 2025)
    MetricInfo("semeval_regurgitation", None, "generations",
               "ROUGE-L recall of the greedy completion on sentence-completion (sc) items"),
    MetricInfo("semeval_knowledge", None, "generations", "exact match (strip+lowercase) on question (qa) items"),
    MetricInfo("semeval_task_aggregate", True, "per-item sc/qa scores per task",
               "harmonic mean of 12 values (3 tasks x forget/retain x sc/qa), forget values as 1 - x"),
    MetricInfo("semeval_mia", True, "answer nll of MIA members and non-members", "1 - 2|AUC - 0.5|, loss attack"),
    MetricInfo("semeval_final", True, "task aggregate, MIA score, optional MMLU",
               "mean of the available components; the official score when MMLU is given"),
    MetricInfo("ma", None, "token argmax flags over the whole text",
               "TDEC memorisation accuracy: teacher-forced argmax accuracy on x_2..x_T (Jang et al. 2022)"),
    MetricInfo("el10", None, "greedy continuations of every prefix",
               "TDEC extraction likelihood EL_10: mean 10-gram overlap of greedy suffixes (Jang et al. 2022)"),
]}

__all__ = [
    "METRICS", "SCORES", "MetricInfo", "answer_correct", "exact_memorization", "extraction_strength",
    "forget_quality", "forget_truth_ratio", "length_normalised_prob", "loss_score", "mia_auc",
    "min_k_pp_score", "min_k_score", "model_utility", "normalise_answer", "normalised_choice_prob",
    "privleak", "retain_truth_ratio", "rouge_l_f1", "rouge_l_recall", "truth_ratio", "zlib_score",
]
