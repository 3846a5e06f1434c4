"""IdkNLL (Maini et al. 2024, TOFU's "IDK" baseline): fine-tune the forget questions towards a
refusal. L = gamma * CE_mean(question, refusal) + alpha * CE_mean(retain).
"""

from dataclasses import dataclass

from obliviate.methods import register
from obliviate.methods._losses import nll_mean


@dataclass
class IdkNLLParams:
    gamma: float = 1.0
    alpha: float = 1.0


@register("idk_nll", IdkNLLParams, "NLL towards a refusal on forget questions (TOFU's IDK)",
          refusals=True, joint=("refusal", "retain"))
def loss(model, forget, retain, ctx):
    p = ctx.params
    return p.gamma * nll_mean(model, forget["refusal"]) + p.alpha * nll_mean(model, retain)
