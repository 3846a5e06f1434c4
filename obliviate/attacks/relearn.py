"""Relearning attacks: fine-tune the unlearned model a little and see what comes back (SPEC section 4).

`rtt` is the Retraining on T attack of Deeb & Roger 2024 ("Do Unlearning Methods Remove
Information from Language Model Weights?"): split the forget facts into T and a held-out V
about *different* subjects, fine-tune on T for a few epochs over a small learning-rate sweep
and report accuracy on V. Facts about different people in the embedded world are independent,
so V cannot be learned from T: whatever V accuracy returns was still in the weights. The
paper runs the attack on the unlearned model and, as controls, on the target and on a model
that never saw the facts; the audit does the same by calling this attack on each.

`relearn_benign` fine-tunes on retain data only: does training on unrelated data bring the
forget set back (the "benign relearning" concern)?
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from obliviate.attacks import AttackContext, Attacked, AttackUnavailable, register, resolve_params
from obliviate.data.collate import DEFAULT_PROMPT, PromptFormat, batches, collate, encode_items, pad_id_of
from obliviate.data.task import QAItem
from obliviate.evaluate import EvalConfig, greedy_accuracy, greedy_rouge, mean_answer_nll
from obliviate.methods._losses import MODEL_KEYS, nll_mean


@dataclass
class RTTParams:
    # The default sweep suits the tiny models of the embedded world; Deeb & Roger swept about
    # 1e-6 .. 1e-5 for 7B models: pass {"lrs": [1e-6, 3e-6, 1e-5]} there.
    lrs: Sequence[float] = (1e-4, 3e-4, 1e-3)
    epochs: int = 3
    batch_size: int = 8
    train_fraction: float = 0.5
    weight_decay: float = 0.0
    # Stop the sweep (its lrs ascending) at an lr worse than the best so far on both the held-out K
    # and the held-out loss: a larger step goes further the same way, and its fine-tune and probes
    # are saved. False: every lr runs.
    stop_early: bool = True


@dataclass
class BenignParams:
    n_items: int = 64  # retain items sampled with the seed
    epochs: int = 3
    lr: float = 3e-4
    batch_size: int = 8
    weight_decay: float = 0.0


def split_forget_by_subject(items: list[QAItem], seed: int,
                            train_fraction: float = 0.5) -> tuple[list[QAItem], list[QAItem]]:
    """Split forget facts into T (train) and V (held out) with no subject in both.

    Deeb & Roger 2024 split by fact; in the embedded world one person's facts are correlated
    only through the person, so splitting by person makes V impossible to infer from T.
    An item without a subject is its own subject. Item order is kept within T and V.
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    keys = [it.subject if it.subject is not None else ("item", i) for i, it in enumerate(items)]
    subjects = list(dict.fromkeys(keys))
    if len(subjects) < 2:
        raise AttackUnavailable(f"cannot split {len(items)} forget item(s) about {len(subjects)} subject(s) into "
                         "train and held-out facts about different subjects: at least 2 subjects are needed")
    random.Random(seed).shuffle(subjects)
    n_train = min(len(subjects) - 1, max(1, round(train_fraction * len(subjects))))
    train_subjects = set(subjects[:n_train])
    train = [it for it, k in zip(items, keys, strict=True) if k in train_subjects]
    held_out = [it for it, k in zip(items, keys, strict=True) if k not in train_subjects]
    return train, held_out


def _device_batch(batch: dict, device: torch.device) -> dict:
    return {k: batch[k].to(device) for k in (*MODEL_KEYS, "labels")}


def finetune(model, tokenizer, items: list[QAItem], epochs: int, lr: float, seed: int,
             batch_size: int = 8, weight_decay: float = 0.0, fmt: PromptFormat = DEFAULT_PROMPT) -> float:
    """Plain fine-tuning for a fixed number of epochs (answer tokens only, AdamW, clip 1.0).

    Unlike `models.tiny.train_lm` it never stops on accuracy: an attack spends a fixed budget.
    The same seed gives every lr of a sweep the same data order; items are encoded in the run's
    prompt format `fmt`. Returns the last batch loss.
    """
    rng = random.Random(seed)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    encoded = encode_items(tokenizer, items, fmt=fmt)
    pad = pad_id_of(tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    loss = torch.tensor(float("nan"))
    model.train()
    for _ in range(epochs):
        order = list(range(len(encoded)))
        rng.shuffle(order)
        for idx in batches(len(order), batch_size):
            loss = nll_mean(model, _device_batch(collate([encoded[order[i]] for i in idx], pad), device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
    model.eval()
    return float(loss.detach())


def held_out_knowledge(model, tokenizer, items: list[QAItem], knowledge: str, fmt: PromptFormat) -> float:
    """The audit's K on `items`: mean ROUGE-L recall of the greedy answers ("rouge", e.g. TOFU,
    where contains-answer accuracy of long answers is ~0 at every lr) or greedy accuracy ("acc")."""
    cfg = EvalConfig(prompt=fmt)
    if knowledge == "rouge":
        return greedy_rouge(model, tokenizer, items, cfg)
    if knowledge == "acc":
        return greedy_accuracy(model, tokenizer, items, cfg)
    raise ValueError(f"unknown knowledge measure {knowledge!r}; valid: acc, rouge")


def relearn_sweep(model, ctx: AttackContext, train: list[QAItem], held_out: list[QAItem], p, prepare=None):
    """For each lr of `p.lrs`: fine-tune a copy of `model` on `train` (after `prepare(copy)`,
    which may freeze weights and returns a function that undoes it) and probe `held_out`; keep
    the copy with the best K, the audit's own knowledge measure `ctx.knowledge` (ties: lower
    held-out loss). With `p.stop_early` and ascending lrs, an lr worse than the best on both K and
    held-out loss ends the sweep. Returns (best copy, its lr, K per lr, held-out NLL per lr,
    the lrs skipped)."""
    best, best_key, best_lr = None, None, None
    per_lr: dict[float, float] = {}
    per_lr_nll: dict[float, float] = {}
    lrs = [float(lr) for lr in p.lrs]
    stop_early = getattr(p, "stop_early", False) and lrs == sorted(lrs)
    skipped: list[float] = []
    for n, lr in enumerate(lrs):
        attacked = copy.deepcopy(model)
        undo = prepare(attacked) if prepare is not None else None
        finetune(attacked, ctx.tokenizer, train, p.epochs, lr, ctx.seed, p.batch_size, p.weight_decay, ctx.prompt)
        if undo is not None:
            undo()
        # raw texts have no answer to check greedily (and generating a window's length costs
        # minutes on a CPU): they are ranked by held-out NLL alone
        per_lr[lr] = (float("nan") if all(it.is_text for it in held_out)
                      else held_out_knowledge(attacked, ctx.tokenizer, held_out, ctx.knowledge, ctx.prompt))
        per_lr_nll[lr] = mean_answer_nll(attacked, ctx.tokenizer, held_out, fmt=ctx.prompt)
        key = (0.0 if per_lr[lr] != per_lr[lr] else per_lr[lr], -per_lr_nll[lr])
        if best_key is None or key > best_key:
            best, best_key, best_lr = attacked, key, lr
            continue
        del attacked
        if stop_early and key[0] < best_key[0] and key[1] < best_key[1]:
            skipped = lrs[n + 1:]
            break
    return best, best_lr, per_lr, per_lr_nll, skipped


@register("rtt", "Retraining on T (Deeb & Roger 2024): fine-tune on half the forget subjects' facts "
                 "over an lr sweep, probe the held-out half", family="relearning")
def rtt(model, ctx: AttackContext) -> Attacked:
    """RTT: fine-tune a copy on T for `epochs` at each lr of the sweep; keep the copy with the
    best K on the held-out V, K the audit's own measure (accuracy, or ROUGE-L recall on TOFU;
    ties: the lower V loss), as Deeb & Roger report the best lr per method. Only the best copy is kept alive, so memory is at most two copies of
    the model beside the input. The returned `forget_items` is V: the audit scores K on V.
    """
    p = resolve_params(RTTParams, ctx, "rtt")
    split = ctx.rtt_split or split_forget_by_subject
    train, held_out = split(ctx.task.forget_eval, ctx.seed, p.train_fraction)
    best, best_lr, per_lr, per_lr_nll, skipped = relearn_sweep(model, ctx, train, held_out, p)
    train_subjects = sorted({str(it.subject) for it in train if it.subject is not None})
    return Attacked(model=best, forget_items=held_out, info={
        "lr": best_lr, "per_lr": per_lr, "selected_by": ctx.knowledge, "per_lr_val_nll": per_lr_nll,
        "skipped_lrs": skipped, "n_train": len(train), "n_val": len(held_out), "epochs": p.epochs,
        "batch_size": p.batch_size,
        "train_subjects": train_subjects})


@register("relearn_benign", "fine-tune on retain data only: does unrelated training bring the forget "
                            "set back?", family="relearning")
def relearn_benign(model, ctx: AttackContext) -> Attacked:
    """Benign relearning: a copy fine-tuned on `n_items` retain items (sampled with the seed);
    probed on the whole forget_eval set."""
    p = resolve_params(BenignParams, ctx, "relearn_benign")
    forget_keys = {(it.question, it.answer) for it in ctx.task.forget + ctx.task.forget_eval}
    pool = [it for it in ctx.task.retain if (it.question, it.answer) not in forget_keys]
    if not pool:
        raise AttackUnavailable("relearn_benign: the task has no retain items to train on")
    train = random.Random(ctx.seed).sample(pool, min(p.n_items, len(pool)))
    attacked = copy.deepcopy(model)
    finetune(attacked, ctx.tokenizer, train, p.epochs, p.lr, ctx.seed, p.batch_size, p.weight_decay, ctx.prompt)
    return Attacked(model=attacked, forget_items=None, info={
        "lr": p.lr, "epochs": p.epochs, "n_train": len(train), "batch_size": p.batch_size})
