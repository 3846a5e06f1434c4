"""NPO with a KL retain term (Zhang et al. 2024; MUSE's NPO_KLR).

L = gamma * L_NPO(forget) + alpha * KL(p_ref || p_theta) on retain answer tokens (masked).
"""

from dataclasses import dataclass

from obliviate.methods import register
from obliviate.methods._losses import kl_to_ref
from obliviate.methods.npo import npo_forget_loss


@dataclass
class NPOKLParams:
    beta: float = 0.1
    gamma: float = 1.0
    alpha: float = 1.0


@register("npo_kl", NPOKLParams, "NPO + KL to the original model on retain (MUSE's NPO_KLR)",
          ref_logp=True, ref_model=True, joint=("forget", "retain"))
def loss(model, forget, retain, ctx):
    p = ctx.params
    return p.gamma * npo_forget_loss(model, forget, ctx, p.beta) + p.alpha * kl_to_ref(model, ctx.ref_model, retain)
