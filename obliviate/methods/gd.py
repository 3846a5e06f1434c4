"""Gradient Difference (Liu et al. 2022; TOFU baseline, Maini et al. 2024).

L = -gamma * CE_mean(forget) + alpha * CE_mean(retain).
"""

from dataclasses import dataclass

from obliviate.methods import register
from obliviate.methods._losses import nll_mean


@dataclass
class GDParams:
    gamma: float = 1.0
    alpha: float = 1.0


@register("gd", GDParams, "Gradient ascent on forget + NLL on retain (gradient difference)",
          joint=("forget", "retain"))
def loss(model, forget, retain, ctx):
    p = ctx.params
    return -p.gamma * nll_mean(model, forget) + p.alpha * nll_mean(model, retain)
