"""GPTQ 4-bit weight quantization as a recovery attack (SPEC section 4).

Frantar et al. 2023, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers", Algorithm 1. For one linear layer with weight W (rows x columns) and calibration
inputs X (columns x tokens), GPTQ minimises ||WX - ŴX||² column by column:

    H = 2 X Xᵀ                                   (Hessian of the layer-wise squared error)
    H ← H + λ I,  λ = damp · mean(diag H)         (dampening, damp = 0.01)
    U = Cholesky(H⁻¹)ᵀ  (upper)                   (the rows of H⁻¹ needed, in a stable form)
    for each column j:
        q_j  = quant(w_j)                         (on the group's grid; scales fixed when the group starts)
        e_j  = (w_j - q_j) / U[j, j]
        W[:, j:] ← W[:, j:] - e_j · U[j, j:]      (push the error onto the columns not yet quantized)

with lazy batch updates: the error of a block of columns is applied to the later columns in one
matrix product. Blocks here are one quantization group long, so a group's scale is always taken
from its error-updated weights (the reference code computes it at the same point).

The model is quantized sequentially, as in the paper: the calibration sequences run through the
decoder layers one at a time, each layer's linears see the outputs of the already-quantized
earlier layers, and all linears of a layer are quantized from one pass over the full-precision
layer (the reference code's default; `--true-sequential` there splits the layer further).

Grid: the one symmetric grid of the RTN attacks (`quantize.symmetric_scale` and
`quantize.symmetric_codes`): scale = max|w| / (2^(b-1) - 1) per row and group, codes
-(2^(b-1) - 1)..2^(b-1) - 1 (-7..7 at 4 bits), so `rtn4` and `gptq4` differ only by GPTQ's
error compensation. Deviation from the reference code, whose symmetric grid is scale = 2 max|w| /
(2^b - 1) over -8..7: one grid for both attacks makes their comparison about the algorithm. Group
128, or the largest divisor of the in-features not above 128 where 128 does not divide them
(recorded in `info`). A layer whose calibration inputs are all zero (H = 0: no signal) is
rounded with plain RTN on the same grid, and `info["rtn_fallback"]` names it.
act_order (quantizing columns by decreasing diag H) is off by default, as in the paper's tables.
The weights are stored dequantized ("fake quant"): what is measured is the quantized model's
behaviour, not its memory.

Deviation from the reference code: it zeroes the weights of input channels that are dead (never
non-zero) in the calibration data; here they are kept and rounded to the grid (the damping term
makes H invertible anyway), because calibration text is not the text the audit probes with.
Only the linears inside the decoder layers are quantized; the LM head stays in full precision.

Why not a library: this is the "exactly specified fallback" of SPEC section 4. Checked on this
CPU machine (2026-11-23, torch 2.13.0+cpu, transformers 5.23.0):
- llm-compressor 0.14.0.1 requires transformers <=5.17.0 (pip would downgrade 5.23 -> 5.17 and
  huggingface_hub 2.4 -> 1.33). In a throwaway venv its GPTQModifier (W4A16, group 128) ran on a
  tiny Llama with transformers 5.17, and also with 5.23 when the pin was ignored (pip check then
  reports the conflict), so it cannot be installed in the main environment as it stands.
- GPTQModel 7.7.0 requires torch >= 2.14.1 (pip: ResolutionImpossible); 7.6.0 resolves, but
  pins numpy==2.2.6 (main env has 2.4.6) and pulls torchao 0.18 and protobuf 7; in a venv its
  GPTQ (bits 4, group 128, damp 0.01) quantized and ran a tiny Llama on CPU.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from obliviate.attacks import AttackContext, Attacked, AttackUnavailable, register, resolve_params
from obliviate.attacks.quantize import resolve_group_size, symmetric_codes, symmetric_scale
from obliviate.data.collate import batches, collate, encode_items, pad_id_of
from obliviate.models.modules import decoder_layers, in_features, matrix, real_token_rows, weight_matrices

BACKEND = "obliviate-gptq (paper fallback)"


@dataclass
class GPTQParams:
    bits: int = 4
    group_size: int = 128
    damp: float = 0.01  # fraction of the mean Hessian diagonal added to the diagonal
    act_order: bool = False
    n_calibration: int = 128  # retain sequences, sampled with the seed
    max_length: int = 512
    batch_size: int = 16


# ---------------------------------------------------------------------------------------------
# One weight matrix
# ---------------------------------------------------------------------------------------------

def rtn_symmetric(weight: torch.Tensor, bits: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain round-to-nearest on the same grid (rtn4's): (dequantized weight, scales rows x groups)."""
    rows, cols = weight.shape
    w = weight.double().reshape(rows, cols // group_size, group_size)
    scales = symmetric_scale(w, bits)
    q = (symmetric_codes(w, scales, bits) * scales).reshape(rows, cols)
    return q.to(weight.dtype), scales.squeeze(-1).to(weight.dtype)


@dataclass
class GPTQResult:
    weight: torch.Tensor  # dequantized, original column order and dtype
    scales: torch.Tensor  # rows x groups
    group_index: torch.Tensor  # group of each (original) column: weight[:, j] / scales[:, group_index[j]] is a code
    rtn_fallback: bool = False  # no calibration signal (H = 0): plain RTN on the same grid


def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, bits: int = 4, group_size: int = 128,
                  damp: float = 0.01, act_order: bool = False) -> GPTQResult:
    """GPTQ (Algorithm 1) of one weight matrix given H = 2 X Xᵀ / n over its calibration inputs.

    `group_size` must divide the in-features (see `group_size_for`). Computed in float64.
    With act_order the groups are contiguous in the permuted order, as in the reference code.
    """
    rows, cols = weight.shape
    if cols % group_size:
        raise ValueError(f"group_size {group_size} does not divide in_features {cols}")
    W = weight.detach().double().clone()
    H = hessian.detach().double().clone()
    mean_diag = H.diagonal().mean()
    fallback = not torch.isfinite(mean_diag) or mean_diag <= 0
    if fallback:
        H = torch.eye(cols, dtype=torch.float64)  # no calibration signal: GPTQ reduces to RTN
    else:
        H.diagonal().add_(damp * mean_diag)

    perm = torch.argsort(H.diagonal(), descending=True) if act_order else torch.arange(cols)
    W, H = W[:, perm], H[perm][:, perm]
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)

    Q = torch.zeros_like(W)
    scales = torch.zeros(rows, cols // group_size, dtype=torch.float64)
    for start in range(0, cols, group_size):
        end = start + group_size
        block = W[:, start:end].clone()
        errors = torch.zeros_like(block)
        scale = symmetric_scale(block, bits)[:, 0]  # the group starts: its scale from the updated weights
        scales[:, start // group_size] = scale
        for i in range(group_size):
            j = start + i
            q = symmetric_codes(block[:, i], scale, bits) * scale
            Q[:, j] = q
            err = (block[:, i] - q) / U[j, j]
            block[:, i:] -= err[:, None] * U[j, j:end][None, :]
            errors[:, i] = err
        W[:, end:] -= errors @ U[start:end, end:]  # lazy batch update of the later columns

    inverse = torch.argsort(perm)
    group_index = inverse // group_size
    return GPTQResult(Q[:, inverse].to(weight.dtype), scales.to(weight.dtype), group_index, fallback)


class HessianAccumulator:
    """H = 2/n Σ x xᵀ over the n real (non-padding) calibration tokens a linear layer sees."""

    def __init__(self, in_features: int):
        self.H = torch.zeros(in_features, in_features, dtype=torch.float64)
        self.n = 0

    def add(self, x: torch.Tensor) -> None:  # x: tokens x in_features
        x = x.detach().double()
        self.H += 2 * x.T @ x
        self.n += x.shape[0]

    def hessian(self) -> torch.Tensor:
        return self.H / max(self.n, 1)


# ---------------------------------------------------------------------------------------------
# A whole model, decoder layer by decoder layer (shared with awq.py)
# ---------------------------------------------------------------------------------------------

def calibration_batches(ctx: AttackContext, n: int, max_length: int, batch_size: int) -> tuple[list[dict], int]:
    """Padded batches of `n` retain items (prompt + answer, in the run's prompt format) sampled
    with the seed, and their count."""
    retain = list(ctx.task.retain)
    if not retain:
        raise AttackUnavailable(f"task {ctx.task.name!r}: no retain items to calibrate on")
    items = random.Random(ctx.seed).sample(retain, min(n, len(retain)))
    encoded = encode_items(ctx.tokenizer, items, max_length, ctx.prompt)
    pad = pad_id_of(ctx.tokenizer)
    return [collate([encoded[i] for i in idx], pad) for idx in batches(len(encoded), batch_size)], len(items)


class _Captured(Exception):
    pass


@dataclass
class _LayerInput:
    args: tuple
    kwargs: dict
    token_mask: torch.Tensor  # batch x seq, True on real tokens

    def call(self, layer: nn.Module) -> torch.Tensor:
        out = layer(*self.args, **self.kwargs)
        return out[0] if isinstance(out, tuple) else out

    def with_hidden(self, hidden: torch.Tensor) -> _LayerInput:
        if self.args:
            return _LayerInput((hidden, *self.args[1:]), self.kwargs, self.token_mask)
        return _LayerInput((), {**self.kwargs, "hidden_states": hidden}, self.token_mask)


def _first_layer_inputs(model: nn.Module, layers: nn.ModuleList, calib: list[dict]) -> list[_LayerInput]:
    """What the model passes to its first decoder layer (hidden states, masks, rotary
    embeddings), captured per batch by stopping the forward pass at that layer."""
    inputs: list[_LayerInput] = []
    mask: list[torch.Tensor] = []

    def grab(_module, args, kwargs):
        inputs.append(_LayerInput(args, kwargs, mask[0]))
        raise _Captured

    handle = layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        for batch in calib:
            mask[:] = [batch["attention_mask"].bool()]
            try:
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
    return inputs


def quantize_layer_by_layer(model: nn.Module, calib: list[dict], make_observer: Callable[[nn.Module], object],
                            quantize_layer: Callable[[int, dict[str, nn.Module], dict[str, object]], None],
                            inputs_from_quantized: bool) -> int:
    """Walk the decoder layers in order. For each: run the calibration inputs through it with a
    hook feeding each weight matrix's (nn.Linear / Conv1D, `obliviate.models.modules`) real-token
    inputs, (tokens, in_features), to `make_observer(module).add(x)`, then call
    `quantize_layer(index, modules, observers)` (which edits the weights in place). The next
    layer's inputs are this layer's outputs after quantization (GPTQ) or before it (AWQ).
    Returns the number of weight matrices quantized; none is an error (nothing was attacked)."""
    layers = decoder_layers(model)
    current: list[torch.Tensor] = []  # the token mask of the batch being run
    n_quantized = 0

    def hook(observer):
        # OPT flattens to (batch * seq, d) before fc1 / fc2: real_token_rows handles both layouts
        return lambda _module, args, _out: observer.add(real_token_rows(args[0], current[0]))

    with torch.no_grad():
        states = _first_layer_inputs(model, layers, calib)
        for index, layer in enumerate(layers):
            linears = dict(weight_matrices(layer))
            observers = {name: make_observer(m) for name, m in linears.items()}
            handles = [m.register_forward_hook(hook(observers[name])) for name, m in linears.items()]
            try:
                outputs = []
                for state in states:
                    current[:] = [state.token_mask]
                    outputs.append(state.call(layer))
            finally:
                for h in handles:
                    h.remove()
            quantize_layer(index, linears, observers)
            n_quantized += len(linears)
            if inputs_from_quantized:
                outputs = [state.call(layer) for state in states]
            states = [state.with_hidden(out) for state, out in zip(states, outputs, strict=True)]
    if not n_quantized:
        raise ValueError(f"{type(model).__name__}: no weight matrix (nn.Linear or Conv1D) in its decoder layers")
    return n_quantized


@register("gptq4", "GPTQ 4-bit, group 128, damp 0.01, calibrated on retain items (Frantar et al. 2023)",
          family="quantization")
def gptq4(model, ctx: AttackContext) -> Attacked:
    p = resolve_params(GPTQParams, ctx, "gptq4")
    qmodel = copy.deepcopy(model).eval()
    calib, n_calibration = calibration_batches(ctx, p.n_calibration, p.max_length, p.batch_size)
    groups: dict[str, int] = {}
    fallback: list[str] = []

    def quantize_layer(index, linears, observers):
        for name, linear in linears.items():
            w = matrix(linear)  # (out, in), a view for GPT-2's Conv1D
            g = resolve_group_size(w.shape[1], p.group_size)
            groups[str(w.shape[1])] = g
            result = gptq_quantize(w, observers[name].hessian(), p.bits, g, p.damp, p.act_order)
            w.copy_(result.weight)
            if result.rtn_fallback:
                fallback.append(f"layers.{index}.{name}")

    n_layers = quantize_layer_by_layer(qmodel, calib, lambda m: HessianAccumulator(in_features(m)), quantize_layer,
                                       inputs_from_quantized=True)
    return Attacked(model=qmodel, info={
        "bits": p.bits, "n_layers": n_layers, "group_size": p.group_size, "group_size_by_in_features": groups,
        "damp": p.damp,
        "symmetric": True, "grid": f"RTN's: scale max|w|/{2 ** (p.bits - 1) - 1}, codes ±{2 ** (p.bits - 1) - 1}",
        "act_order": p.act_order, "n_calibration": n_calibration, "calibration": "retain",
        "rtn_fallback": fallback, "fake_quant": True, "backend": BACKEND,
    })
