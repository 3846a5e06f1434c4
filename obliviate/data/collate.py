"""Turning items into token ids and padded batches.

Items are formatted by the run's `PromptFormat` (a template or the tokenizer's chat template;
presets for published checkpoints). Prompt and answer are tokenized separately and
concatenated, so that the boundary between them is the same in training, teacher-forced
scoring and generation (SPEC section 5: a
prompt ending in "Answer: " would end in a lone space token the model never saw). The
attention mask is built from the real lengths, never inferred from `input_ids != pad_id`
(which masks real EOS tokens when pad = EOS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from obliviate.data.task import DataError, QAItem

PROMPT_TEMPLATE = "Question: {question}\nAnswer:"


# Formats of the checkpoints the README names. The field's framework (open-unlearning) formats
# base models as "Question: {q}\nAnswer: " + answer, the space belonging to the prompt (SPEC section 5);
# TOFU's own fine-tunes (locuslab/tofu_ft_llama2-7b, config/model_config.yaml: question_start_tag
# "[INST] ", question_end_tag " [/INST]", answer_tag "") put the answer right after "[/INST]"; its
# phi-1.5 fine-tune uses "Question: " q "\n" then "Answer: " (here in the prompt, so that loss and
# probability cover the answer alone). MUSE's KnowMem QA uses the framework's base format. Chat and
# instruct models (Llama-3, Phi-3, Zephyr) use their tokenizer's chat template.
PROMPT_PRESETS: dict[str, dict[str, Any]] = {
    "obliviate": {"template": PROMPT_TEMPLATE, "answer_prefix": " ", "chat": False},
    "open-unlearning": {"template": "Question: {question}\nAnswer: ", "answer_prefix": "", "chat": False},
    "tofu-llama2": {"template": "[INST] {question} [/INST]", "answer_prefix": "", "chat": False},
    "tofu-phi": {"template": "Question: {question}\nAnswer: ", "answer_prefix": "", "chat": False},
    "chat": {"template": PROMPT_TEMPLATE, "answer_prefix": "", "chat": True},
}


class PromptFormat(BaseModel):
    """How an item becomes token ids: prompt = `template` with the question (or, with `chat`, the
    tokenizer's chat template around a user turn holding the question, generation prompt added),
    then `answer_prefix` + answer + EOS, tokenized on its own (so the boundary is the same in
    training, scoring and generation). `preset` fills the fields from `PROMPT_PRESETS`; fields
    given beside it win. The default is obliviate's own format; the tiny models learn the run's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    preset: str | None = Field(None, description="a name in PROMPT_PRESETS: " + ", ".join(PROMPT_PRESETS))
    template: str = Field(PROMPT_TEMPLATE, description="the prompt; {question} marks the question")
    answer_prefix: str = Field(" ", description="text put before the answer, tokenized with it")
    chat: bool = Field(False, description="prompt through the tokenizer's chat template (template unused)")

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") is not None:
            name = data["preset"]
            if name not in PROMPT_PRESETS:
                raise ValueError(f"unknown prompt preset {name!r}; presets: {', '.join(PROMPT_PRESETS)}")
            data = {**PROMPT_PRESETS[name], **data}
        return data

    @field_validator("template")
    @classmethod
    def _one_question(cls, template: str) -> str:
        try:
            template.format(question="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"template {template!r}: only {{question}} may appear in braces ({e})") from e
        if "{question}" not in template:
            raise ValueError(f"template {template!r} has no {{question}}")
        return template


DEFAULT_PROMPT = PromptFormat()


@dataclass(frozen=True)
class Encoded:
    prompt_ids: list[int]
    answer_ids: list[int]


def format_prompt(question: str, fmt: PromptFormat = DEFAULT_PROMPT) -> str:
    return fmt.template.format(question=question)


def bos_ids(tokenizer) -> list[int]:
    ids = tokenizer("", add_special_tokens=True)["input_ids"]
    return list(ids)


def encode_prompt(tokenizer, question: str | None, fmt: PromptFormat = DEFAULT_PROMPT) -> list[int]:
    """Token ids of the prompt of one question (BOS alone for raw text: `question` None)."""
    if question is None:
        return bos_ids(tokenizer)
    if fmt.chat:
        if not getattr(tokenizer, "chat_template", None):
            raise DataError(f"prompt.chat: the tokenizer {type(tokenizer).__name__} has no chat template; "
                            f"give a prompt template instead (e.g. --prompt-template open-unlearning)")
        # the chat template writes its own BOS and special tokens: tokenize its text without adding more
        text = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                             tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(format_prompt(question, fmt), add_special_tokens=True)["input_ids"])


def fit_prompt(ids: Sequence[int], budget: int, keep: int = 0) -> list[int]:
    """Left-truncate a prompt to at most `budget` tokens, keeping its first `keep` (BOS): a
    question longer than the context keeps its end (the part next to "Answer:")."""
    ids = list(ids)
    if len(ids) <= budget:
        return ids
    if budget <= keep:
        raise ValueError(f"no room for the prompt: {budget} token(s) allowed, {keep} kept at its start")
    return ids[:keep] + ids[len(ids) - (budget - keep):]


def leading_bos(ids: Sequence[int], tokenizer) -> int:
    """1 when `ids` starts with the tokenizer's BOS (what `fit_prompt` must keep), else 0."""
    return int(bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id)


def encode(tokenizer, question: str | None, answer: str, max_length: int = 512,
           fmt: PromptFormat = DEFAULT_PROMPT) -> Encoded:
    """Token ids of one (prompt, answer + EOS) pair of at most `max_length` tokens; a raw text is
    all answer. Too long: the prompt is cut from the left (`fit_prompt`, keeping BOS and the
    question's end) to leave the answer at least half of `max_length` (or all it needs), then the
    answer is cut from the right."""
    answer_ids = tokenizer(_answer_text(question, answer, fmt), add_special_tokens=False)["input_ids"]
    return _fit(tokenizer, encode_prompt(tokenizer, question, fmt), answer_ids, max_length)


def _answer_text(question: str | None, answer: str, fmt: PromptFormat) -> str:
    return answer if question is None else fmt.answer_prefix + answer


def _fit(tokenizer, prompt_ids: list[int], answer_ids: list[int], max_length: int) -> Encoded:
    answer_ids = list(answer_ids)
    if tokenizer.eos_token_id is not None:
        answer_ids.append(tokenizer.eos_token_id)
    if len(prompt_ids) + len(answer_ids) > max_length:
        prompt_ids = fit_prompt(prompt_ids, max(2, max_length - min(len(answer_ids), max_length // 2)),
                                leading_bos(prompt_ids, tokenizer))
    room = max(1, max_length - len(prompt_ids))
    return Encoded(list(prompt_ids), answer_ids[:room])


def encode_items(tokenizer, items: Sequence[QAItem], max_length: int = 512,
                 fmt: PromptFormat = DEFAULT_PROMPT) -> list[Encoded]:
    """`encode` of every item, the texts tokenized in two batched calls (a fast tokenizer encodes a
    list in one call; chat prompts go one by one through the chat template)."""
    if fmt.chat or len(items) < 2:
        return [encode(tokenizer, it.question, it.answer, max_length, fmt) for it in items]
    questions = [it.question for it in items if it.question is not None]
    asked = iter(tokenizer([format_prompt(q, fmt) for q in questions], add_special_tokens=True)["input_ids"]
                 if questions else [])
    bos = bos_ids(tokenizer)
    prompts = [bos if it.question is None else next(asked) for it in items]
    answers = tokenizer([_answer_text(it.question, it.answer, fmt) for it in items],
                        add_special_tokens=False)["input_ids"]
    return [_fit(tokenizer, p, a, max_length) for p, a in zip(prompts, answers, strict=True)]


def context_length(model) -> int | None:
    """The longest sequence the model takes (`max_position_embeddings`, GPT-2's `n_positions`, or
    `max_sequence_length`), None when the config does not say."""
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def pad_id_of(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    return 0


def collate(encoded: Sequence[Encoded], pad_id: int, index: Sequence[int] | None = None) -> dict:
    """Right-padded batch: labels are -100 on the prompt and on padding."""
    lengths = [len(e.prompt_ids) + len(e.answer_ids) for e in encoded]
    width = max(lengths)
    n = len(encoded)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), -100, dtype=torch.long)
    for i, e in enumerate(encoded):
        ids = e.prompt_ids + e.answer_ids
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        labels[i, len(e.prompt_ids): len(ids)] = torch.tensor(e.answer_ids)
    idx = torch.tensor(list(index) if index is not None else range(n), dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, "index": idx}


def collate_prompts(prompts: Sequence[Sequence[int]], pad_id: int) -> dict:
    """Left-padded prompts for batched generation."""
    width = max(len(p) for p in prompts)
    n = len(prompts)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            input_ids[i, width - len(p):] = torch.tensor(list(p))
            attention_mask[i, width - len(p):] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def batches(n: int, batch_size: int) -> list[range]:
    return [range(i, min(n, i + batch_size)) for i in range(0, n, batch_size)]
