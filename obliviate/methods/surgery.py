"""LLM Surgery (Veldanda et al. 2024, "LLM Surgery: Efficient Knowledge Unlearning and Editing in
Large Language Models", eq. 1): unlearn old facts and learn corrected ones in one run,

    L = -g_u * CE_mean(unlearn) + g_up * CE_mean(update) + g_r * KL(p_ref || p_theta) on retain

[g_u 1, g_up 1, g_r 1]; the KL is over retain answer tokens, to the frozen original model.

The update set: the corrected fact for each forget item. Built generically from the task: the
update item of forget item i is (question_i, perturbed_answers_i[0]). The world's perturbed
answers are the trained template with a wrong value from the same domain, so they serve as the
corrected fact ("born in Riarestaix" -> "born in Keshustil"). Forget items without perturbed
answers have no update item; a task with none at all cannot be used (DataError).
"""

from __future__ import annotations

from dataclasses import dataclass

from obliviate.data.collate import DEFAULT_PROMPT, collate, encode, pad_id_of
from obliviate.data.task import DataError
from obliviate.methods import register
from obliviate.methods._losses import kl_to_ref, nll_mean


@dataclass
class SurgeryParams:
    g_u: float = 1.0  # unlearn (forget) weight
    g_up: float = 1.0  # update (corrected facts) weight
    g_r: float = 1.0  # retain KL weight


def check_task(task) -> None:
    """Before any model is loaded: the update set comes from the forget items' `perturbed_answers`."""
    if not any(it.perturbed_answers for it in task.forget):
        raise DataError(f"task {task.name!r}: surgery needs the field \"perturbed_answers\" (corrected facts, "
                        "the update set) on the forget items, and no forget item has it")


def setup(model, task, ctx) -> None:
    """Encodes the update set once: ctx.state["surgery_update"][forget index] -> Encoded."""
    tokenizer = getattr(ctx, "tokenizer", None)
    if tokenizer is None:
        raise RuntimeError("surgery: the unlearning context carries no tokenizer to encode the update set")
    check_task(task)
    max_length = ctx.config.max_length if ctx.config is not None else 512
    fmt = ctx.config.prompt if ctx.config is not None else DEFAULT_PROMPT
    update = {i: encode(tokenizer, it.question, it.perturbed_answers[0], max_length, fmt)
              for i, it in enumerate(task.forget) if it.perturbed_answers}
    ctx.state["surgery_update"] = update
    ctx.state["surgery_pad"] = pad_id_of(tokenizer)


def update_batch(forget: dict, ctx) -> dict | None:
    """The update items of the forget batch's items (same indices), on its device; None if none."""
    update = ctx.state["surgery_update"]
    index = [i for i in forget["index"].tolist() if i in update]
    if not index:
        return None
    batch = collate([update[i] for i in index], ctx.state["surgery_pad"], index)
    return {k: v.to(forget["input_ids"].device) for k, v in batch.items()}


@register("surgery", SurgeryParams, "Unlearn + learn corrected facts + KL on retain (LLM Surgery, Veldanda et al. 2024)",
          ref_model=True, setup=setup, check_task=check_task)
def loss(model, forget, retain, ctx):
    p = ctx.params
    value = -p.g_u * nll_mean(model, forget) + p.g_r * kl_to_ref(model, ctx.ref_model, retain)
    update = update_batch(forget, ctx)
    if update is not None and p.g_up:
        value = value + p.g_up * nll_mean(model, update)
    return value
