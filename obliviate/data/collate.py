"""Turning items into token ids and padded batches.

Prompt and answer are tokenized separately and concatenated, so that the boundary between
them is the same in training, teacher-forced scoring and generation (SPEC section 5: a
prompt ending in "Answer: " would end in a lone space token the model never saw). The
attention mask is built from the real lengths, never inferred from `input_ids != pad_id`
(which masks real EOS tokens when pad = EOS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from obliviate.data.task import QAItem

PROMPT_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass(frozen=True)
class Encoded:
    prompt_ids: list[int]
    answer_ids: list[int]


def format_prompt(question: str) -> str:
    return PROMPT_TEMPLATE.format(question=question)


def _bos(tokenizer) -> list[int]:
    ids = tokenizer("", add_special_tokens=True)["input_ids"]
    return list(ids)


def encode_prompt(tokenizer, question: str | None, chat: bool = False) -> list[int]:
    if question is None:
        return _bos(tokenizer)
    if chat and getattr(tokenizer, "chat_template", None):
        return list(tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                  add_generation_prompt=True, tokenize=True))
    return list(tokenizer(format_prompt(question), add_special_tokens=True)["input_ids"])


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
           chat: bool = False) -> Encoded:
    """Token ids of one (prompt, answer + EOS) pair of at most `max_length` tokens; a raw text is
    all answer. Too long: the prompt is cut from the left (`fit_prompt`) to leave the answer
    at least half of `max_length` (or all it needs), then the answer is cut from the right."""
    prompt_ids = encode_prompt(tokenizer, question, chat)
    text = answer if question is None or chat else " " + answer
    answer_ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        answer_ids.append(tokenizer.eos_token_id)
    if len(prompt_ids) + len(answer_ids) > max_length:
        prompt_ids = fit_prompt(prompt_ids, max(2, max_length - min(len(answer_ids), max_length // 2)),
                                leading_bos(prompt_ids, tokenizer))
    room = max(1, max_length - len(prompt_ids))
    return Encoded(prompt_ids, answer_ids[:room])


def encode_items(tokenizer, items: Sequence[QAItem], max_length: int = 512) -> list[Encoded]:
    return [encode(tokenizer, it.question, it.answer, max_length) for it in items]


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
