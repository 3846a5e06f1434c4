"""QAU: quantization-aware unlearning (ours; the failure it answers is Zhang et al. 2025,
"Catastrophic Failure of LLM Unlearning via Quantization": 4-bit RTN of an unlearned model
brings most of the forgotten knowledge back).

    L = L_base(theta) + lambda_q * mean_{b in bits} L_forget(Q_b(theta))
    Q_b(W) through a straight-through estimator:  W_ste = W + (Q_b(W) - W).detach()

Q_b is the audit's own grid (`obliviate.attacks.quantize.fake_quantize`: symmetric RTN,
group 128, every decoder weight matrix, LM head excluded; GPT-2's Conv1D quantized as (out, in)),
so "forgets at 4 bits" means forgets under the `rtn4` attack. The forward value is the quantized model's; the gradient w.r.t. W is
the gradient w.r.t. Q_b(W) (round() has zero gradient almost everywhere, the STE skips it).
L_forget is the base's forget term, unweighted: -CE_mean for gd/ga, the NPO term for npo_*.
The quantized forwards run through `torch.func.functional_call`; no weight is modified in place.

Goal (checked by the audit): recovery under 4-bit <= recovery at full precision.
Cost: 1 + len(bits) forwards and backwards per step, plus a frozen reference copy of the model
(registered like SURE so that every base, npo_kl included, runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call

from obliviate.attacks.quantize import fake_quantize
from obliviate.methods import register
from obliviate.methods._losses import MODEL_KEYS
from obliviate.methods.sure import base_loss, forget_loss_from_logits
from obliviate.models.modules import matrix, to_native, weight_matrices

GROUP_SIZE = 128  # the audit's rtn4 / rtn8


@dataclass
class QAUParams:
    base: str = "gd"
    bits: tuple[int, ...] = (4, 8)
    lambda_q: float = 1.0
    alpha: float = 1.0
    gamma: float = 1.0
    beta: float = 0.1


def ste_weights(model, bits: int) -> dict[str, torch.Tensor]:
    """{'<layer>.weight': W + (Q_b(W) - W).detach()} for every decoder weight matrix, in its stored layout."""
    out = {}
    for name, module in weight_matrices(model):
        w = matrix(module)  # groups run along the input dimension, as in the rtn attacks
        ste = w + (fake_quantize(w, bits, GROUP_SIZE, symmetric=True)[0] - w).detach()
        out[f"{name}.weight"] = to_native(module, ste)
    if not out:
        raise ValueError(f"qau: {type(model).__name__} has no weight matrix (nn.Linear or Conv1D) to quantize")
    return out


def quantized_logits(model, batch: dict, bits: int) -> torch.Tensor:
    """The model's logits with every decoder weight matrix at Q_b(W), gradients straight through to W."""
    return functional_call(model, ste_weights(model, bits), args=(),
                           kwargs={k: batch[k] for k in MODEL_KEYS}).logits


@register("qau", QAUParams, "Base loss + the forget loss at 4/8-bit fake-quantized weights (ours)",
          ref_logp=True, ref_model=True)
def loss(model, forget, retain, ctx):
    p = ctx.params
    if not p.bits:
        raise ValueError("qau: `bits` is empty; give the precisions to forget at, e.g. [4, 8]")
    l_base = base_loss(model, forget, retain, ctx)  # first: it checks `base`
    quantized = [forget_loss_from_logits(p.base, quantized_logits(model, forget, b), forget, ctx, p.beta)
                 for b in p.bits]
    return l_base + p.lambda_q * torch.stack(quantized).mean()
