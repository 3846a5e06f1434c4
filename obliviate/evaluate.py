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
    DEFAULT_PROMPT,
    Encoded,
    PromptFormat,
    batches,
    collate,
    collate_prompts,
    context_length,
    encode,
    encode_items,
    encode_prompt,
    fit_prompt,
    leading_bos,
    pad_id_of,
)
from obliviate.data.task import ForgetTask, QAItem
from obliviate.methods._losses import MODEL_KEYS, nll_mean
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
    prompt: PromptFormat = Field(DEFAULT_PROMPT, description="prompt format (set it once, under `prompt:`)")


@dataclass
class EvalResult:
    metrics: dict[str, float]
    per_item: dict[str, dict[str, list]] = field(default_factory=dict)
    generations: dict[str, list[str]] = field(default_factory=dict)
    # metric -> why it is NaN (results.json `not_measured`, "n/a" in the tables)
    not_measured: dict[str, str] = field(default_factory=dict)


# Metrics defined relative to the retain-only oracle: without one there is nothing to compare
# with, so they are NaN with this reason (comparing a model with itself would report the ideal
# values, forget quality 1 and privleak 0, that nothing measured).
ORACLE_METRICS = ("forget_quality", "privleak")
NO_ORACLE = "no oracle (retain-only model) to compare with"


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


def fit_to_context(model, tokenizer, prompts: list[list[int]],
                   max_new: list[int]) -> tuple[list[list[int]], list[int], int]:
    """(prompts, max_new, n_cut): the prompts cut from the left (BOS kept) so that prompt + the
    generation budget fit the model's context (in-context examples or a long question would
    otherwise overflow the position embeddings: GPT-2 fails with "index out of range"), and how
    many were cut. When something must be cut: one budget for all, the largest `max_new` (a batch
    generates as many tokens as its longest budget), capped at half the context so the prompt
    keeps the other half. When everything fits, nothing changes."""
    context = context_length(model)
    if context is None or not prompts or max(map(len, prompts)) + max(max_new) <= context:
        return prompts, max_new, 0
    budget = min(max(max_new), context // 2)
    fitted = [fit_prompt(p, context - budget, leading_bos(p, tokenizer)) for p in prompts]
    n_cut = sum(len(f) < len(p) for f, p in zip(fitted, prompts, strict=True))
    return fitted, [min(n, budget) for n in max_new], n_cut


@torch.no_grad()
def generate_ids(model, tokenizer, prompts: list[list[int]], max_new: list[int], batch_size: int = 64,
                 order_key=None) -> list[list[int]]:
    """Greedy continuations of token-id prompts as token ids: left-padded batches (in the order
    of `order_key(i)`, default the prompt length), each cut at its own `max_new` and at EOS
    (excluded); prompts too long for the context are cut from the left (`fit_to_context`; callers
    that report the count call it first). The one generation loop every metric and attack uses."""
    prompts, max_new, _ = fit_to_context(model, tokenizer, prompts, max_new)
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


@torch.no_grad()
def mean_answer_nll(model, tokenizer, items: list[QAItem], batch_size: int = 32, max_length: int = 512,
                    fmt: PromptFormat = DEFAULT_PROMPT) -> float:
    """Mean answer-token NLL over `items` (each batch's token mean, weighted by its item count)."""
    device = _model_device(model)
    encoded, pad = encode_items(tokenizer, items, max_length, fmt), pad_id_of(tokenizer)
    total, n = 0.0, 0
    for idx in batches(len(encoded), batch_size):
        batch = collate([encoded[i] for i in idx], pad)
        total += float(nll_mean(model, {k: batch[k].to(device) for k in (*MODEL_KEYS, "labels")})) * len(idx)
        n += len(idx)
    return total / max(n, 1)


def generate(model, tokenizer, prompts: list[list[int]], max_new: list[int], batch_size: int = 64) -> list[str]:
    """Greedy continuations of token-id prompts, decoded (special tokens dropped, stripped)."""
    return [tokenizer.decode(ids, skip_special_tokens=True).strip()
            for ids in generate_ids(model, tokenizer, prompts, max_new, batch_size)]


def answer_budget(tokenizer, items: list[QAItem], cfg: EvalConfig) -> list[int]:
    """New tokens to generate per item: `answer_len_factor` x the reference answer's tokens + 8,
    at most `max_new_tokens`."""
    return [min(cfg.max_new_tokens, int(cfg.answer_len_factor * len(tokenizer(" " + it.answer)["input_ids"])) + 8)
            for it in items]


def generate_answers(model, tokenizer, items: list[QAItem], cfg: EvalConfig | None = None,
                     questions: list[str] | None = None, counts: dict[str, int] | None = None) -> list[str]:
    """Greedy answers to the items' questions in `cfg.prompt`; `counts["prompts_truncated"]` (when
    given) is raised by the number of prompts cut to fit the context."""
    cfg = cfg or EvalConfig()
    questions = questions or [it.question for it in items]
    prompts, max_new, cut = fit_to_context(model, tokenizer, [encode_prompt(tokenizer, q, cfg.prompt)
                                                              for q in questions], answer_budget(tokenizer, items, cfg))
    if counts is not None:
        counts["prompts_truncated"] = counts.get("prompts_truncated", 0) + cut
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
    max_length = min(cfg.max_length, context_length(model) or cfg.max_length)  # longer would not fit

    def enc(it: QAItem, answer: str) -> Encoded:
        return encode(tokenizer, it.question, answer, max_length, cfg.prompt)

    for it in items:
        seqs.append(enc(it, it.answer))
    para_at: list[int | None] = []
    pert_at: list[list[int]] = []
    for it in items:
        if perturbed and it.perturbed_answers:
            if it.paraphrased_answer:
                para_at.append(len(seqs))
                seqs.append(enc(it, it.paraphrased_answer))
            else:
                para_at.append(None)
            pert_at.append(list(range(len(seqs), len(seqs) + len(it.perturbed_answers))))
            seqs += [enc(it, a) for a in it.perturbed_answers]
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
        counts: dict[str, int] = {}
        probe["generation"] = generate_answers(model, tokenizer, items, cfg, counts=counts)
        probe["prompts_truncated"] = counts["prompts_truncated"]
    return probe


def set_metrics(items: list[QAItem], probe: dict, cfg: EvalConfig) -> dict[str, np.ndarray]:
    """Per-item metric values of one probe set."""
    # zlib (Carlini et al. 2021): the NLL and the compressed size of the same text; nll_avg is
    # over the answer tokens (the whole text for a raw-text item), so the answer is compressed
    texts = [it.answer for it in items]
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
    for forget quality and the MIA AUC for privleak; without it those two are NaN and
    `not_measured` says why (`evaluate_oracle` compares the oracle with itself: 1 and 0 by definition).
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
            if probe.get("prompts_truncated"):  # recorded only when it happened: cut from the left
                flat[f"{name}_prompts_truncated"] = float(probe["prompts_truncated"])
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
    result = EvalResult(flat, per_item, generations)
    return evaluate_with_reference(result, oracle) if oracle is not None else without_reference(result)


def evaluate_oracle(model, tokenizer, task: ForgetTask, cfg: EvalConfig | None = None) -> EvalResult:
    res = evaluate(model, tokenizer, task, cfg, desc="evaluating oracle")
    return evaluate_with_reference(res, res)


def without_reference(res: EvalResult, reason: str = NO_ORACLE) -> EvalResult:
    """`res` with the oracle-relative metrics NaN and `reason` recorded for each."""
    for key in ORACLE_METRICS:
        res.metrics[key] = float("nan")
        res.not_measured[key] = reason
    return res


def evaluate_with_reference(res: EvalResult, oracle: EvalResult) -> EvalResult:
    """Fill forget quality and privleak of `res` from the oracle's cached result."""
    for key in ORACLE_METRICS:
        res.not_measured.pop(key, None)
    r_model = np.array(res.per_item["forget"].get("truth_ratio", []))
    if len(r_model):
        res.metrics["forget_quality"] = M.forget_quality(r_model, np.array(oracle.per_item["forget"]["truth_ratio"]))
    else:
        res.metrics["forget_quality"] = float("nan")
        res.not_measured["forget_quality"] = "no truth ratios (the forget set has no perturbed answers)"
    res.metrics["privleak"] = M.privleak(res.metrics.get("mia_min_k_auc", float("nan")),
                                         oracle.metrics.get("mia_min_k_auc", float("nan")))
    if "mia_min_k_auc" not in res.metrics:
        res.not_measured["privleak"] = "no holdout set (membership AUC needs never-seen items)"
    return res


def text_nll(model, tokenizer, texts: list[str], max_length: int | None, batch_size: int = 16) -> np.ndarray:
    """Mean token NLL of each text after BOS (right-truncated to `max_length` tokens in all)."""
    bos = list(tokenizer("", add_special_tokens=True)["input_ids"])
    encoded = []
    for t in texts:
        ids = list(tokenizer(t, add_special_tokens=False)["input_ids"])
        prompt, rest = (bos, ids) if bos else (ids[:1], ids[1:])
        if max_length is not None:
            rest = rest[: max(1, max_length - len(prompt))]
        encoded.append(Encoded(prompt_ids=prompt, answer_ids=rest))
    model.eval()
    scored = score_sequences(model, encoded, pad_id_of(tokenizer), batch_size)
    return np.array([-float(r["logp"].mean()) if len(r["logp"]) else float("nan") for r in scored])


def corpus_nll(model, tokenizer, items: list[QAItem], cfg: EvalConfig, max_items: int = 200) -> np.ndarray:
    """Per-item mean token NLL of texts (or QA answers), teacher-forced, on the first `max_items` items
    (a training corpus's measure in WMDP and RWKU)."""
    items = items[:max_items]
    if not items:
        return np.zeros(0)
    probe = probe_set(model, tokenizer, items, cfg, generate_text=False, perturbed=False)
    return np.asarray(probe["nll_avg"], dtype=np.float64)
