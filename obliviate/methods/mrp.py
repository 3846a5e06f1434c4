"""MRP: Metamorphosis Representation Projection (Wu, Wei, Chen, Dong & Sun 2025, "Reliable
Unlearning Harmful Information in LLMs with Metamorphosis Representation Projection",
arXiv:2508.15449).

At chosen decoder layers the residual stream loses a learned k-dimensional subspace:

    h_l <- h_l - (h_l Q^T) Q,      Q = orth([W_old; W])    (k_total x d, orthonormal rows, by QR)

(`obliviate.models.projection`: a module on the layer plus a forward hook on its output).
A projection cannot be undone by the layers above it: whatever the model learns later, the
removed component of h_l is gone, which is the paper's argument for robustness to relearning.
Only W trains (every model weight is frozen and stays bit-identical), with

    L = -nll(forget) + alpha * nll(retain)        alpha = 1.2 (SPEC section 2)

`finalize` folds the learned rows into the projection's fixed basis, so the model leaves the
loop with its projection (buffers `...layers.<l>.residual_projection.fixed`, k_total x d);
`save_model` writes them to `projection.safetensors` beside the weights and `load_model`
attaches them again. Continual unlearning: running `mrp` on a model that already carries a
projection keeps the old basis fixed (W_old) and learns k new rows, Q spanning both, so the
removed rank grows by k per run.

Initialisation of W (the SPEC's "top-k principal directions of retain states with the
forget-state span projected out", read against the method's goal). Taken literally that
sentence would remove directions that carry *retain* variance and none of the forget states:
the opposite of unlearning, and with a forget set of more tokens than d the forget states
span the whole space, so nothing would be left to take. We read it with the roles the goal
requires -- a subspace that carries forget information and as little retain information as
possible -- and compute, from the hidden states at layer l (layer output, with any existing
projection applied), at the positions that predict answer tokens (position t-1 for every
answer token t: where the model must produce the fact; padding and the prompt's other
positions are left out):

    C_r = sum h h^T over retain states,  C_f = the same over forget states   (uncentred: the
          projection removes the mean component too, so energy, not variance, is what counts)
    U_r = the top eigenvectors of C_r holding `retain_energy` [0.9] of its trace (the retain
          principal subspace), capped so that k directions remain outside it and W_old
    P   = I - projector onto span(U_r, W_old)
    W   = the top-k eigenvectors of P C_f P (rows): the forget states' principal directions
          with the retain span (and the already-removed one) projected out.

So W starts orthogonal to what the retain set mostly uses, where the forget states still
have energy; training then moves it where removing it costs the forget answers most and the
retain answers least.

Layers: `layers=None` is the middle layer, `(n_layers - 1) // 2` (15 of 32, 5 of 12, 0 of the
2-layer test models). The paper inserts the projections in the middle of the network (after
MLP blocks, i.e. on the residual stream); one middle layer is the choice that works for the
small models here (the representation is formed by then and every later layer reads it).

Optimiser (deviation): the paper and SPEC train W with SGD at lr 2e-4; the one loop builds
AdamW for every method at `UnlearnConfig.lr`, and no method can choose its optimiser. AdamW
moves each entry of W by about lr per step whatever the gradient's scale, so with unit-norm
rows (entries ~ 1/sqrt(d)) a step turns a row by about lr * sqrt(d): suggested lr 1e-3 for the
tiny models (d = 64) and 1e-4 for 7B models (d = 4096). The loop's weight decay only rescales
W, and Q (by QR) does not depend on the scale of W's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.data.collate import collate, encode_items, pad_id_of
from obliviate.methods import register
from obliviate.methods._losses import MODEL_KEYS, nll_mean
from obliviate.models import projection as proj
from obliviate.models.modules import decoder_layers


@dataclass
class MRPParams:
    k: int = 2  # rank added per run (per layer)
    layers: list[int] | int | None = None  # None: the middle layer, (n_layers - 1) // 2
    alpha: float = 1.2  # weight of the retain NLL
    retain_energy: float = 0.9  # share of the retain states' energy whose subspace W starts outside of
    init_items: int = 512  # at most this many items of each set for the initialisation


def resolve_layers(layers: list[int] | int | None, n_layers: int) -> list[int]:
    if layers is None:
        return [(n_layers - 1) // 2]
    chosen = [layers] if isinstance(layers, int) else list(layers)
    if not chosen:
        raise ValueError("mrp: `layers` is empty; give at least one decoder layer (or None)")
    bad = [i for i in chosen if not isinstance(i, int) or not 0 <= i < n_layers]
    if bad:
        raise ValueError(f"mrp: layer(s) {bad} out of range; the model has layers 0..{n_layers - 1}")
    return sorted(set(chosen))


def predicting_positions(labels: torch.Tensor) -> torch.Tensor:
    """(B, T) mask of the positions whose logits predict an answer token (t-1 for answer token t)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != -100
    return mask


@torch.no_grad()
def second_moments(model, batches, layers: list[int]) -> dict[int, torch.Tensor]:
    """sum h h^T (d x d, fp64) over the predicting positions of every batch, at each layer's output."""
    blocks = proj.decoder_layers(model)
    d = model.config.hidden_size
    device = next(model.parameters()).device
    moments = {i: torch.zeros(d, d, dtype=torch.float64, device=device) for i in layers}
    captured: dict[int, torch.Tensor] = {}

    def capture(i):
        def hook(module, args, output):
            captured[i] = output[0] if isinstance(output, tuple) else output
        return hook

    handles = [blocks[i].register_forward_hook(capture(i)) for i in layers]  # after any projection hook
    try:
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            model(**{k: batch[k] for k in MODEL_KEYS})
            mask = predicting_positions(batch["labels"])
            for i in layers:
                h = captured[i][mask].double()
                moments[i] += h.T @ h
    finally:
        for handle in handles:
            handle.remove()
    return moments


def top_eigvecs(matrix: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n largest eigenvalues of a symmetric matrix and their eigenvectors as rows (n x d)."""
    values, vectors = torch.linalg.eigh(matrix)
    order = torch.argsort(values, descending=True)[:n]
    return values[order], vectors[:, order].T


def retain_subspace(c_retain: torch.Tensor, energy: float, max_rank: int) -> torch.Tensor:
    """Rows spanning the top eigenvectors of C_r that hold `energy` of its trace (at most max_rank)."""
    d = c_retain.shape[0]
    if energy <= 0 or max_rank <= 0:
        return c_retain.new_zeros(0, d)
    values, vectors = top_eigvecs(c_retain, d)
    values = values.clamp_min(0)
    total = float(values.sum())
    if total <= 0:
        return c_retain.new_zeros(0, d)
    share = torch.cumsum(values, 0) / total
    rank = int((share < energy - 1e-12).sum()) + 1
    return vectors[:min(rank, max_rank)]


def init_directions(c_forget: torch.Tensor, c_retain: torch.Tensor, k: int, energy: float,
                    removed: torch.Tensor | None = None) -> torch.Tensor:
    """W0 (k x d, orthonormal rows): the top-k principal directions of the forget states after
    projecting out the retain principal subspace and the already-removed rows `removed`."""
    d = c_forget.shape[0]
    c_forget, c_retain = c_forget.double(), c_retain.double()
    removed = c_forget.new_zeros(0, d) if removed is None else removed.double().to(c_forget.device)
    free = d - removed.shape[0]
    if k > free:
        raise ValueError(f"mrp: cannot remove {k} more directions; {removed.shape[0]} of {d} are removed already")
    protect = torch.cat([removed, retain_subspace(c_retain, energy, free - k)])
    if protect.shape[0]:
        q, _ = torch.linalg.qr(protect.T)
        complement = torch.eye(d, dtype=torch.float64, device=c_forget.device) - q @ q.T
    else:
        complement = torch.eye(d, dtype=torch.float64, device=c_forget.device)
    projected = complement @ c_forget @ complement
    # a tiny multiple of the complement breaks ties in its favour: with forget states that have no
    # energy left outside the protected span, W still starts outside it
    eps = 1e-9 * max(float(torch.trace(c_forget)), 1.0) / d
    _, rows = top_eigvecs(projected + eps * complement, k)
    return rows.float()


def _batches(items, ctx):
    tokenizer, cfg = getattr(ctx, "tokenizer", None), ctx.config
    if tokenizer is None:
        raise RuntimeError("mrp: the initialisation needs the tokenizer in ctx.tokenizer "
                           "(obliviate.unlearn.unlearn sets it)")
    encoded = encode_items(tokenizer, items[:ctx.params.init_items], cfg.max_length, cfg.prompt)
    pad = pad_id_of(tokenizer)
    for start in range(0, len(encoded), cfg.batch_size):
        yield collate(encoded[start:start + cfg.batch_size], pad)


def setup(model, task, ctx) -> None:
    p = ctx.params
    if p.k < 1:
        raise ValueError(f"mrp: k must be at least 1, got {p.k}")
    n_layers = len(decoder_layers(model))  # a model without is a one-line error naming the attribute to set
    layers = resolve_layers(p.layers, n_layers)
    ctx.state["mrp_requires_grad"] = {name: w.requires_grad for name, w in model.named_parameters()}
    model.requires_grad_(False)
    was_training = model.training
    model.eval()
    c_forget = second_moments(model, _batches(task.forget, ctx), layers)
    c_retain = second_moments(model, _batches(task.retain, ctx), layers)
    model.train(was_training)
    existing = proj.projections(model)
    modules = {}
    for i in layers:
        old = existing[i].basis().detach() if i in existing and existing[i].rank else None
        w0 = init_directions(c_forget[i], c_retain[i], p.k, p.retain_energy, old)
        modules[i] = proj.attach(model, i, proj.ResidualProjection(fixed=old, weight=w0,
                                                                   hidden_size=model.config.hidden_size))
    ctx.state["mrp_layers"] = layers
    ctx.state["mrp_modules"] = modules


def finalize(model, ctx) -> None:
    for module in ctx.state.get("mrp_modules", {}).values():
        module.freeze()
    flags = ctx.state.pop("mrp_requires_grad", {})
    for name, w in model.named_parameters():
        if name in flags:
            w.requires_grad_(flags[name])


@register("mrp", MRPParams, "Project a learned forget subspace out of the residual stream "
                            "(MRP, Wu et al. 2025)", setup=setup, finalize=finalize)
def loss(model, forget, retain, ctx):
    value = -nll_mean(model, forget)
    if retain is not None and ctx.params.alpha != 0:
        value = value + ctx.params.alpha * nll_mean(model, retain)
    return value
