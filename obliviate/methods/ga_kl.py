"""Gradient ascent with a KL retain term (TOFU's "KL" baseline, Maini et al. 2024).

L = -gamma * CE_mean(forget) + alpha * KL(p_ref || p_theta) on retain answer tokens (masked).
"""

from dataclasses import dataclass

from obliviate.methods import register
from obliviate.methods._losses import kl_to_ref, nll_mean


@dataclass
class GAKLParams:
    gamma: float = 1.0
    alpha: float = 1.0


@register("ga_kl", GAKLParams, "Gradient ascent on forget + KL to the original model on retain",
          ref_model=True, joint=("forget", "retain"))
def loss(model, forget, retain, ctx):
    p = ctx.params
    return -p.gamma * nll_mean(model, forget) + p.alpha * kl_to_ref(model, ctx.ref_model, retain)
