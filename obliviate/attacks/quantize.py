"""Weight-only quantization attacks: does rounding the weights bring the forgotten facts back?

Zhang et al. 2025, "Catastrophic Failure of LLM Unlearning via Quantization" (ICLR 2025):
unlearning with a small learning rate moves each weight by far less than one quantization
step, so the unlearned model U and the target T round to (almost) the same integer codes, and
4-bit U answers like T again (forget-set knowledge retained: 21% in full precision, 83% at
4 bits). The attacks here quantize every weight matrix of the decoder (attention and MLP
projections: `nn.Linear`, and GPT-2's transposed `Conv1D`, found by
`obliviate.models.modules.weight_matrices`); an attack that finds none is unavailable, never a
score. The LM head and the embeddings stay in full precision unless
`ctx.params["include_lm_head"]` (an LM head tied to the input embedding then changes both).

- `rtn8`, `rtn4`, `rtn3`, `rtn4_asym`, `rtn4_channel`: round-to-nearest (RTN) fake
  quantization, `fake_quantize` below: per output row, in groups of `group_size` consecutive
  input columns (the grouping of GPTQ/AWQ checkpoints), dequantized back to the weight's dtype.
- `bnb_int8`, `bnb_fp4`, `bnb_nf4`: the layers are replaced by bitsandbytes' own modules,
  LLM.int8() (Dettmers et al. 2022, "LLM.int8(): 8-bit Matrix Multiplication for Transformers
  at Scale": vector-wise absmax int8 with fp16 outlier columns above threshold 6.0) and QLoRA's
  4-bit FP4 / NormalFloat4 (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized
  LLMs", blockwise absmax, block 64).
- `noise_int4` (family "noise"): the control for "any perturbation of this size": Gaussian
  noise whose std is RTN int4's rounding-error std, step / sqrt(12) (step = the symmetric int4
  group-128 scale of each group).

The diagnostics at the end show the paper's mechanism: the fraction of weights whose integer
code differs between T and U (`quantized_change_fraction`), how far U moved
(`relative_weight_change`) and by how many quantization steps (`mean_step_ratio`).

Integer ranges (RTN). Symmetric b-bit: scale = max|w| / (2^(b-1) - 1), q = clamp(round(w /
scale), -(2^(b-1) - 1), 2^(b-1) - 1), w' = q * scale: the restricted "absmax" range of
LLM.int8 (round(127 / absmax * x), eq. 1 there) and of optimum-quanto's qint8, so int4 uses the
15 codes -7..7 and int8 -127..127 (-2^(b-1) is never produced: |w| / scale <= 2^(b-1) - 1).
`gptq4` uses this same grid (`symmetric_scale`, `symmetric_codes`), so rtn4 and gptq4 differ
only by GPTQ's error compensation. (GPTQ's reference code's symmetric mode is scale = 2 max|w| /
(2^b - 1) over the codes -8..7, a step 14/15 of ours for int4; we keep one grid for both.) Asymmetric b-bit: scale = (max -
min) / (2^b - 1), zero = round(-min / scale), q = clamp(round(w / scale) + zero, 0, 2^b - 1),
w' = (q - zero) * scale.
The zero point is *not* clamped into the code range (fake quantization has no uint4 to store
it in), so a group of one sign still spans all 2^b codes with its min at code 0; where min <
0 < max this is exactly optimum-quanto's MaxOptimizer with zeropoint=True. `torch.round`
rounds halves to even. A group that is all zero stays zero (scale guarded to 1).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from obliviate.attacks import AttackContext, Attacked, AttackUnavailable, check_params, register
from obliviate.models.modules import in_features, matrix, out_features, weight_matrices

_INSTALL_QUANT = "pip install 'obliviate[quant]'"


# ---------------------------------------------------------------------------------------------
# Round-to-nearest fake quantization
# ---------------------------------------------------------------------------------------------

def resolve_group_size(in_features: int, group_size: int | None) -> int:
    """The group size actually used: `group_size` when it divides `in_features`, else the
    largest divisor of `in_features` below it; None or 0 means per-channel (the whole row)."""
    if not group_size or group_size >= in_features:
        return in_features
    return max(d for d in range(1, group_size + 1) if in_features % d == 0)


def symmetric_scale(g: Tensor, bits: int) -> Tensor:
    """The symmetric b-bit scale of each group along the last dimension (kept as size 1):
    max|w| / (2^(b-1) - 1); an all-zero group gets 1 (its codes are all 0)."""
    scale = g.abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def symmetric_codes(w: Tensor, scale: Tensor, bits: int) -> Tensor:
    """round(w / scale) clamped to -(2^(b-1) - 1)..2^(b-1) - 1: the one symmetric grid of every
    RTN attack and of `gptq4` (whose error updates can push a weight past the group's max|w|;
    it then clamps to the largest code, as in GPTQ's reference quantizer)."""
    qmax = 2 ** (bits - 1) - 1
    return torch.clamp(torch.round(w / scale), -qmax, qmax)


def quantize_codes(w: Tensor, bits: int, group_size: int | None = 128,
                   symmetric: bool = True) -> tuple[Tensor, Tensor, Tensor, int]:
    """RTN integer codes of a 2-D weight (out, in), computed in fp32.

    Returns `(q, scale, zero, group_size_used)`: `q` of shape (out, n_groups, group) holds
    integer values (as fp32), `scale` and `zero` of shape (out, n_groups, 1); the dequantized
    weight is `(q - zero) * scale`. Conventions in the module docstring.
    """
    if w.ndim != 2:
        raise ValueError(f"quantize_codes expects a 2-D (out_features, in_features) weight, got {tuple(w.shape)}")
    if bits < 2:
        raise ValueError(f"bits must be >= 2, got {bits}")
    out_features, in_features = w.shape
    gs = resolve_group_size(in_features, group_size)
    g = w.detach().float().reshape(out_features, in_features // gs, gs)
    if symmetric:
        scale = symmetric_scale(g, bits)
        zero = torch.zeros_like(scale)
        q = symmetric_codes(g, scale, bits)
    else:
        qmax = 2**bits - 1
        lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
        scale = (hi - lo) / qmax
        # A constant group (hi == lo) has no range: scale |lo| puts lo exactly on the grid
        # (zero = -sign(lo), q = 0); an all-zero group gets scale 1 and stays zero.
        flat = torch.where(lo != 0, lo.abs(), torch.ones_like(lo))
        scale = torch.where(scale > 0, scale, flat)
        zero = torch.round(-lo / scale)
        q = torch.clamp(torch.round(g / scale) + zero, 0, qmax)
    return q, scale, zero, gs


def fake_quantize(w: Tensor, bits: int, group_size: int | None = 128,
                  symmetric: bool = True) -> tuple[Tensor, int]:
    """Quantize-dequantize `w` (out, in) with b-bit RTN; returns `(w', group_size_used)`.

    Groups are `group_size` consecutive input columns of one output row (None or 0: the whole
    row, i.e. per-channel); when `group_size` does not divide in_features the largest divisor
    below it is used and returned. Computed in fp32, returned in `w`'s dtype.
    """
    q, scale, zero, gs = quantize_codes(w, bits, group_size, symmetric)
    return ((q - zero) * scale).reshape(w.shape).to(w.dtype), gs


def int_step(w: Tensor, bits: int = 4, group_size: int | None = 128) -> tuple[Tensor, int]:
    """The symmetric b-bit quantization step (the per-group scale) broadcast to `w`'s shape,
    fp32; all-zero groups get step 0. Returns `(step, group_size_used)`."""
    out_features, in_features = w.shape
    gs = resolve_group_size(in_features, group_size)
    g = w.detach().float().reshape(out_features, in_features // gs, gs)
    step = g.abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1)
    return step.expand_as(g).reshape(w.shape), gs


# ---------------------------------------------------------------------------------------------
# Which layers: every weight matrix of the decoder, the LM head only on request
# ---------------------------------------------------------------------------------------------

def quantized_layers(model: nn.Module, include_lm_head: bool, attack: str) -> list[tuple[str, nn.Module]]:
    """`weight_matrices(model)`, or `AttackUnavailable` when there is none: an attack that
    quantized nothing would report the unattacked model's score as the attacked one's."""
    layers = list(weight_matrices(model, include_lm_head))
    if not layers:
        raise AttackUnavailable(f"{attack}: {type(model).__name__} has no weight matrix (nn.Linear or Conv1D) "
                                f"outside the LM head to quantize")
    return layers


def _tied_head(model: nn.Module) -> bool:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return head is not None and emb is not None and head.weight is emb.weight


def _group_info(requested: int | None, used: dict[str, int]) -> dict:
    """Record the group size per layer compactly: the distinct sizes and the layers that fell back."""
    fallbacks = {} if not requested else {n: gs for n, gs in used.items() if gs != requested}
    return {"group_size": requested, "group_size_used": sorted(set(used.values())),
            "group_size_fallbacks": fallbacks}


# ---------------------------------------------------------------------------------------------
# RTN attacks
# ---------------------------------------------------------------------------------------------

def rtn_attack(model: nn.Module, ctx: AttackContext, bits: int, group_size: int | None,
               symmetric: bool, name: str) -> Attacked:
    """Fake-quantize a deep copy of `model` with b-bit RTN (the input model is not modified)."""
    check_params(ctx, name, {"include_lm_head"})
    include_head = bool(ctx.params.get("include_lm_head", False))
    attacked = copy.deepcopy(model)
    used: dict[str, int] = {}
    with torch.no_grad():
        for layer, module in quantized_layers(attacked, include_head, name):
            w = matrix(module)  # (out, in) whatever the module's layout
            w.copy_(fake_quantize(w, bits, group_size, symmetric)[0])
            used[layer] = resolve_group_size(w.shape[1], group_size)
    info = {"method": "rtn", "bits": bits, "symmetric": symmetric, **_group_info(group_size, used),
            "n_layers": len(used), "include_lm_head": include_head}
    if include_head and _tied_head(attacked):
        info["tied_lm_head"] = True  # the input embedding shares the quantized weight
    return Attacked(model=attacked, info=info)


@register("rtn8", "RTN int8 weight-only, symmetric, group 128", family="quantization")
def rtn8(model, ctx: AttackContext) -> Attacked:
    return rtn_attack(model, ctx, 8, 128, True, "rtn8")


@register("rtn4", "RTN int4 weight-only, symmetric, group 128", family="quantization")
def rtn4(model, ctx: AttackContext) -> Attacked:
    return rtn_attack(model, ctx, 4, 128, True, "rtn4")


@register("rtn3", "RTN int3 weight-only, symmetric, group 128", family="quantization")
def rtn3(model, ctx: AttackContext) -> Attacked:
    return rtn_attack(model, ctx, 3, 128, True, "rtn3")


@register("rtn4_asym", "RTN int4 weight-only, asymmetric (zero point), group 128", family="quantization")
def rtn4_asym(model, ctx: AttackContext) -> Attacked:
    return rtn_attack(model, ctx, 4, 128, False, "rtn4_asym")


@register("rtn4_channel", "RTN int4 weight-only, symmetric, per output channel", family="quantization")
def rtn4_channel(model, ctx: AttackContext) -> Attacked:
    return rtn_attack(model, ctx, 4, None, True, "rtn4_channel")


# ---------------------------------------------------------------------------------------------
# bitsandbytes: LLM.int8, FP4, NF4
# ---------------------------------------------------------------------------------------------

BNB_BLOCKSIZE = 64


def _import_bitsandbytes(attack: str):
    # On CPUs with AVX512-BF16, bitsandbytes 0.50 logs a warning at import when the optional
    # `kernels` package is missing; that kernel serves only the bf16 path disabled below.
    log = logging.getLogger("bitsandbytes")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        import bitsandbytes as bnb
    except Exception as e:  # ImportError, or a broken native library
        raise AttackUnavailable(f"{attack}: bitsandbytes is not usable here ({type(e).__name__}: {e}); "
                                f"{_INSTALL_QUANT}") from e
    finally:
        log.setLevel(level)
    return bnb


class _DropInt8CastWarning(logging.Filter):
    """LLM.int8 casts activations to fp16 by design (the int8 matmul quantizes fp16 rows);
    bitsandbytes 0.50 logs that at every forward of every layer. Recorded once in `info`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "inputs will be cast" not in record.getMessage()


def _silence_int8_cast_warning() -> None:
    log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastWarning) for f in log.filters):
        log.addFilter(_DropInt8CastWarning())


def _check_4bit_shapes(layers: list[tuple[str, nn.Module]], attack: str, version: str) -> None:
    """bitsandbytes 0.50.2's CPU 4-bit dequantization kernel is silently wrong when a row of
    the weight is not a whole number of 64-blocks (seen with in_features 32, 96, 160: most
    weights dequantized to the wrong values), so such a layer makes the attack unavailable.
    (Its bf16 repacked CPU path also needs out_features % 32 == 0; that path is switched off.)"""
    for layer, module in layers:
        if module.weight.device.type == "cpu" and in_features(module) % BNB_BLOCKSIZE:
            raise AttackUnavailable(
                f"{attack}: layer {layer} has in_features {in_features(module)}, not a multiple of "
                f"{BNB_BLOCKSIZE}; bitsandbytes {version} 4-bit on CPU needs that (give the model hidden and "
                f"intermediate sizes that are multiples of 128)")


def _bnb_linear(bnb, module: nn.Module, mode: str, double_quant: bool) -> nn.Module:
    """A bitsandbytes linear computing what `module` (nn.Linear or Conv1D) computes."""
    device = module.weight.device
    weight = matrix(module).detach().contiguous().clone()  # (out, in): a Conv1D's weight transposed
    n_in, n_out = in_features(module), out_features(module)
    if mode == "int8":
        new = bnb.nn.Linear8bitLt(n_in, n_out, bias=module.bias is not None,
                                  has_fp16_weights=False, threshold=6.0, device="meta")
        # Int8Params quantizes (row-wise absmax, LLM.int8 eq. 1) when moved to a device.
        new.weight = bnb.nn.Int8Params(weight.cpu(), requires_grad=False, has_fp16_weights=False)
    else:
        compute = torch.float32 if device.type == "cpu" else module.weight.dtype
        new = bnb.nn.Linear4bit(n_in, n_out, bias=module.bias is not None,
                                compute_dtype=compute, compress_statistics=double_quant, quant_type=mode,
                                device="meta")
        new.weight = bnb.nn.Params4bit(weight.cpu(), requires_grad=False, quant_type=mode,
                                       blocksize=BNB_BLOCKSIZE, compress_statistics=double_quant, module=new)
        # On AVX512-BF16 CPUs bitsandbytes repacks the weight at eval time and multiplies in
        # bf16, ignoring compute_dtype; off, the layer computes x @ dequantize(W) in fp32, the same
        # on every CPU, and any out_features works.
        new.support_avx512bf16_for_cpu = False
    if module.bias is not None:
        new.bias = nn.Parameter(module.bias.detach().clone(), requires_grad=False)
    new = new.to(device)
    new.train(module.training)
    return new


def bnb_attack(model: nn.Module, ctx: AttackContext, mode: str, name: str) -> Attacked:
    """Replace the decoder's linears of a deep copy of `model` by bitsandbytes modules."""
    check_params(ctx, name, {"include_lm_head", "double_quant"})
    include_head = bool(ctx.params.get("include_lm_head", False))
    double_quant = bool(ctx.params.get("double_quant", False))  # transformers' default: off
    bnb = _import_bitsandbytes(name)
    version = getattr(bnb, "__version__", "?")
    layers = quantized_layers(model, include_head, name)
    if mode == "int8":
        _silence_int8_cast_warning()
    else:
        _check_4bit_shapes(layers, name, version)
    attacked = copy.deepcopy(model)
    replaced = quantized_layers(attacked, include_head, name)
    try:
        for layer, module in replaced:
            parent, _, child = layer.rpartition(".")
            setattr(attacked.get_submodule(parent), child, _bnb_linear(bnb, module, mode, double_quant))
    except Exception as e:  # a kernel this build lacks on this machine
        raise AttackUnavailable(f"{name}: bitsandbytes {version} failed on {layer} "
                                f"({type(e).__name__}: {e}); {_INSTALL_QUANT}") from e
    info = {"method": "bitsandbytes", "bitsandbytes": version, "bits": 8 if mode == "int8" else 4,
            "quant_type": mode, "n_layers": len(replaced), "include_lm_head": include_head}
    if mode == "int8":
        info |= {"threshold": 6.0, "symmetric": True, "group_size_used": "per output row",
                 "activations": "fp16, int8 per row; fp16 columns above the threshold"}
    else:
        info |= {"blocksize": BNB_BLOCKSIZE, "symmetric": True, "double_quant": double_quant,
                 "compute_dtype": "float32"}
    return Attacked(model=attacked, info=info)


@register("bnb_int8", "bitsandbytes LLM.int8 (threshold 6.0)", family="quantization")
def bnb_int8(model, ctx: AttackContext) -> Attacked:
    return bnb_attack(model, ctx, "int8", "bnb_int8")


@register("bnb_fp4", "bitsandbytes 4-bit FP4, block 64", family="quantization")
def bnb_fp4(model, ctx: AttackContext) -> Attacked:
    return bnb_attack(model, ctx, "fp4", "bnb_fp4")


@register("bnb_nf4", "bitsandbytes 4-bit NormalFloat4 (QLoRA), block 64", family="quantization")
def bnb_nf4(model, ctx: AttackContext) -> Attacked:
    return bnb_attack(model, ctx, "nf4", "bnb_nf4")


# ---------------------------------------------------------------------------------------------
# Noise control
# ---------------------------------------------------------------------------------------------

NOISE_STD_FACTOR = 12 ** -0.5  # RTN's rounding error is uniform on [-step/2, step/2]: std step/sqrt(12)


@register("noise_int4", "Gaussian weight noise with std = RTN int4's rounding-error std, step/sqrt(12) (control)",
          family="noise")
def noise_int4(model, ctx: AttackContext) -> Attacked:
    """W + N(0, s^2) per weight with s = step / sqrt(12), step the symmetric int4 group-128 scale
    of the weight's group: RTN's rounding error is uniform on [-step/2, step/2], so this noise has
    the std of int4 rounding but no pull back to the target's grid. If it recovers as much as
    rtn4, recovery is "any perturbation"; if not, it is the rounding (Zhang et al. 2025)."""
    check_params(ctx, "noise_int4", {"include_lm_head"})
    include_head = bool(ctx.params.get("include_lm_head", False))
    attacked = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(ctx.seed)
    used: dict[str, int] = {}
    with torch.no_grad():
        for layer, module in quantized_layers(attacked, include_head, "noise_int4"):
            w = matrix(module)
            step, used[layer] = int_step(w, 4, 128)
            noise = torch.randn(step.shape, generator=gen) * (step * NOISE_STD_FACTOR)
            w.add_(noise.to(w.device, w.dtype))
    info = {"method": "gaussian_noise", "std": "int4 symmetric group-128 step / sqrt(12) (RTN's rounding-error std)",
            "std_factor": NOISE_STD_FACTOR, "bits": 4, "symmetric": True,
            **_group_info(128, used), "n_layers": len(used), "include_lm_head": include_head, "seed": ctx.seed}
    return Attacked(model=attacked, info=info)


# ---------------------------------------------------------------------------------------------
# Diagnostics (the mechanism): how far did unlearning move the weights, in quantization steps?
# ---------------------------------------------------------------------------------------------

def _paired_weights(target: nn.Module, unlearned: nn.Module,
                    include_lm_head: bool) -> Iterator[tuple[Tensor, Tensor]]:
    other = dict(unlearned.named_modules())
    for name, module in weight_matrices(target, include_lm_head):
        peer = other.get(name)
        if peer is None or getattr(peer, "weight", None) is None or peer.weight.shape != module.weight.shape:
            raise ValueError(f"layer {name}: missing or shaped differently in the unlearned model")
        yield matrix(module).detach(), matrix(peer).detach().to(module.weight.device)


def quantized_change_fraction(target: nn.Module, unlearned: nn.Module, bits: int = 4,
                              group_size: int | None = 128, symmetric: bool = True,
                              include_lm_head: bool = False) -> float:
    """Fraction of the quantized layers' weights whose b-bit RTN integer code differs between
    the two models, each quantized with its own scales: the quantity behind Zhang et al.
    2025's observation that 4-bit U and T agree (a small fraction means U rounds back to T)."""
    changed = total = 0
    for wt, wu in _paired_weights(target, unlearned, include_lm_head):
        qt = quantize_codes(wt, bits, group_size, symmetric)[0]
        qu = quantize_codes(wu, bits, group_size, symmetric)[0]
        changed += int((qt != qu).sum())
        total += qt.numel()
    return changed / total if total else float("nan")  # no weight matrix: nothing was measured


def relative_weight_change(target: nn.Module, unlearned: nn.Module, include_lm_head: bool = False) -> float:
    """||W_U - W_T||_F / ||W_T||_F over all quantized layers together."""
    diff = norm = 0.0
    for wt, wu in _paired_weights(target, unlearned, include_lm_head):
        diff += float(((wu.float() - wt.float()) ** 2).sum())
        norm += float((wt.float() ** 2).sum())
    return (diff / norm) ** 0.5 if norm else float("nan")


def mean_step_ratio(target: nn.Module, unlearned: nn.Module, bits: int = 4, group_size: int | None = 128,
                    include_lm_head: bool = False) -> float:
    """Mean over weights of |W_U - W_T| / s, s the target's symmetric b-bit step of the weight's
    group (all-zero groups, which have no step, are left out). Well below 0.5 means most
    weights cannot cross a rounding boundary: why a small unlearning lr does not survive 4-bit."""
    ratio_sum = 0.0
    count = 0
    for wt, wu in _paired_weights(target, unlearned, include_lm_head):
        step = int_step(wt, bits, group_size)[0]
        keep = step > 0
        ratio_sum += float(((wu.float() - wt.float()).abs()[keep] / step[keep]).sum())
        count += int(keep.sum())
    return ratio_sum / count if count else float("nan")
