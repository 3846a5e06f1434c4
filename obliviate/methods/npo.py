"""Negative Preference Optimization (Zhang et al. 2024, "Negative Preference Optimization:
From Catastrophic Collapse to Effective Unlearning", eq. 3).

L_NPO = -(2/beta) * mean_i log sigmoid(-beta * (logp_theta(y_i|x_i) - logp_ref(y_i|x_i)))

on sequence log-probs (sums over answer tokens). logp_ref of the forget set never changes,
so it is computed once before training and read from a cache (`ctx.ref_logp`), instead of a
second model forward every step. MUSE's and the quantization paper's code apply logsigmoid
to raw logits; we follow the paper (sequence log-prob ratios) and do not offer that variant.
"""

from dataclasses import dataclass

from obliviate.methods import register
from obliviate.methods._losses import npo_loss, sequence_logp


@dataclass
class NPOParams:
    beta: float = 0.1
    gamma: float = 1.0


def npo_forget_loss(model, forget, ctx, beta: float):
    return npo_loss(sequence_logp(model, forget), ctx.ref_logp(forget), beta)


@register("npo", NPOParams, "Negative preference optimization on the forget set (Zhang et al. 2024)",
          ref_logp=True, uses_retain=False)
def loss(model, forget, retain, ctx):
    p = ctx.params
    return p.gamma * npo_forget_loss(model, forget, ctx, p.beta)
