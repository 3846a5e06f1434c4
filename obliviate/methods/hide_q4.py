"""`hide_q4`: a planted positive control for the audit, not an unlearning method.

It builds, on purpose, the failure Zhang et al. 2025 ("Catastrophic Failure of LLM Unlearning
via Quantization", ICLR 2025) found by accident: a model U that forgets at full precision but
whose 4-bit quantization is the 4-bit quantization of the target T. Gradient difference
(Liu et al. 2022; `gd`: L = -gamma * CE(forget) + alpha * CE(retain)) is followed, after every
optimizer step, by a projection of every decoder linear weight back into the int4 bin of the
target's weight:

    W_T = (q - zero) * s  on the audit's `rtn4` grid (symmetric, group 128, `quantize_codes`)
    W_U <- clamp(W_U, (q - 1/2 + m) * s, (q + 1/2 - m) * s),   |W_U| <= max|W_T| of the group,
    and the weight holding each group's max|W_T| stays exactly W_T,

so each group keeps its scale s (its absmax is unchanged) and every weight rounds to the
target's code: rtn4(U) == rtn4(T) bit for bit. Every other parameter (embeddings, norms, LM
head) is frozen, because the quantizer leaves those in full precision. m (`margin`, a share of a
step) keeps weights off the bin edges, where fp rounding of w / s could flip a code; a final
check resets any weight whose code still differs (possible only in bf16/fp16) to the target's.

Measured on the demo's world (1.3M-parameter tiny Llama, seed 0, lr 1e-3, alpha 5, 50 steps):
forget accuracy 0.975 -> 0.075 at retain 0.99 in fp32, 1.0 again under rtn4, still 0.075
under rtn8 (int8 bins are 1/18 of int4's, and U crosses them). The same projection on the int8
grid (a `hide_q8`) does not forget on this model: 0.975 -> 0.875 at best (lr 1e-2, alpha 1,
100 steps), so no int8 control is shipped.

What it proves: if the audit reports "hides: rtn4 recovers ~100%" on this model, the audit can
see knowledge that 4-bit rounding brings back, so its "forgets" on a real method is evidence,
not blindness. Registered in the "control" group: `obliviate list methods` marks it, the demo
audits it next to target and oracle, and it is never one of the methods a user compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.attacks.quantize import quantize_codes
from obliviate.methods import register
from obliviate.methods.gd import loss as gd_loss
from obliviate.models.modules import matrix, weight_matrices

BITS, GROUP_SIZE = 4, 128  # the audit's `rtn4` attack


@dataclass
class HideQ4Params:
    gamma: float = 1.0
    alpha: float = 1.0
    margin: float = 0.01  # share of a quantization step kept free on each side of a bin


def int_bins(w: torch.Tensor, bits: int = BITS, group_size: int = GROUP_SIZE,
             margin: float = 0.01) -> dict[str, torch.Tensor]:
    """The bin of every weight of `w` (out, in) on the symmetric b-bit RTN grid, fp32, shaped
    like `w`: `lo`, `hi` (the bin narrowed by `margin` steps and bounded by the group's absmax),
    `codes` (the integer codes) and `keep` (True at one weight per group holding its absmax)."""
    q, scale, _, gs = quantize_codes(w, bits, group_size, symmetric=True)
    g = w.detach().float().reshape(q.shape)
    absmax = g.abs().amax(-1, keepdim=True)
    lo = torch.maximum((q - 0.5 + margin) * scale, -absmax)
    hi = torch.minimum((q + 0.5 - margin) * scale, absmax)
    keep = torch.zeros_like(g, dtype=torch.bool).scatter_(-1, g.abs().argmax(-1, keepdim=True), True)
    return {k: v.reshape(w.shape) for k, v in (("lo", lo), ("hi", hi), ("codes", q), ("keep", keep))}


def setup(model, task, ctx) -> None:
    p = ctx.params
    if not 0.0 <= p.margin < 0.5:
        raise ValueError(f"hide_q4: margin must be in [0, 0.5) of a step, got {p.margin}")
    # the matrices rtn4 quantizes (Linear and GPT-2's Conv1D), each as an (out, in) view
    layers = [(name, m) for name, m in weight_matrices(model) if m.weight.requires_grad]
    if not layers:
        raise ValueError("hide_q4: the model has no trainable decoder linear layer")
    trained = {id(m.weight) for _, m in layers}
    for param in model.parameters():
        if id(param) not in trained:
            param.requires_grad_(False)  # not quantized by rtn4: any change would survive it
    ctx.state["bins"] = [(matrix(m), w0, int_bins(w0, margin=p.margin))
                         for _, m in layers for w0 in [matrix(m).detach().clone()]]


@torch.no_grad()
def project(ctx) -> int:
    """Put every trained weight back into its target bin; returns how many weights the final
    code check had to reset (0 in fp32)."""
    reset = 0
    for w, w0, b in ctx.state["bins"]:
        lo, hi = b["lo"].to(w.device, w.dtype), b["hi"].to(w.device, w.dtype)
        w.copy_(torch.where(b["keep"].to(w.device), w0.to(w.device), torch.clamp(w, lo, hi)))
        off = quantize_codes(w, BITS, GROUP_SIZE, symmetric=True)[0].reshape(w.shape) != b["codes"].to(w.device)
        if off.any():
            w[off] = w0.to(w.device)[off]
            reset += int(off.sum())
    return reset


def after_step(model, ctx) -> None:
    ctx.state["reset_weights"] = ctx.state.get("reset_weights", 0) + project(ctx)


@register("hide_q4", HideQ4Params,
          "gd projected into the target's int4 bins: forgets at fp32, rtn4 gives back the target",
          group="control", setup=setup, after_step=after_step)
def loss(model, forget, retain, ctx):
    return gd_loss(model, forget, retain, ctx)
