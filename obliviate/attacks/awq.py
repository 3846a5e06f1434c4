"""AWQ 4-bit weight quantization as a recovery attack (SPEC section 4).

Lin et al. 2024, "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration", section 3.2. Weights that meet large activations matter most, so each input
channel is scaled up before rounding and back down after:

    s     = s_X^α,  s_X = mean over tokens of |x| per input channel
    s     ← s / sqrt(max(s) · min(s))                    (normalisation of the reference code)
    W'    = Q(W · diag(s)) · diag(s)⁻¹
    α*    = argmin over α ∈ {0, 1/20, …, 19/20} of ||X Wᵀ - X W'ᵀ||²   on calibration activations

Q is AWQ's default grid: asymmetric b-bit with a zero point per row and group of 128 (or the
largest divisor of the in-features not above 128), as in the reference `pseudo_quantize_tensor`:
scale = (max - min) / (2^b - 1), zero = round(-min / scale), codes in [0, 2^b - 1]. α = 0 gives
s = 1, i.e. plain round-to-nearest, so the search can only lower the calibration error.

This is a fake-quant simulation: the reference folds s⁻¹ into the preceding operation (an RMSNorm
weight or the previous linear) and stores Q(W·diag(s)) as integers; here s⁻¹ stays inside the
dequantized weight, which gives the same outputs for that linear. Deviations from the reference,
made so that each linear is scaled on its own: the scale is searched per linear on that linear's
output, not shared by the linears that read the same input (q/k/v, gate/up) and searched on the
block's output; the reference's second step, the per-group clipping search (auto_clip), is not
applied. As in the reference, every layer is calibrated on the activations of the
full-precision model. Only the linears inside the decoder layers are quantized; the LM head
stays in full precision.

Why not a library (checked on this CPU machine 2026-11-23, torch 2.13.0+cpu, transformers 5.23.0):
- llm-compressor 0.14.0.1 requires transformers <=5.17.0; in a throwaway venv (transformers
  5.17.0) its AWQModifier (W4A16_ASYM) failed on CPU in `pipelines/cache.py` `_pin_intermediate`:
  `value.pin_memory()` -> "RuntimeError: Cannot access accelerator device when none is available."
- GPTQModel 7.6.0 (the newest that accepts torch 2.13; it pins numpy==2.2.6) in a venv:
  METHOD.AWQ with FORMAT.GEMM -> "ValueError: AWQ: CUDA is not available."; FORMAT.GEMV_FAST ->
  "AwqGEMVFastLinear does not support device: DEVICE.CPU".
- AutoAWQ 0.2.9 installs and ran on a tiny Llama on CPU in a venv, but it is officially
  deprecated and unmaintained (its own message: last tested with torch 2.6.0, transformers 4.51.3).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from obliviate.attacks import AttackContext, Attacked, register, resolve_params
from obliviate.attacks.gptq import calibration_batches, quantize_layer_by_layer
from obliviate.attacks.quantize import resolve_group_size
from obliviate.models.modules import matrix

BACKEND = "obliviate-awq (paper fallback)"


@dataclass
class AWQParams:
    bits: int = 4
    group_size: int = 128
    n_grid: int = 20  # α ∈ {0, 1/n_grid, …, (n_grid-1)/n_grid}, as in the reference code
    n_calibration: int = 128  # retain sequences, sampled with the seed
    max_length: int = 512
    batch_size: int = 16


def quantize_asymmetric(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Round-to-nearest with a zero point per row and group (AWQ's `pseudo_quantize_tensor`)."""
    rows, cols = weight.shape
    if cols % group_size:
        raise ValueError(f"group_size {group_size} does not divide in_features {cols}")
    w = weight.reshape(-1, group_size)
    max_val, min_val = w.amax(dim=1, keepdim=True), w.amin(dim=1, keepdim=True)
    max_int = 2**bits - 1
    scale = (max_val - min_val).clamp(min=1e-5) / max_int
    zero = (-torch.round(min_val / scale)).clamp(0, max_int)
    w = (torch.clamp(torch.round(w / scale) + zero, 0, max_int) - zero) * scale
    return w.reshape(rows, cols)


def awq_quantize(weight: torch.Tensor, x: torch.Tensor, bits: int = 4, group_size: int = 128,
                 alphas: list[float] | None = None) -> tuple[torch.Tensor, float]:
    """AWQ of one weight (rows x in) given calibration inputs x (tokens x in):
    the fake-quantized weight Q(W·diag(s))·diag(s)⁻¹ at the best α, and that α."""
    alphas = [i / 20 for i in range(20)] if alphas is None else alphas
    W = weight.detach().float()
    x = x.detach().float()
    # The output error mean((x C^T - x W^T)^2) is trace(D H D^T) / (tokens x rows) with D = C - W and
    # H = x^T x: one (in x in) Gram matrix instead of a (tokens x in x rows) product per alpha
    # (the same value up to rounding; 5-30x less work when there are more tokens than inputs).
    gram = x.T @ x
    scale = 1.0 / (x.shape[0] * W.shape[0])
    s_x = x.abs().mean(dim=0)
    best, best_alpha, best_error = None, 0.0, float("inf")
    for alpha in alphas:
        s = s_x.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        candidate = quantize_asymmetric(W * s[None, :], bits, group_size) / s[None, :]
        diff = candidate - W
        error = float(((diff @ gram) * diff).sum()) * scale
        if error < best_error:  # ties keep the smaller α (α = 0 is plain RTN)
            best, best_alpha, best_error = candidate, alpha, error
    return best.to(weight.dtype), best_alpha


class ActivationStore:
    """The real-token inputs a linear layer sees during calibration."""

    def __init__(self):
        self.chunks: list[torch.Tensor] = []

    def add(self, x: torch.Tensor) -> None:
        self.chunks.append(x.detach().float())

    def inputs(self) -> torch.Tensor:
        return torch.cat(self.chunks)


@register("awq4", "AWQ 4-bit, group 128, zero point, calibrated on retain items (Lin et al. 2024)",
          family="quantization")
def awq4(model, ctx: AttackContext) -> Attacked:
    p = resolve_params(AWQParams, ctx, "awq4")
    qmodel = copy.deepcopy(model).eval()
    calib, n_calibration = calibration_batches(ctx, p.n_calibration, p.max_length, p.batch_size)
    alphas = [i / p.n_grid for i in range(p.n_grid)]
    groups: dict[str, int] = {}
    chosen: dict[str, float] = {}

    def quantize_layer(index, linears, observers):
        for name, linear in linears.items():
            w = matrix(linear)  # (out, in), a view for GPT-2's Conv1D
            g = resolve_group_size(w.shape[1], p.group_size)
            groups[str(w.shape[1])] = g
            weight, alpha = awq_quantize(w, observers[name].inputs(), p.bits, g, alphas)
            w.copy_(weight)
            chosen[f"layers.{index}.{name}"] = alpha

    n_layers = quantize_layer_by_layer(qmodel, calib, lambda _m: ActivationStore(), quantize_layer,
                                       inputs_from_quantized=False)
    return Attacked(model=qmodel, info={
        "bits": p.bits, "n_layers": n_layers, "group_size": p.group_size, "group_size_by_in_features": groups,
        "zero_point": True,
        "n_grid": p.n_grid, "alpha": chosen, "alpha_mean": sum(chosen.values()) / max(len(chosen), 1),
        "n_calibration": n_calibration, "calibration": "retain", "fake_quant": True, "backend": BACKEND,
    })
