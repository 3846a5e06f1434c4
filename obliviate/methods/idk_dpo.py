"""IdkDPO (Maini et al. 2024, TOFU; DPO of Rafailov et al. 2023 with a refusal as the preferred
answer): y_w = a refusal ("I don't know"), y_l = the true forget answer.

L = -(2/beta) * mean log sigmoid(beta * [(logp_theta - logp_ref)(y_w) - (logp_theta - logp_ref)(y_l)])
    + alpha * CE_mean(retain)

Both reference log-probs are fixed and read from the cache built before training.
"""

from dataclasses import dataclass

import torch.nn.functional as F

from obliviate.methods import register
from obliviate.methods._losses import nll_mean, sequence_logp


@dataclass
class IdkDPOParams:
    beta: float = 0.1
    gamma: float = 1.0
    alpha: float = 1.0


@register("idk_dpo", IdkDPOParams, "DPO preferring a refusal over the true answer (TOFU's IdkDPO)",
          ref_logp=True, refusals=True, joint=("refusal", "forget", "retain"))
def loss(model, forget, retain, ctx):
    p = ctx.params
    refusal = forget["refusal"]
    win = sequence_logp(model, refusal) - ctx.ref_refusal_logp(refusal)
    lose = sequence_logp(model, forget) - ctx.ref_logp(forget)
    dpo = -(2.0 / p.beta) * F.logsigmoid(p.beta * (win - lose)).mean()
    return p.gamma * dpo + p.alpha * nll_mean(model, retain)
