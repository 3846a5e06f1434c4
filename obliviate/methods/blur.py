"""BLUR (Reisizadeh et al. 2025, "BLUR: A Bi-Level Optimization Approach for LLM Unlearning").

Forgetting is the lower level, retaining the upper level. Each step takes two backward passes,
g_f = grad L_forget and g_r = grad L_retain, and descends along

    d = g_r + (gamma - <g_r, g_f> / ||g_f||^2) * g_f                     [gamma 1]

with the inner products over all trainable parameters at once. Then <d, g_f> = gamma * ||g_f||^2:
the forget loss falls at a prescribed rate whatever the retain gradient, and d's component
orthogonal to g_f is exactly g_r's (retain moves freely where it does not fight forgetting).
If g_f = 0, d = g_r.

L_forget: "ga" = -CE_mean(forget) (default) or "npo" = L_NPO(forget) [beta 0.1];
L_retain = CE_mean(retain).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.methods import register
from obliviate.methods._losses import nll_mean
from obliviate.methods.npo import npo_forget_loss

FORGET_LOSSES = ("ga", "npo")


@dataclass
class BLURParams:
    gamma: float = 1.0
    forget_loss: str = "ga"  # "ga" | "npo"
    beta: float = 0.1  # NPO's beta, used when forget_loss = "npo"


def blur_direction(g_f: list[torch.Tensor], g_r: list[torch.Tensor], gamma: float) -> list[torch.Tensor]:
    """d = g_r + (gamma - <g_r, g_f> / ||g_f||^2) g_f, inner products over the whole list."""
    f_sq = sum((f.double() * f.double()).sum() for f in g_f)
    if float(f_sq) == 0.0:
        return [r.clone() for r in g_r]
    r_dot_f = sum((r.double() * f.double()).sum() for r, f in zip(g_r, g_f, strict=True))
    coef = float(gamma - r_dot_f / f_sq)
    return [r + coef * f for r, f in zip(g_r, g_f, strict=True)]


def forget_loss(model, forget, ctx) -> torch.Tensor:
    p = ctx.params
    if p.forget_loss == "ga":
        return -nll_mean(model, forget)
    if p.forget_loss == "npo":
        return npo_forget_loss(model, forget, ctx, p.beta)
    raise ValueError(f"blur: unknown forget_loss {p.forget_loss!r} (choose {' or '.join(map(repr, FORGET_LOSSES))})")


def _grads(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    # a trainable parameter the loss does not reach has no .grad: its gradient is 0
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]


def setup(model, task, ctx) -> None:
    if ctx.params.forget_loss not in FORGET_LOSSES:
        raise ValueError(f"blur: unknown forget_loss {ctx.params.forget_loss!r} "
                         f"(choose {' or '.join(map(repr, FORGET_LOSSES))})")


def backward(model, forget, retain, ctx, accelerator=None) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    # gradients accumulated by earlier micro-batches (grad_accum > 1) are kept and added to
    accumulated = [p.grad for p in params]
    run_backward = accelerator.backward if accelerator is not None else torch.Tensor.backward
    for p in params:
        p.grad = None
    l_f = forget_loss(model, forget, ctx)
    run_backward(l_f)
    g_f = _grads(params)
    for p in params:
        p.grad = None
    l_r = nll_mean(model, retain)
    run_backward(l_r)
    g_r = _grads(params)
    d = blur_direction(g_f, g_r, ctx.params.gamma)
    for p, acc, d_p in zip(params, accumulated, d, strict=True):
        p.grad = d_p if acc is None else acc + d_p
    return (l_f + l_r).detach()


@register("blur", BLURParams, "Bi-level: retain gradient plus a forget-rate-constrained step (Reisizadeh et al. 2025)",
          ref_logp=True, setup=setup, backward=backward)
def loss(model, forget, retain, ctx):
    # The value BLUR reports (L_f + L_r); training goes through `backward`, which sets d.
    return forget_loss(model, forget, ctx) + nll_mean(model, retain)
