"""Inverted Hinge Loss (Cha et al., "Towards Robust and Parameter-Efficient Knowledge Unlearning
for LLMs", ICLR 2025 — LoKU, eq. 4).

Per forget answer token t, with p = softmax of the model's logits at t:

    IHL_t = 1 + p(y_t | y_<t, x) - max_{v != y_t} p(v | y_<t, x)

    L = gamma * mean_t IHL_t (forget answer tokens) + alpha * CE_mean(retain)

Unlike gradient ascent, whose -log p(y_t) is unbounded, IHL lies in [0, 2] and stops pushing
once another token overtakes y_t: it moves probability to the best *other* token instead of
spreading it over the whole vocabulary. `inverted_hinge` is the per-token term (FILA reuses it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.methods import register
from obliviate.methods._losses import forward_logits, nll_mean, token_logp


@dataclass
class IHLParams:
    alpha: float = 1.0
    gamma: float = 1.0


def inverted_hinge(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IHL_t of each answer token and the answer mask, both (B, T-1); masked positions hold 0.

    Probabilities in fp32 whatever the model's dtype.
    """
    logp_y, mask = token_logp(logits, labels)
    probs = logits[:, :-1].float().softmax(-1)
    # probabilities are >= 0, so zeroing p(y_t) leaves max_{v != y_t} p(v) as the row's max
    p_other = probs.scatter(-1, labels[:, 1:].clamp_min(0).unsqueeze(-1), 0.0).amax(-1)
    return (1.0 + logp_y.exp() - p_other) * mask, mask


def ihl_mean(model, batch: dict) -> torch.Tensor:
    """Mean IHL_t over all answer tokens of the batch."""
    ihl, mask = inverted_hinge(forward_logits(model, batch), batch["labels"])
    return ihl.sum() / mask.sum().clamp_min(1)


@register("ihl", IHLParams, "Inverted hinge loss on forget + NLL on retain (LoKU, Cha et al. 2025)")
def loss(model, forget, retain, ctx):
    p = ctx.params
    value = p.gamma * ihl_mean(model, forget)
    if p.alpha:
        value = value + p.alpha * nll_mean(model, retain)
    return value
