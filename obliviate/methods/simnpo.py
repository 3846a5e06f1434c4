"""SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization
for LLM Unlearning", eq. 4): reference-free, length-normalised NPO.

L = gamma * -(2/beta) * mean_i log sigmoid(beta * (nll_avg_i - delta)) + alpha * CE_mean(retain)
"""

from dataclasses import dataclass

import torch.nn.functional as F

from obliviate.methods import register
from obliviate.methods._losses import nll_mean, sequence_nll_avg


@dataclass
class SimNPOParams:
    beta: float = 4.5
    delta: float = 0.0
    gamma: float = 0.125
    alpha: float = 1.0


@register("simnpo", SimNPOParams, "Reference-free, length-normalised NPO (Fan et al. 2024)",
          joint=("forget", "retain"))
def loss(model, forget, retain, ctx):
    p = ctx.params
    forget_loss = -(2.0 / p.beta) * F.logsigmoid(p.beta * (sequence_nll_avg(model, forget) - p.delta)).mean()
    return p.gamma * forget_loss + p.alpha * nll_mean(model, retain)
