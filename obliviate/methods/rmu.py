"""RMU, Representation Misdirection for Unlearning (Li et al. 2024, "The WMDP Benchmark:
Measuring and Reducing Malicious Use With Unlearning", section 5, eq. 1-3).

    u ~ U[0,1)^d, u <- c * u / ||u||                     (drawn once per run, seeded)
    L_forget = mean_{t in forget answers} ||h_theta(x_f)_t - c*u||^2 / d
    L_retain = mean_{t in retain answers} ||h_theta(x_r)_t - h_ref(x_r)_t||^2 / d
    L = L_forget + alpha * L_retain

h is the output of decoder layer l (the paper's code hooks that layer's module; with
`output_hidden_states=True` that is hidden_states[l + 1], except for the last layer, whose
entry there has the final norm applied). h_ref comes from the frozen reference copy. Only
the MLP output projection's weight (per family: `obliviate.models.modules.mlp_out`)
of layers l-2..l is trained (the paper's `layer_ids=[5,6,7]`,
`param_ids=[6]` on Zephyr-7B); `setup` freezes everything else (a projection the caller froze
stays frozen) and `finalize` restores the caller's `requires_grad` flags.

Tokens: the positions where `labels != -100`, i.e. the hidden state *at* each answer token
(not the position predicting it); for raw-text items that is every token but BOS. The
paper's code takes every position of fixed-length text chunks; here the prompt template,
shared by forget and retain items, is left out of both terms.

Defaults: `layer=None` is `max(0, n_layers // 4 - 1)`: 7 for a 32-layer model (the
published layer) and 0 for a 2-layer test model (layer 0's output still passes through
the layers after it, and l-2..l clamps to layer 0 alone). c = 6.5 and alpha = 1200 are
the published Zephyr-7B values and are kept: on the tiny test models (hidden 64, per-token
hidden norms well below 1) they give a forget term of about c^2/d ~ 0.7 and no blow-up
(the loop also clips gradients at norm 1). SPEC asks to tune them per model: c should be a
few times the typical per-token norm of h at layer l (Zephyr's layer-7 norms are a few
units, hence 6.5), and alpha balances the two terms once the forget term has fallen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.methods import register
from obliviate.methods._losses import MODEL_KEYS
from obliviate.models.modules import decoder_layers, mlp_out


@dataclass
class RMUParams:
    layer: int | None = None  # None: max(0, n_layers // 4 - 1)
    c: float = 6.5  # steering coefficient: the norm of the control vector
    alpha: float = 1200.0  # weight of the retain (activation-matching) term


def resolve_layer(layer: int | None, n_layers: int) -> int:
    if layer is None:
        return max(0, n_layers // 4 - 1)
    if not 0 <= layer < n_layers:
        raise ValueError(f"rmu: layer {layer} is out of range; the model has layers 0..{n_layers - 1}")
    return layer


def control_vector(d: int, c: float, seed: int) -> torch.Tensor:
    """c * u / ||u||, u ~ U[0,1)^d, from a generator seeded with `seed` (the paper's torch.rand)."""
    u = torch.rand(d, generator=torch.Generator().manual_seed(seed))
    return c * u / u.norm()


def layer_output(model, batch: dict, layer: int) -> torch.Tensor:
    """The output of decoder layer `layer`, (B, T, d), captured by a forward hook."""
    captured = {}

    def hook(module, args, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        model(**{k: batch[k] for k in MODEL_KEYS})
    finally:
        handle.remove()
    return captured["h"]


def _mse_on_answers(h: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mean over answer positions of ||h_t - target_t||^2 / d, in fp32."""
    per_token = (h.float() - target.float()).pow(2).mean(-1)
    mask = labels != -100
    return (per_token * mask).sum() / mask.sum().clamp_min(1)


def setup(model, task, ctx) -> None:
    p = ctx.params
    layers = decoder_layers(model)
    layer = resolve_layer(p.layer, len(layers))
    seed = ctx.config.seed if ctx.config is not None else 0
    d = model.config.hidden_size
    ctx.state["rmu_layer"] = layer
    ctx.state["rmu_control"] = control_vector(d, p.c, seed).to(next(model.parameters()).device)
    trained = {id(mlp_out(layers[i], model.config).weight) for i in range(max(0, layer - 2), layer + 1)}
    ctx.state["rmu_requires_grad"] = {name: w.requires_grad for name, w in model.named_parameters()}
    for w in model.parameters():  # a weight the caller froze stays frozen
        w.requires_grad_(id(w) in trained and w.requires_grad)


def finalize(model, ctx) -> None:
    flags = ctx.state.pop("rmu_requires_grad", {})
    for name, w in model.named_parameters():
        if name in flags:
            w.requires_grad_(flags[name])


@register("rmu", RMUParams, "Steer forget activations at one layer to a random vector (RMU, WMDP)",
          ref_model=True, setup=setup, finalize=finalize)
def loss(model, forget, retain, ctx):
    p, layer = ctx.params, ctx.state["rmu_layer"]
    h_forget = layer_output(model, forget, layer)
    control = ctx.state["rmu_control"].expand_as(h_forget)
    value = _mse_on_answers(h_forget, control, forget["labels"])
    if retain is not None and p.alpha != 0:
        with torch.no_grad():
            h_ref = layer_output(ctx.ref_model, retain, layer)
        value = value + p.alpha * _mse_on_answers(layer_output(model, retain, layer), h_ref, retain["labels"])
    return value
