"""Gradient Ascent (Jang et al. 2022, "Knowledge Unlearning for Mitigating Privacy Risks").

L = -gamma * CE_mean(forget): maximise the forget set's token cross-entropy. No retain term.
"""

from dataclasses import dataclass

from obliviate.methods import register
from obliviate.methods._losses import nll_mean


@dataclass
class GAParams:
    gamma: float = 1.0


@register("ga", GAParams, "Gradient ascent on the forget set (Jang et al. 2022)", uses_retain=False)
def loss(model, forget, retain, ctx):
    return -ctx.params.gamma * nll_mean(model, forget)
