"""One batched pass per probe set -> every metric (SPEC section 3).

For each evaluation set, every teacher-forced sequence (answer, paraphrased answer, the
perturbed answers) is scored in one sweep of length-sorted batches; a single forward pass
per batch yields the token log-probs, the argmax-correct flags and the vocabulary mean and
spread of log-probs (for Min-K%++), from which prob, truth ratio, exact memorisation,
extraction strength and all MIA scores are derived. Greedy generation (ROUGE, accuracy) is
batched, left-padded and stops at EOS or shortly after the reference answer's length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from obliviate import metrics as M
from obliviate.data.collate import (
    Encoded,
    batches,
    collate,
    collate_prompts,
    encode,
    encode_prompt,
    pad_id_of,
)
from obliviate.data.task import ForgetTask, QAItem
from obliviate.methods._losses import MODEL_KEYS
from obliviate.progress import progress


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_size: int = 64
    max_new_tokens: int = Field(200, description="generation limit (TOFU's default)")
    answer_len_factor: float = Field(
        2.0, description="also stop generating at factor x reference answer tokens + 8: nothing past "
                         "that can raise ROUGE-L recall much, and it saves most of the generation time")
    min_k: float = 0.4
    max_length: int = 512
    knowledge: Literal["acc", "rouge"] = Field(
        "acc", description="the audit's per-item knowledge measure K: answer accuracy (short facts) or "
                           "ROUGE-L recall of the greedy answer (long answers, e.g. TOFU)")


@dataclass
class EvalResult:
    metrics: dict[str, float]
    per_item: dict[str, dict[str, list]] = field(default_factory=dict)
    generations: dict[str, list[str]] = field(default_factory=dict)


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def score_sequences(model, encoded: list[Encoded], pad_id: int, batch_size: int = 64,
                    vocab_stats: bool = False) -> list[dict[str, np.ndarray]]:
    """Per sequence: answer-token log-probs, argmax-correct flags and, with `vocab_stats`, the
    mean and std of log p over the vocabulary at each answer position (Min-K%++)."""
    device = _model_device(model)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].prompt_ids) + len(encoded[i].answer_ids))
    out: list[dict[str, np.ndarray]] = [{} for _ in encoded]
    for idx in batches(len(order), batch_size):
        rows = [order[i] for i in idx]
        batch = collate([encoded[r] for r in rows], pad_id)
        logits = model(**{k: batch[k].to(device) for k in MODEL_KEYS}).logits[:, :-1].float()
        target = batch["labels"][:, 1:].to(device)
        mask = target != -100
        logp_all = torch.log_softmax(logits, dim=-1)
        tok_logp = logp_all.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        correct = logits.argmax(-1) == target
        if vocab_stats:
            p = logp_all.exp()
            mu = (p * logp_all).sum(-1)
            sigma = ((p * logp_all.square()).sum(-1) - mu.square()).clamp_min(0).sqrt()
        for j, r in enumerate(rows):
            m = mask[j]
            rec = {"logp": tok_logp[j][m].cpu().numpy().astype(np.float64),
                   "correct": correct[j][m].cpu().numpy()}
            if vocab_stats:
                rec["mu"] = mu[j][m].cpu().numpy().astype(np.float64)
                rec["sigma"] = sigma[j][m].cpu().numpy().astype(np.float64)
            out[r] = rec
    return out


@torch.no_grad()
def generate_ids(model, tokenizer, prompts: list[list[int]], max_new: list[int], batch_size: int = 64,
                 order_key=None) -> list[list[int]]:
    """Greedy continuations of token-id prompts as token ids: left-padded batches (in the order
    of `order_key(i)`, default the prompt length), each cut at its own `max_new` and at EOS
    (excluded). The one generation loop every metric and attack uses."""
    device = _model_device(model)
    pad = pad_id_of(tokenizer)
    eos = tokenizer.eos_token_id
    order = sorted(range(len(prompts)), key=order_key or (lambda i: len(prompts[i])))
    out: list[list[int]] = [[] for _ in prompts]
    for idx in batches(len(order), batch_size):
        rows = [order[i] for i in idx]
        batch = collate_prompts([prompts[r] for r in rows], pad)
        width = batch["input_ids"].shape[1]
        gen = model.generate(input_ids=batch["input_ids"].to(device),
                             attention_mask=batch["attention_mask"].to(device),
                             max_new_tokens=max(max_new[r] for r in rows), do_sample=False,
                             pad_token_id=pad, eos_token_id=eos)
        for j, r in enumerate(rows):
            ids = gen[j, width: width + max_new[r]].tolist()
            if eos is not None and eos in ids:
                ids = ids[: ids.index(eos)]
            out[r] = ids
    return out


def generate(model, tokenizer, prompts: list[list[int]], max_new: list[int], batch_size: int = 64) -> list[str]:
    """Greedy continuations of token-id prompts, decoded (special tokens dropped, stripped)."""
    return [tokenizer.decode(ids, skip_special_tokens=True).strip()
            for ids in generate_ids(model, tokenizer, prompts, max_new, batch_size)]


def generate_answers(model, tokenizer, items: list[QAItem], cfg: EvalConfig | None = None,
                     questions: list[str] | None = None) -> list[str]:
    cfg = cfg or EvalConfig()
    questions = questions or [it.question for it in items]
    prompts = [encode_prompt(tokenizer, q) for q in questions]
    max_new = [min(cfg.max_new_tokens, int(cfg.answer_len_factor * len(tokenizer(" " + it.answer)["input_ids"])) + 8)
               for it in items]
    return generate(model, tokenizer, prompts, max_new, cfg.batch_size)


def greedy_accuracy(model, tokenizer, items: list[QAItem], cfg: EvalConfig | None = None) -> float:
    gens = generate_answers(model, tokenizer, items, cfg)
    return float(M.answer_correct(gens, [it.answer for it in items], [it.keyword for it in items]).mean())


def greedy_rouge(model, tokenizer, items: list[QAItem], cfg: EvalConfig | None = None) -> float:
    """Mean ROUGE-L recall of the greedy answers against the reference answers (TOFU's `rouge`)."""
    gens = generate_answers(model, tokenizer, items, cfg)
    return float(M.rouge_l_recall(gens, [it.answer for it in items]).mean())


def probe_set(model, tokenizer, items: list[QAItem], cfg: EvalConfig, generate_text: bool = True,
              perturbed: bool = True) -> dict:
    """Everything one model says about one probe set: per-item raw values."""
    pad = pad_id_of(tokenizer)
    seqs: list[Encoded] = []
    n = len(items)
    for it in items:
        seqs.append(encode(tokenizer, it.question, it.answer, cfg.max_length))
    para_at: list[int | None] = []
    pert_at: list[list[int]] = []
    for it in items:
        if perturbed and it.perturbed_answers:
            if it.paraphrased_answer:
                para_at.append(len(seqs))
                seqs.append(encode(tokenizer, it.question, it.paraphrased_answer, cfg.max_length))
            else:
                para_at.append(None)
            pert_at.append(list(range(len(seqs), len(seqs) + len(it.perturbed_answers))))
            seqs += [encode(tokenizer, it.question, a, cfg.max_length) for a in it.perturbed_answers]
        else:
            para_at.append(None)
            pert_at.append([])
    scored = score_sequences(model, seqs, pad, cfg.batch_size, vocab_stats=True)
    nll_avg = lambda r: -float(r["logp"].mean()) if len(r["logp"]) else 0.0  # noqa: E731
    ans = scored[:n]
    probe = {
        "nll_avg": np.array([nll_avg(r) for r in ans]),
        "token_logp": [r["logp"] for r in ans],
        "correct": [r["correct"] for r in ans],
        "mu": [r["mu"] for r in ans],
        "sigma": [r["sigma"] for r in ans],
    }
    if perturbed and all(pert_at):
        probe["para_nll_avg"] = np.array([nll_avg(scored[p]) if p is not None else probe["nll_avg"][i]
                                          for i, p in enumerate(para_at)])
        k = min(len(p) for p in pert_at)
        probe["pert_nll_avg"] = np.array([[nll_avg(scored[j]) for j in p[:k]] for p in pert_at])
        probe["has_paraphrase"] = any(p is not None for p in para_at)
    if generate_text:
        probe["generation"] = generate_answers(model, tokenizer, items, cfg)
    return probe


def set_metrics(items: list[QAItem], probe: dict, cfg: EvalConfig) -> dict[str, np.ndarray]:
    """Per-item metric values of one probe set."""
    texts = [(it.question or "") + " " + it.answer for it in items]
    vals = {
        "prob": M.length_normalised_prob(probe["nll_avg"]),
        "exact_mem": M.exact_memorization(probe["correct"]),
        "extraction_strength": M.extraction_strength(probe["correct"]),
        "mia_loss": M.loss_score(probe["nll_avg"]),
        "mia_zlib": M.zlib_score(probe["nll_avg"], texts),
        "mia_min_k": M.min_k_score(probe["token_logp"], cfg.min_k),
        "mia_min_k_pp": M.min_k_pp_score(probe["token_logp"], probe["mu"], probe["sigma"], cfg.min_k),
    }
    if "pert_nll_avg" in probe:
        vals["truth_ratio"] = M.truth_ratio(probe["para_nll_avg"], probe["pert_nll_avg"])
        if not probe["has_paraphrase"]:  # normalised prob of the right answer among the perturbed
            vals["norm_prob"] = M.normalised_choice_prob(probe["nll_avg"], probe["pert_nll_avg"])
    if "generation" in probe:
        vals["rouge"] = M.rouge_l_recall(probe["generation"], [it.answer for it in items])
        vals["acc"] = M.answer_correct(probe["generation"], [it.answer for it in items],
                                       [it.keyword for it in items])
    return vals


MIA_SCORES = ("loss", "zlib", "min_k", "min_k_pp")


def set_aggregates(name: str, vals: dict) -> dict[str, tuple]:
    """The item-level aggregates of one probe set: {metric: (per-item values, statistic)}, with
    statistic None for the mean (forget_acc, retain_rouge, ...) or the truth-ratio aggregator."""
    out: dict[str, tuple] = {f"{name}_{key}": (vals[key], None)
                             for key in ("prob", "rouge", "acc", "exact_mem", "extraction_strength") if key in vals}
    if "norm_prob" in vals and name.startswith("utility_"):  # TOFU's utility-set prob
        out[f"{name}_prob"] = (vals["norm_prob"], None)
    if "truth_ratio" in vals:
        out[f"{name}_truth_ratio"] = (vals["truth_ratio"],
                                      M.forget_truth_ratio if name == "forget" else M.retain_truth_ratio)
    return out


def metric_intervals(res: EvalResult) -> dict[str, list[float]]:
    """95% bootstrap intervals over the probed items (`obliviate.stats`, 1000 seeded resamples)
    of every metric that aggregates per-item values: forget/retain/holdout/utility acc, prob,
    ROUGE, truth ratio, exact memorisation, extraction strength. Forget quality, model utility,
    privleak and the MIA AUCs compare distributions (or models) and get none here."""
    from obliviate.stats import bootstrap_ci

    return {metric: bootstrap_ci(np.asarray(values, dtype=np.float64), statistic)
            for name, vals in res.per_item.items()
            for metric, (values, statistic) in set_aggregates(name, vals).items() if metric in res.metrics}


def evaluate(model, tokenizer, task: ForgetTask, cfg: EvalConfig | None = None,
             oracle: EvalResult | None = None, desc: str = "evaluating") -> EvalResult:
    """Every metric of SPEC section 3 for one model on one task.

    `oracle` (the retain-only model's own result) supplies the per-item forget truth ratios
    for forget quality and the MIA AUC for privleak; without it those two are NaN, and for
    the oracle itself they are computed against itself (forget quality 1, privleak 0).
    """
    cfg = cfg or EvalConfig()
    model.eval()
    per_item: dict[str, dict[str, list]] = {}
    generations: dict[str, list[str]] = {}
    flat: dict[str, float] = {}
    sets = task.eval_sets()
    with progress() as bar:
        t = bar.add_task(desc, total=len(sets))
        for name, items in sets.items():
            is_holdout = name == "holdout"
            questions = all(not it.is_text for it in items)
            probe = probe_set(model, tokenizer, items, cfg, generate_text=questions and not is_holdout,
                              perturbed=not is_holdout)
            vals = set_metrics(items, probe, cfg)
            per_item[name] = {k: np.asarray(v, dtype=np.float64).tolist() for k, v in vals.items()}
            if "generation" in probe:
                generations[name] = probe["generation"]
            for metric, (values, statistic) in set_aggregates(name, vals).items():
                flat[metric] = float(np.mean(values)) if statistic is None else statistic(values)
            bar.advance(t)
    if "holdout" in per_item:
        for s in MIA_SCORES:
            flat[f"mia_{s}_auc"] = M.mia_auc(np.array(per_item["forget"][f"mia_{s}"]),
                                             np.array(per_item["holdout"][f"mia_{s}"]))
    components = {k: flat[k] for k in ("retain_prob", "retain_rouge", "retain_truth_ratio") if k in flat}
    for name in task.utility:
        for key in ("prob", "rouge", "truth_ratio"):
            if f"utility_{name}_{key}" in flat:
                components[f"utility_{name}_{key}"] = flat[f"utility_{name}_{key}"]
    flat["model_utility"] = M.model_utility(components) if components else float("nan")
    flat["forget_quality"] = float("nan")
    flat["privleak"] = float("nan")
    result = EvalResult(flat, per_item, generations)
    return evaluate_with_reference(result, oracle) if oracle is not None else result


def evaluate_oracle(model, tokenizer, task: ForgetTask, cfg: EvalConfig | None = None) -> EvalResult:
    res = evaluate(model, tokenizer, task, cfg, desc="evaluating oracle")
    return evaluate_with_reference(res, res)


def evaluate_with_reference(res: EvalResult, oracle: EvalResult) -> EvalResult:
    """Fill forget quality and privleak of `res` from the oracle's cached result."""
    r_model = np.array(res.per_item["forget"].get("truth_ratio", []))
    if len(r_model):
        res.metrics["forget_quality"] = M.forget_quality(r_model, np.array(oracle.per_item["forget"]["truth_ratio"]))
    res.metrics["privleak"] = M.privleak(res.metrics.get("mia_min_k_auc", float("nan")),
                                         oracle.metrics.get("mia_min_k_auc", float("nan")))
    return res
