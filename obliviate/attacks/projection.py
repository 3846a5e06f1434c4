"""Attacks on a model that carries residual-stream projections (`mrp`, see
`obliviate.models.projection`).

- `proj_remove` (control): drop the projections and probe the bare weights. MRP trains only the
  projection, so this is the target model again (recovery ~100%); for a model whose weights were
  also changed (e.g. fine-tuned after MRP) it shows what the weights alone still know. It
  measures how much the method relies on the projection staying in place, which an attacker
  with the weights can always remove.
- `proj_relearn`: the RTT relearning attack (Deeb & Roger 2024, `relearn.rtt`: the same split
  into T and held-out V by subject, the same fine-tuning and lr sweep) with the projection kept
  and only the decoder layers at or below the highest projected layer trained (the layers
  whose output passes through a projection; embeddings, later layers, final norm and LM head
  frozen). This is the attack the paper argues a projection resists: the layers feeding the
  projection can only relearn V by writing it outside the removed subspace.
  (The plain `rtt` attack also applies to a projected model: it fine-tunes every weight with
  the projection kept.)

Both are in the default attack set, so an `mrp` model is audited with them without asking;
on a model without a projection (every other method, the target, the oracle) they raise
`AttackUnavailable` at once, and the audit records "n/a" with the reason. The controls are
therefore n/a for these two attacks: their recovery scores are computed against the target
and the unlearned model only (no oracle gain is subtracted).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from obliviate.attacks import AttackContext, Attacked, AttackUnavailable, register, resolve_params
from obliviate.attacks.relearn import relearn_sweep, split_forget_by_subject
from obliviate.models import projection as proj


@dataclass
class ProjRemoveParams:
    pass


@dataclass
class ProjRelearnParams:
    lrs: Sequence[float] = (1e-4, 3e-4, 1e-3)  # as rtt's sweep (tiny models; ~1e-6..1e-5 for 7B)
    epochs: int = 3
    batch_size: int = 8
    train_fraction: float = 0.5
    weight_decay: float = 0.0


def _require_projection(model, attack: str) -> dict[int, proj.ResidualProjection]:
    found = {i: p for i, p in proj.projections(model).items() if p.rank}
    if not found:
        raise AttackUnavailable(f"{attack}: the model carries no residual-stream projection (only models "
                                "unlearned with mrp, or loaded with their projection.safetensors, do)")
    return found


def _ranks(found: dict[int, proj.ResidualProjection]) -> dict[int, int]:
    return {i: p.rank for i, p in sorted(found.items())}


@register("proj_remove", "control for projection methods (mrp): drop the residual-stream projection, "
                         "probe the bare weights", family="projection")
def proj_remove(model, ctx: AttackContext) -> Attacked:
    resolve_params(ProjRemoveParams, ctx, "proj_remove")
    found = _require_projection(model, "proj_remove")
    attacked = copy.deepcopy(model)
    proj.detach(attacked)
    return Attacked(model=attacked, info={"removed": _ranks(found)})


def freeze_above(model, top: int) -> list[str]:
    """Leave only decoder layers 0..top trainable (each weight the caller had trainable); returns
    the names of the trainable parameters."""
    trainable = {id(w) for layer in list(proj.decoder_layers(model))[:top + 1] for w in layer.parameters()}
    names = []
    for name, w in model.named_parameters():
        w.requires_grad_(id(w) in trainable and w.requires_grad)
        if w.requires_grad:
            names.append(name)
    return names


@register("proj_relearn", "RTT relearning (Deeb & Roger 2024) of the layers below an mrp projection, "
                          "projection kept; probe the held-out forget subjects", family="relearning")
def proj_relearn(model, ctx: AttackContext) -> Attacked:
    """For each lr of the sweep: a copy with the projection, decoder layers 0..max(projected)
    fine-tuned on T; the copy with the best K on V (the audit's measure) is kept (ties: lower
    V loss), as in `rtt`. The returned `forget_items` is V."""
    p = resolve_params(ProjRelearnParams, ctx, "proj_relearn")
    found = _require_projection(model, "proj_relearn")
    top = max(found)
    train, held_out = split_forget_by_subject(ctx.task.forget_eval, ctx.seed, p.train_fraction)
    trained: list[str] = []

    def prepare(attacked):
        flags = {name: w.requires_grad for name, w in attacked.named_parameters()}
        trained[:] = freeze_above(attacked, top)
        if not trained:
            raise ValueError(f"proj_relearn: no trainable weight in decoder layers 0..{top}")

        def undo() -> None:
            for name, w in attacked.named_parameters():
                w.requires_grad_(flags.get(name, w.requires_grad))
        return undo

    best, best_lr, per_lr, per_lr_nll, skipped = relearn_sweep(model, ctx, train, held_out, p, prepare)
    return Attacked(model=best, forget_items=held_out, info={
        "lr": best_lr, "per_lr": per_lr, "selected_by": ctx.knowledge, "per_lr_val_nll": per_lr_nll,
        "skipped_lrs": skipped,
        "n_train": len(train),
        "n_val": len(held_out), "epochs": p.epochs, "batch_size": p.batch_size,
        "projected_layers": _ranks(found), "trained_layers": list(range(top + 1)),
        "n_trained_tensors": len(trained)})
