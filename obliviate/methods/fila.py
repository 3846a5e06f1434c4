"""FILA: Fisher-Initialization of Low-rank Adapters (Cha et al., "Towards Robust and
Parameter-Efficient Knowledge Unlearning for LLMs", ICLR 2025 — LoKU, section 4.2, eqs. 5-7).

LoRA (rank r = 8, lora_alpha = 2r, dropout 0) on every decoder weight matrix W (out x in; `nn.Linear`, or
GPT-2's `Conv1D`, whose stored (in x out) weight is used transposed), initialised so
that the adapter holds the weights that matter for the forget set and not for the retain set:

    F_f = sum_batches (dL_f/dW)^2 * n_tokens        L_f: mean token NLL of a forget batch   (eq. 5)
    F_r = the same over the retain set
    I   = (F_f / n_f) / (1e-5 + F_r / n_r)           n_f, n_r: answer tokens of each set     (eq. 6)
    w_i = sqrt(sum_j I_ij)                            one weight per output row i
    U, S, V = svd_lowrank(diag(w) W, q=r)                                                     (eq. 7)
    A = (V sqrt(S))^T                                 (r x in)
    B = diag(1 / (w + 1e-5)) U sqrt(S) / scaling      (out x r), scaling = lora_alpha / r
    W_base = W - scaling * B A                        the residual; W_base + scaling * B A = W

so the model's function is unchanged at step 0 and only A and B train, with the IHL loss (ihl.py)

    L = gamma * mean_t IHL_t (forget) + alpha * CE_mean(retain)

or, with `loss="gd"`, gradient difference: -gamma * CE_mean(forget) + alpha * CE_mean(retain).

`finalize` merges B A into W_base and puts the plain layers back (`merge=True`), so the
saved model is an ordinary checkpoint. With `merge=False` the LoRA layers stay on the model;
saving it then needs `peft` installed to load (its state dict has `base_layer`/`lora_A`/`lora_B`
keys).

The Fisher pass covers the whole forget and retain sets once, at the starting weights (the
paper's code does the same); it targets every decoder linear whatever the user froze, because
the method itself decides what trains: the adapters, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from obliviate.data.collate import collate, encode_items, pad_id_of
from obliviate.methods import register
from obliviate.methods._losses import forward_logits, nll_mean, nll_mean_from_logits, token_logp
from obliviate.methods.ihl import ihl_mean
from obliviate.models.modules import is_transposed, matrix, weight_matrices

LOSSES = ("ihl", "gd")
EPS = 1e-5  # the paper's: in the importance ratio's denominator and in 1 / (w + eps)


@dataclass
class FILAParams:
    rank: int = 8
    lora_alpha: float = 16.0
    alpha: float = 1.0
    gamma: float = 1.0
    loss: str = "ihl"
    merge: bool = True


def _peft():
    try:
        import peft
    except ImportError as err:  # an optional dependency: say which one
        raise ImportError("fila needs peft (a dependency of obliviate): pip install 'peft>=0.13'") from err
    return peft


def _batches(items, ctx):
    tokenizer, cfg = getattr(ctx, "tokenizer", None), ctx.config
    if tokenizer is None:
        raise RuntimeError("fila: the Fisher pass needs the tokenizer in ctx.tokenizer "
                           "(obliviate.unlearn.unlearn sets it)")
    encoded = encode_items(tokenizer, items, cfg.max_length, cfg.prompt)
    pad = pad_id_of(tokenizer)
    for start in range(0, len(encoded), cfg.batch_size):
        yield collate(encoded[start:start + cfg.batch_size], pad)


def fisher(model, weights: list[torch.Tensor], batches) -> list[torch.Tensor]:
    """sum_batches (dL/dW)^2 * n_tokens / n_total per weight (fp32), L the batch's mean token NLL."""
    total = [torch.zeros_like(w, dtype=torch.float32) for w in weights]
    n_total = 0
    device = weights[0].device
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = forward_logits(model, batch)
        n = int(token_logp(logits, batch["labels"])[1].sum())
        if n == 0:
            continue
        grads = torch.autograd.grad(nll_mean_from_logits(logits, batch["labels"]), weights, allow_unused=True)
        for acc, g in zip(total, grads, strict=True):
            if g is not None:
                acc += g.float().square() * n
        n_total += n
    return [f / max(n_total, 1) for f in total]


def importance(model, task, ctx, layers: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """I = (F_f / n_f) / (1e-5 + F_r / n_r) for each target layer's weight (eq. 6), as (out, in)."""
    weights = [m.weight for m in layers.values()]
    flags = [w.requires_grad for w in weights]
    for w in weights:
        w.requires_grad_(True)  # gradients are needed even where the user froze a layer
    try:
        f_forget = fisher(model, weights, _batches(task.forget, ctx))
        f_retain = fisher(model, weights, _batches(task.retain, ctx))
    finally:
        for w, flag in zip(weights, flags, strict=True):
            w.requires_grad_(flag)
    ratios = {n: ff / (EPS + fr) for n, ff, fr in zip(layers, f_forget, f_retain, strict=True)}
    return {n: r.T if is_transposed(layers[n]) else r for n, r in ratios.items()}  # Conv1D stores (in, out)


def fila_init(weight: torch.Tensor, imp: torch.Tensor, rank: int, scaling: float):
    """(A, B, W_base) of eq. 7, in fp32: W_base + scaling * B @ A == W."""
    w = weight.detach().float()
    row = imp.sum(dim=1).sqrt()
    # svd_lowrank draws a random projection from the global generator; a fixed private seed
    # makes the initialisation a function of (W, I) alone, whatever ran before.
    with torch.random.fork_rng(devices=[w.device] if w.device.type == "cuda" else []):
        torch.manual_seed(0)
        u, s, v = torch.svd_lowrank(row[:, None] * w, q=rank)
    a = (v * s.sqrt()).T
    b = (u * s.sqrt()) / (row[:, None] + EPS) / scaling
    return a, b, w - scaling * b @ a


def lora_layers(model):
    """(full name, parent, child name, LoRA layer) of every peft LoRA layer in `model`."""
    from peft.tuners.lora import LoraLayer

    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, LoraLayer):
                yield f"{name}.{child_name}" if name else child_name, module, child_name, child


def setup(model, task, ctx) -> None:
    p = ctx.params
    if p.loss not in LOSSES:
        raise ValueError(f"fila: unknown loss {p.loss!r}; choose one of {', '.join(LOSSES)}")
    peft = _peft()
    layers = dict(weight_matrices(model))
    if not layers:
        raise ValueError(f"fila: {type(model).__name__} has no weight matrix (nn.Linear or Conv1D) to adapt")
    imp = importance(model, task, ctx, layers)
    ctx.state["importance"] = imp

    ctx.state["requires_grad"] = {n: q.requires_grad for n, q in model.named_parameters()}
    model.requires_grad_(False)
    # peft's fan_in_fan_out: the base weight is stored (in, out), as GPT-2's Conv1D does
    transposed = all(is_transposed(m) for m in layers.values())
    config = peft.LoraConfig(r=p.rank, lora_alpha=p.lora_alpha, lora_dropout=0.0, target_modules=list(layers),
                             fan_in_fan_out=transposed)
    peft.inject_adapter_in_model(config, model)  # in place: each layer becomes a lora.Linear
    with torch.no_grad():
        for name, _, _, lora in lora_layers(model):
            w = matrix(lora.base_layer)  # (out, in); lora_A is (r, in) and lora_B (out, r) either way
            a, b, base = fila_init(w, imp[name], p.rank, lora.scaling["default"])
            lora.lora_A["default"].weight.copy_(a)
            lora.lora_B["default"].weight.copy_(b)
            w.copy_(base)
    for param_name, param in model.named_parameters():
        param.requires_grad_("lora_A" in param_name or "lora_B" in param_name)


@torch.no_grad()
def finalize(model, ctx) -> None:
    """Merge B A into the base weights and put the plain layer back (unless merge=False)."""
    if not ctx.params.merge:
        return
    for _, parent, name, lora in list(lora_layers(model)):
        lora.merge(safe_merge=True)
        setattr(parent, name, lora.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    for name, param in model.named_parameters():  # the flags the user had before setup
        param.requires_grad_(ctx.state.get("requires_grad", {}).get(name, param.requires_grad))


@register("fila", FILAParams, "IHL (or GD) on Fisher-initialised LoRA adapters (FILA, LoKU, Cha et al. 2025)",
          setup=setup, finalize=finalize)
def loss(model, forget, retain, ctx):
    p = ctx.params
    forget_term = ihl_mean(model, forget) if p.loss == "ihl" else -nll_mean(model, forget)
    value = p.gamma * forget_term
    if p.alpha:
        value = value + p.alpha * nll_mean(model, retain)
    return value
