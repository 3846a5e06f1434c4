"""NPO with a retain NLL term (Zhang et al. 2024, "NPO+RT"; MUSE's NPO_GDR).

L = gamma * L_NPO(forget) + alpha * CE_mean(retain).
"""

from dataclasses import dataclass

from obliviate.methods import register
from obliviate.methods._losses import nll_mean
from obliviate.methods.npo import npo_forget_loss


@dataclass
class NPOGDParams:
    beta: float = 0.1
    gamma: float = 1.0
    alpha: float = 1.0


@register("npo_gd", NPOGDParams, "NPO + NLL on retain (NPO+RT, MUSE's NPO_GDR)", ref_logp=True, joint=("forget", "retain"))
def loss(model, forget, retain, ctx):
    p = ctx.params
    return p.gamma * npo_forget_loss(model, forget, ctx, p.beta) + p.alpha * nll_mean(model, retain)
