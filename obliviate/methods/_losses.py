"""Shared pieces of every unlearning loss (SPEC section 2 notation), written once and tested once.

Labels are -100 on prompt and padding; position t's logits predict token t+1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MODEL_KEYS = ("input_ids", "attention_mask")


def forward_logits(model, batch: dict) -> torch.Tensor:
    """The logits of `model` on `batch`; the slice `joint_forward` left for this model, if any (once)."""
    cached = batch.get("_logits")
    if cached is not None and cached[0] is model:
        return batch.pop("_logits")[1]
    return model(**{k: batch[k] for k in MODEL_KEYS}).logits


def joint_forward(model, parts: list[dict]) -> None:
    """One forward pass of `model` over several right-padded batches stacked into one (padded to
    the widest); each batch gets its slice of the logits, which the next `forward_logits(model,
    batch)` returns instead of running the model again. Two calls on B items each cost more than
    one on 2B on a CPU (per-call overhead, smaller matrix products) and, under DDP, one forward per
    backward is what the reducer expects. Causal attention with the attention mask makes a row's
    logits independent of the other rows and of right padding (up to float rounding)."""
    width = max(b["input_ids"].shape[1] for b in parts)

    def widen(x: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

    input_ids = torch.cat([widen(b["input_ids"], 0) for b in parts])  # masked: any id will do
    attention_mask = torch.cat([widen(b["attention_mask"], 0) for b in parts])
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    start = 0
    for b in parts:
        n, w = b["input_ids"].shape
        b["_logits"] = (model, logits[start:start + n, :w])
        start += n


def token_logp(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each answer token, and the answer mask, both (B, T-1).

    Masked positions hold 0. Computed in fp32 whatever the model's dtype.
    """
    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    mask = target != -100
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.clamp_min(0).reshape(-1),
                          reduction="none").view_as(target)
    return -nll * mask, mask


def sequence_logp(model, batch: dict) -> torch.Tensor:
    """logp(y|x) = -nll_sum over answer tokens, one value per item (B,)."""
    logp, _ = token_logp(forward_logits(model, batch), batch["labels"])
    return logp.sum(-1)


def sequence_nll_avg(model, batch: dict) -> torch.Tensor:
    """nll_avg = nll_sum / |y| per item (B,)."""
    logp, mask = token_logp(forward_logits(model, batch), batch["labels"])
    return -logp.sum(-1) / mask.sum(-1).clamp_min(1)


def nll_mean_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logp, mask = token_logp(logits, labels)
    return -logp.sum() / mask.sum().clamp_min(1)


def nll_mean(model, batch: dict) -> torch.Tensor:
    """Mean token cross-entropy over all answer tokens of the batch."""
    return nll_mean_from_logits(forward_logits(model, batch), batch["labels"])


def masked_kl(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-level KL(p_ref || p_theta), averaged over answer positions only.

    The field's code often takes this over prompt and padding too (SPEC section 5); here the
    label mask selects the positions.
    """
    mask = (labels[:, 1:] != -100)
    logq = F.log_softmax(logits[:, :-1].float(), dim=-1)
    logp_ref = F.log_softmax(ref_logits[:, :-1].float(), dim=-1)
    kl = (logp_ref.exp() * (logp_ref - logq)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp_min(1)


def kl_to_ref(model, ref_model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        ref_logits = forward_logits(ref_model, batch)
    return masked_kl(forward_logits(model, batch), ref_logits, batch["labels"])


def retain_loss(kind: str, model, batch: dict, ctx) -> torch.Tensor:
    """The retain term: 'nll' (mean token CE) or 'kl' (masked KL to the frozen reference)."""
    if kind == "nll":
        return nll_mean(model, batch)
    if kind == "kl":
        return kl_to_ref(model, ctx.ref_model, batch)
    raise ValueError(f"unknown retain loss {kind!r} (choose 'nll' or 'kl')")


def npo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO (Zhang et al. 2024, eq. 3): -(2/beta) * mean log sigmoid(-beta * (logp - logp_ref))."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp - ref_logp)).mean()
