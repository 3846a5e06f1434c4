"""SURE: Saliency-based Unlearning with a large learning Rate (Zhang et al. 2025,
"Catastrophic Failure of LLM Unlearning via Quantization", ICLR 2025, section 5).

    s_r  = || grad_{W[r]} L_forget(theta_0) ||_2     for every row r of every decoder weight matrix W
    m_r  = 1[s_r >= percentile_threshold({s})]        (threshold 90: the top 10% of rows)
    W_{t+1}[r] = W_t[r] - lr * AdamW(g_t * m)[r]       for m_r = 1;   W_{t+1}[r] = W_0[r] otherwise

on top of any base loss L_base in {gd, ga, npo_gd, npo_kl} (L_forget is the base's forget term:
-CE for gd/ga, the NPO term for npo_*). Saliency is computed once, at the starting weights,
over the whole forget set. The paper trains the salient rows with a large lr (1e-4 for 7B
models) so that they move by more than one quantization step; the loop uses the user's lr.

Rows outside the mask get zero gradients (a hook, so clipping sees only the trained rows) and
are copied back from theta_0 after every optimizer step: AdamW's decoupled weight decay and
its moment estimates would otherwise still move them. Every other parameter (embeddings, LM
head, norms, biases) is frozen. The released code computes the mask but never applies it
(SPEC section 2); we follow the paper.

Cost: registered with the cached reference log-probs and a frozen reference copy of the model
so that every base runs (npo_kl needs the copy); with base gd the copy is unused memory.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from obliviate.data.collate import collate, encode_items, pad_id_of
from obliviate.methods import get_method, make_params, register
from obliviate.methods._losses import forward_logits, nll_mean_from_logits, npo_loss, token_logp
from obliviate.models.modules import is_transposed, matrix, to_native, weight_matrices

BASES = ("gd", "ga", "npo_gd", "npo_kl")


@dataclass
class SUREParams:
    base: str = "gd"
    threshold: float = 90.0  # percentile of the row saliencies, over all rows of all layers
    alpha: float = 1.0
    gamma: float = 1.0
    beta: float = 0.1


# --- shared with qau: the base method's loss and its forget term ---------------------------------

def base_params(p):
    """The base method's hyper-parameters, taken from `p` (SURE's or QAU's), keys it accepts only."""
    if p.base not in BASES:
        raise ValueError(f"unknown base method {p.base!r}; choose one of {', '.join(BASES)}")
    method = get_method(p.base)
    return make_params(method, {f.name: getattr(p, f.name) for f in fields(method.params) if hasattr(p, f.name)})


def base_loss(model, forget, retain, ctx) -> torch.Tensor:
    """L_base(theta): the base method's own loss, with its parameters swapped into ctx."""
    own = ctx.params
    ctx.params = ctx.state.get("base_params") or base_params(own)
    try:
        return get_method(own.base).loss(model, forget, retain, ctx)
    finally:
        ctx.params = own


def forget_loss_from_logits(base: str, logits: torch.Tensor, batch: dict, ctx, beta: float) -> torch.Tensor:
    """The base's forget term (unweighted by gamma): -CE_mean for gd/ga, L_NPO for npo_*."""
    if base in ("gd", "ga"):
        return -nll_mean_from_logits(logits, batch["labels"])
    logp, _ = token_logp(logits, batch["labels"])
    return npo_loss(logp.sum(-1), ctx.ref_logp(batch), beta)


# --- SURE -------------------------------------------------------------------------------------

def _forget_batches(task, ctx):
    tokenizer, cfg = getattr(ctx, "tokenizer", None), ctx.config
    if tokenizer is None:
        raise RuntimeError("sure: the saliency pass needs the tokenizer in ctx.tokenizer "
                           "(obliviate.unlearn.unlearn sets it)")
    encoded = encode_items(tokenizer, task.forget, cfg.max_length, cfg.prompt)
    pad = pad_id_of(tokenizer)
    for start in range(0, len(encoded), cfg.batch_size):
        idx = list(range(start, min(len(encoded), start + cfg.batch_size)))
        yield collate([encoded[i] for i in idx], pad, idx)


def row_saliency(model, task, ctx) -> dict[str, torch.Tensor]:
    """s_r = ||grad_{W[r]} L_forget(theta_0)||, the gradient summed over all forget batches;
    one (out_features,) fp32 vector per trainable decoder weight matrix (a row is an output unit,
    whatever the storage layout: GPT-2's Conv1D keeps W as (in, out)). Leaves no `.grad` behind."""
    p = ctx.params
    layers = {n: m for n, m in weight_matrices(model) if m.weight.requires_grad}  # the user's freezes hold
    if not layers:
        raise ValueError("sure: the model has no trainable weight matrix (nn.Linear or Conv1D) to score")
    weights = [m.weight for m in layers.values()]
    total = [torch.zeros_like(w, dtype=torch.float32) for w in weights]
    device = weights[0].device
    for batch in _forget_batches(task, ctx):
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = forget_loss_from_logits(p.base, forward_logits(model, batch), batch, ctx, p.beta)
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
        for acc, g in zip(total, grads, strict=True):
            if g is not None:
                acc += g.float()
    return {name: g.norm(dim=0 if is_transposed(layers[name]) else 1) for name, g in zip(layers, total, strict=True)}


def saliency_mask(saliency: dict[str, torch.Tensor], threshold: float) -> dict[str, torch.Tensor]:
    """Rows with s >= the `threshold` percentile of all rows (linear interpolation, numpy's default)."""
    cut = torch.quantile(torch.cat(list(saliency.values())), threshold / 100.0)
    return {name: s >= cut for name, s in saliency.items()}


def setup(model, task, ctx) -> None:
    p = ctx.params
    ctx.state["base_params"] = base_params(p)
    saliency = row_saliency(model, task, ctx)
    mask = saliency_mask(saliency, p.threshold)
    ctx.state.update(saliency=saliency, mask=mask, frozen_rows={}, hooks=[])
    layers = dict(weight_matrices(model))
    trained = {id(layers[n].weight) for n, m in mask.items() if m.any()}
    for param in model.parameters():
        if id(param) not in trained:
            param.requires_grad_(False)
    for name, m in mask.items():
        module = layers[name]
        if not m.any():
            continue
        keep = m.to(module.weight.device)
        w = matrix(module)  # (out, in): a view of a Conv1D's (in, out) weight, so row r is unit r
        ctx.state["frozen_rows"][name] = (w, ~keep, w.detach()[~keep].clone())
        row_mask = to_native(module, keep.unsqueeze(1))  # the gradient is in the stored layout
        ctx.state["hooks"].append(module.weight.register_hook(lambda g, k=row_mask: g * k.to(g.dtype)))


@torch.no_grad()
def after_step(model, ctx) -> None:
    for w, rows, start in ctx.state["frozen_rows"].values():
        w[rows] = start


def finalize(model, ctx) -> None:
    for handle in ctx.state.pop("hooks", []):
        handle.remove()


@register("sure", SUREParams, "Base loss on the top-saliency weight rows only (SURE, Zhang et al. 2025)",
          ref_logp=True, ref_model=True, setup=setup, after_step=after_step, finalize=finalize)
def loss(model, forget, retain, ctx):
    return base_loss(model, forget, retain, ctx)
