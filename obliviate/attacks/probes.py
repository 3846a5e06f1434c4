"""Probe attacks: the model unchanged, asked differently (SPEC section 4).

- `in_context`: k other forget facts precede the question, as worked examples. In-context
  relearning (Shumailov et al. 2024, "UnUnlearning: Unlearning is not sufficient for content
  regulation in advanced generative AI") shows an unlearned model can use knowledge given in
  context; here the context never holds the probed fact, so a correct answer means the fact
  itself was still in the weights and the context only unlocked it. The same is done for the
  retain set with other retain facts as context: the control for "context helps in general".
- `paraphrase`: the paraphrased question (items without one keep their question); unavailable
  when no forget item has one (it would be the plain probe relabelled).
- `prompt_format`: "Q: {question}\\nA:" instead of the run's prompt format (`ctx.prompt`);
  unlearning that only suppresses answers after the trained template shows up as recovery
  here, while a model that forgot the fact stays at chance in any format.

Prompts are token ids aligned with the items, in the run's prompt format (`ctx.prompt`) except
where the attack changes it; the audit generates from them greedily.
Nothing here touches the model's weights.
"""

from __future__ import annotations

import random

from obliviate.attacks import AttackContext, Attacked, AttackUnavailable, check_params, register
from obliviate.data.collate import DEFAULT_PROMPT, PromptFormat, encode, encode_prompt
from obliviate.data.task import QAItem

PROMPT_FORMAT_TEMPLATE = "Q: {question}\nA:"
CONTEXT_SEPARATOR = "\n\n"


def _without_bos(ids: list[int], bos: list[int]) -> list[int]:
    return ids[len(bos):] if bos and ids[: len(bos)] == bos else ids


def _leaks(candidate: QAItem, probed: QAItem) -> bool:
    """Would `candidate` as context give away `probed`'s answer?"""
    secret = (probed.keyword or probed.answer).lower()
    return candidate == probed or secret in f"{candidate.question} {candidate.answer}".lower()


def choose_context(probed: QAItem, pool: list[QAItem], k: int, rng: random.Random) -> list[QAItem]:
    """Up to k facts from `pool`: never `probed` nor one containing its answer, and facts about
    other subjects first (one subject's facts could hint at each other)."""
    other: list[QAItem] = []
    same: list[QAItem] = []
    for it in pool:
        if not it.is_text and not _leaks(it, probed):
            (same if it.subject is not None and it.subject == probed.subject else other).append(it)
    chosen = rng.sample(other, min(k, len(other)))
    return chosen + rng.sample(same, min(k - len(chosen), len(same)))


def in_context_prompt(tokenizer, probed: QAItem, context: list[QAItem],
                      fmt: PromptFormat = DEFAULT_PROMPT) -> list[int]:
    """BOS + (prompt + answer + "\\n\\n") per context fact + the prompt of the probed question.

    Each piece is tokenized as in training (`encode` in the format `fmt`: prompt, then answer
    prefix + answer), so the final tokens equal `encode_prompt(question, fmt)` without its BOS,
    and BOS appears once.
    """
    bos = encode_prompt(tokenizer, None)
    sep = list(tokenizer(CONTEXT_SEPARATOR, add_special_tokens=False)["input_ids"])
    ids = list(bos)
    for it in context:
        enc = encode(tokenizer, it.question, it.answer, fmt=fmt)
        answer = enc.answer_ids
        if answer and answer[-1] == tokenizer.eos_token_id:
            answer = answer[:-1]
        ids += _without_bos(enc.prompt_ids, bos) + answer + sep
    return ids + _without_bos(encode_prompt(tokenizer, probed.question, fmt), bos)


def _in_context_prompts(tokenizer, items: list[QAItem], pool: list[QAItem], k: int,
                        seed: int, fmt: PromptFormat) -> list[list[int]]:
    rng = random.Random(seed)
    prompts = []
    for it in items:
        if it.is_text:  # a raw text has no question to put after the context
            prompts.append(encode_prompt(tokenizer, None))
        else:
            prompts.append(in_context_prompt(tokenizer, it, choose_context(it, pool, k, rng), fmt))
    return prompts


@register("in_context", "k other forget facts as worked examples before the question "
                        "(in-context relearning, Shumailov et al. 2024)", family="probe")
def in_context(model, ctx: AttackContext) -> Attacked:
    check_params(ctx, "in_context", {"k"})
    k = int(ctx.params.get("k", 3))
    if k < 1:
        raise ValueError(f"attack 'in_context': k must be >= 1, got {k}")
    task = ctx.task
    _need_questions(task, "in_context needs question/answer forget items")
    retain_pool = [it for it in task.retain if not it.is_text] or task.retain_eval
    return Attacked(
        model=model,
        forget_items=task.forget_eval,
        forget_prompts=_in_context_prompts(ctx.tokenizer, task.forget_eval, task.forget_eval, k, ctx.seed, ctx.prompt),
        retain_items=task.retain_eval,
        retain_prompts=_in_context_prompts(ctx.tokenizer, task.retain_eval, retain_pool, k, ctx.seed, ctx.prompt),
        info={"k": k},
    )


def _need_questions(task, why: str) -> None:
    if all(it.is_text for it in task.forget_eval):
        raise AttackUnavailable(f"{why}; this task's forget probes are raw texts")


def _plain_prompts(tokenizer, items: list[QAItem], question_of, fmt: PromptFormat,
                   template: str | None = None) -> list[list[int]]:
    out = []
    for it in items:
        q = question_of(it)
        if q is None or template is None:
            out.append(encode_prompt(tokenizer, q, fmt))
        else:
            out.append(list(tokenizer(template.format(question=q), add_special_tokens=True)["input_ids"]))
    return out


@register("paraphrase", "ask with the paraphrased question", family="probe")
def paraphrase(model, ctx: AttackContext) -> Attacked:
    check_params(ctx, "paraphrase", set())
    task = ctx.task
    _need_questions(task, "paraphrase asks paraphrased questions")

    def question_of(it: QAItem) -> str | None:
        return it.paraphrased_question or it.question

    n = sum(it.paraphrased_question is not None for it in task.forget_eval)
    if n == 0:
        raise AttackUnavailable("paraphrase: no forget item has a paraphrased question (field "
                                "`paraphrased_question`); the probe would be the plain prompt relabelled")
    return Attacked(
        model=model,
        forget_items=task.forget_eval,
        forget_prompts=_plain_prompts(ctx.tokenizer, task.forget_eval, question_of, ctx.prompt),
        retain_items=task.retain_eval,
        retain_prompts=_plain_prompts(ctx.tokenizer, task.retain_eval, question_of, ctx.prompt),
        info={"n_paraphrased": n, "n_items": len(task.forget_eval)},
    )


@register("prompt_format", f"another prompt format: {PROMPT_FORMAT_TEMPLATE!r}", family="probe")
def prompt_format(model, ctx: AttackContext) -> Attacked:
    check_params(ctx, "prompt_format", set())
    task = ctx.task
    _need_questions(task, "prompt_format re-asks questions in another format")

    def question_of(it: QAItem) -> str | None:
        return it.question

    return Attacked(
        model=model,
        forget_items=task.forget_eval,
        forget_prompts=_plain_prompts(ctx.tokenizer, task.forget_eval, question_of, ctx.prompt,
                                      PROMPT_FORMAT_TEMPLATE),
        retain_items=task.retain_eval,
        retain_prompts=_plain_prompts(ctx.tokenizer, task.retain_eval, question_of, ctx.prompt,
                                      PROMPT_FORMAT_TEMPLATE),
        info={"template": PROMPT_FORMAT_TEMPLATE},
    )
