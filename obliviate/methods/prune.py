"""Selective pruning (Pochinkov & Schoots 2023, "Dissecting Language Models: Machine
Unlearning via Selective Pruning", section 3).

For every unit n (an MLP neuron: an input of the MLP output projection, act(gate(x)) * up(x) in
a gated MLP; an attention head dimension: an input of the attention output projection; both
found per family by `obliviate.models.modules.mlp_out` / `attn_out`):

    I_D(n) = mean_{t in answer tokens of D} |a_n(t)|
    Score(n) = I_forget(n) / (I_retain(n) + eps)

Each of `steps` rounds zeroes the top `frac` of the not-yet-pruned units of each target type
(the matching COLUMNS of the two projections, ranked over all layers together, as in the
paper), then scores again on the pruned model. k = max(1, round(frac * n_units)) per round
and type, where n_units counts every unit of that type in the model (Python's round: half to
even). SPEC uses the mean-|activation| importance for both types; the paper also defines
frequency- and standard-deviation-based scores.

Tokens: the answer tokens (`labels != -100`) of each item; for raw-text items that is every
token but BOS. The prompt template is shared by forget and retain items, so including it
would only pull both importances together.

No training: `trains=False`, all the work is done in `setup` with forward pre-hooks on the
inputs of the two projections. The pruned units are kept in `ctx.state["prune_pruned"]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.data.collate import DEFAULT_PROMPT, PromptFormat, collate, encode_items, pad_id_of
from obliviate.methods import register
from obliviate.methods._losses import MODEL_KEYS
from obliviate.models.modules import attn_out, decoder_layers, in_features, matrix, mlp_out, real_token_rows


@dataclass
class PruneParams:
    frac: float = 0.02  # fraction of each target type's units zeroed per step
    steps: int = 5
    eps: float = 1e-3
    targets: tuple[str, ...] = ("mlp", "attn")


def target_modules(model, target: str) -> list[torch.nn.Module]:
    """The weight matrix whose input columns are the units of `target`, one per decoder layer."""
    find = {"mlp": mlp_out, "attn": attn_out}.get(target)
    if find is not None:
        config = getattr(getattr(model, "module", model), "config", None)
        return [find(layer, config) for layer in decoder_layers(model)]
    raise ValueError(f"prune: unknown target {target!r} (choose 'mlp' or 'attn')")


def importance(acts_forget: torch.Tensor, acts_retain: torch.Tensor, eps: float) -> torch.Tensor:
    """Score = I_forget / (I_retain + eps), elementwise over units."""
    return acts_forget / (acts_retain + eps)


def select_top(scores: torch.Tensor, pruned: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices of the k highest scores among units not yet pruned (fewer if fewer are left)."""
    scores = scores.flatten().masked_fill(pruned.flatten(), float("-inf"))
    k = min(k, int((~pruned).sum()))
    return scores.topk(k).indices


def units_per_step(frac: float, n_units: int) -> int:
    return max(1, round(frac * n_units))


@torch.no_grad()
def mean_abs_inputs(model, batches: list[dict], modules: list[torch.nn.Module]) -> torch.Tensor:
    """I(n) = mean |input_n| of each module over the answer tokens of `batches`: (n_modules, n_in)."""
    sums = [torch.zeros(in_features(m), dtype=torch.float64) for m in modules]
    count = {"tokens": 0}
    mask = {}

    def hook_for(i):
        def hook(module, args):  # OPT's fc2 sees (batch * seq, n), the others (batch, seq, n)
            sums[i] += real_token_rows(args[0].detach(), mask["m"]).abs().double().sum(0).cpu()
        return hook

    handles = [m.register_forward_pre_hook(hook_for(i)) for i, m in enumerate(modules)]
    try:
        for batch in batches:
            mask["m"] = batch["labels"] != -100
            count["tokens"] += int(mask["m"].sum())
            model(**{k: batch[k] for k in MODEL_KEYS})
    finally:
        for h in handles:
            h.remove()
    return torch.stack(sums) / max(1, count["tokens"])


@torch.no_grad()
def selective_prune(model, forget: list[dict], retain: list[dict], params: PruneParams) -> dict[str, torch.Tensor]:
    """Prune `model` in place; returns the pruned-unit mask per target, (n_layers, n_in) each."""
    was_training = model.training
    model.eval()
    modules = {t: target_modules(model, t) for t in params.targets}
    pruned = {t: torch.zeros(len(ms), in_features(ms[0]), dtype=torch.bool) for t, ms in modules.items()}
    for _ in range(params.steps):
        for target, ms in modules.items():
            scores = importance(mean_abs_inputs(model, forget, ms), mean_abs_inputs(model, retain, ms), params.eps)
            chosen = select_top(scores, pruned[target], units_per_step(params.frac, pruned[target].numel()))
            pruned[target].view(-1)[chosen] = True
            width = pruned[target].size(1)
            for flat in chosen.tolist():
                matrix(ms[flat // width])[:, flat % width] = 0  # (out, in) view: GPT-2's Conv1D too
    model.train(was_training)
    return pruned


def batches_of(tokenizer, items, batch_size: int, max_length: int, device,
               fmt: PromptFormat = DEFAULT_PROMPT) -> list[dict]:
    enc, pad = encode_items(tokenizer, items, max_length, fmt), pad_id_of(tokenizer)
    return [{k: v.to(device) for k, v in collate(enc[i:i + batch_size], pad).items()}
            for i in range(0, len(enc), batch_size)]


def setup(model, task, ctx) -> None:
    tokenizer = getattr(ctx, "tokenizer", None)
    if tokenizer is None:
        raise RuntimeError("prune: the unlearning context carries no tokenizer (UnlearnContext.tokenizer)")
    cfg, device = ctx.config, next(model.parameters()).device
    forget = batches_of(tokenizer, task.forget, cfg.batch_size, cfg.max_length, device, cfg.prompt)
    retain = batches_of(tokenizer, task.retain, cfg.retain_batch_size or cfg.batch_size, cfg.max_length, device,
                        cfg.prompt)
    ctx.state["prune_pruned"] = selective_prune(model, forget, retain, ctx.params)


def _no_loss(model, forget, retain, ctx):
    raise RuntimeError("prune does not train: all its work is done in setup")


register("prune", PruneParams, "Zero the neurons most active on forget vs retain (selective pruning)",
         setup=setup, trains=False)(_no_loss)
