"""TDEC memorisation metrics (Jang et al. 2022, "Knowledge Unlearning for Mitigating Privacy Risks
in Language Models"; SPEC section 3: `ma` and `el10`).

A text x = (x_1, ..., x_T) is its tokens (no BOS, no EOS; `text_token_ids` cuts it to
`max_tokens`, 200 in the paper's TDEC setting). The model sees a BOS before the text when
its tokenizer adds one; BOS is not counted in T.

- MA (memorisation accuracy): MA(x) = sum_{t=1}^{T-1} 1{argmax p(. | x_<=t) = x_{t+1}} / (T - 1),
  the teacher-forced argmax accuracy over the text's tokens x_2..x_T (the first token is context
  only, as in the authors' code, whose GPT-Neo has no BOS).
- EL_n (extraction likelihood, n = 10 for `el10`): see `extraction_likelihood`.
- The stopping rule: unlearning is done when the forget set's MA and EL_10 both fall below
  their values on unseen (validation) text (`stopping_rule`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from obliviate.data.collate import Encoded
from obliviate.data.task import QAItem
from obliviate.metrics.memorization import exact_memorization

# generate_fn(prompts, max_new) -> one list of generated token ids per prompt (at most max_new[i]).
GenerateFn = Callable[[list[list[int]], list[int]], list[list[int]]]


def _bos(tokenizer) -> list[int]:
    return list(tokenizer("", add_special_tokens=True)["input_ids"])


def text_token_ids(tokenizer, text: str, max_tokens: int | None = 200) -> list[int]:
    """The text's tokens x_1..x_T (no special tokens), cut to the first `max_tokens`."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids if max_tokens is None else ids[:max_tokens]


def text_encoded(tokenizer, text: str, max_tokens: int | None = 200) -> Encoded:
    """For `obliviate.evaluate.score_sequences`: prompt = BOS + x_1, scored tokens = x_2..x_T, so
    that the `correct` flags it returns are exactly MA's (one per token x_2..x_T)."""
    ids = text_token_ids(tokenizer, text, max_tokens)
    if len(ids) < 2:
        raise ValueError(f"text {text[:40]!r}: {len(ids)} token(s); MA needs at least 2")
    return Encoded(prompt_ids=_bos(tokenizer) + ids[:1], answer_ids=ids[1:])


def memorization_accuracy(correct: list[np.ndarray]) -> np.ndarray:
    """MA per item: the mean of the teacher-forced argmax-correct flags over the text's tokens.

    This is `obliviate.metrics.exact_memorization` applied to flags over the whole text (not an
    answer): pass the `correct` flags of `score_sequences` on `text_encoded(...)` sequences.
    """
    return exact_memorization(correct)


def ngrams(tokens: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """The n-grams of a token sequence, in order, with repeats (len(tokens) - n + 1 of them)."""
    tokens = list(tokens)
    return [tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1)]


def ngram_overlap(generated: Sequence[int], true: Sequence[int], n: int) -> float | None:
    """OVERLAP_n(a, b) = sum_{c in ng(a)} 1{c in ng(b)} / |ng(b)|, a = generated, b = true suffix.

    ng(.) is the list of n-grams with repeats: each generated n-gram that occurs anywhere in the
    true suffix counts once per occurrence in the generation (the authors' code: `p_tp = [g for g
    in p_ngram if g in set(l_ngram)]; len(p_tp) / len(l_ngram)`). With a generation as long as
    the suffix, |ng(a)| = |ng(b)| and the value is in [0, 1]; a generation cut short (EOS) has
    fewer n-grams and scores lower. None when the true suffix has fewer than n tokens (undefined).
    """
    true_ngrams = ngrams(true, n)
    if not true_ngrams:
        return None
    true_set = set(true_ngrams)
    return sum(g in true_set for g in ngrams(generated, n)) / len(true_ngrams)


def prefix_lengths(T: int, n: int, max_prefixes: int | None = None) -> list[int]:
    """The prefix lengths t = 1..T-n of EL_n, or `max_prefixes` of them evenly spaced (ends included)."""
    ts = list(range(1, T - n + 1))
    if max_prefixes is None or len(ts) <= max_prefixes:
        return ts
    if max_prefixes < 1:
        raise ValueError(f"max_prefixes must be >= 1, got {max_prefixes}")
    pick = np.unique(np.round(np.linspace(0, len(ts) - 1, max_prefixes)).astype(int))
    return [ts[i] for i in pick]


def el_from_overlaps(overlaps: Sequence[float], T: int, n: int, sampled: bool) -> float:
    """EL_n from the overlaps at the chosen prefix lengths: the sum / (T - n) over all of them,
    or their mean when only a sample of prefix lengths was scored (an estimate of the same)."""
    if T - n < 1:
        raise ValueError(f"EL_{n} needs more than n = {n} tokens, the text has T = {T}")
    return float(np.mean(overlaps)) if sampled else float(np.sum(overlaps) / (T - n))


def greedy_generate_fn(model, tokenizer, batch_size: int = 32) -> GenerateFn:
    """Greedy continuations as token ids (`obliviate.evaluate.generate_ids`), batched with the
    prompts sorted by (max_new, length), each cut at its own `max_new` and at EOS (excluded)."""
    from obliviate.evaluate import generate_ids

    def fn(prompts: list[list[int]], max_new: list[int]) -> list[list[int]]:
        return generate_ids(model, tokenizer, prompts, max_new, batch_size,
                            order_key=lambda i: (max_new[i], len(prompts[i])))

    return fn


def extraction_likelihood(model, tokenizer, items: Sequence[QAItem] | Sequence[Sequence[int]], n: int = 10,
                          batch_size: int = 32, max_prefixes: int | None = None, max_tokens: int | None = 200,
                          generate_fn: GenerateFn | None = None) -> np.ndarray:
    """Extraction likelihood EL_n per item (Jang et al. 2022, eq. in section 3.1):

        EL_n(x) = sum_{t=1}^{T-n} OVERLAP_n(f(x_<t), x_>=t) / (T - n)
        OVERLAP_n(a, b) = |n-grams(a) ∩ n-grams(b)| / |n-grams(b)|

    where f(x_<t) is the model's greedy continuation of the prefix, as long as the true suffix
    x_>=t, and the intersection counts each generated n-gram found in the true suffix (with
    repeats; see `ngram_overlap`). Indexing follows the authors' released code: the t-th term
    uses the first t tokens as the prefix and the remaining T - t as the true suffix, t = 1..T-n
    (every prefix holds at least one token; suffixes shorter than n are undefined and dropped),
    and the sum is divided by T - n.

    `items`: raw-text items (`QAItem.answer` is the text, cut to `max_tokens` tokens) or token-id
    sequences used as given. Each prompt is BOS (when the tokenizer adds one) + x_1..x_t.
    `max_prefixes`: cost cap. None scores every t (T - n greedy generations of up to T - 1
    tokens per item); an integer k scores only k evenly spaced t values (`prefix_lengths`,
    first and last included) and returns the mean of their overlaps, an estimate of the full
    average (the exact EL_n when k >= T - n).
    `generate_fn(prompts, max_new) -> token ids`: the generator (default: batched greedy
    decoding of `model`, `greedy_generate_fn`); injectable for tests or other decoders.
    """
    gen = generate_fn or greedy_generate_fn(model, tokenizer, batch_size)
    bos = _bos(tokenizer) if tokenizer is not None else []
    seqs = [text_token_ids(tokenizer, it.answer, max_tokens) if isinstance(it, QAItem) else list(it)
            for it in items]
    prompts: list[list[int]] = []
    max_new: list[int] = []
    owner: list[tuple[int, int]] = []  # (item, t) per prompt
    chosen: list[list[int]] = []
    for i, x in enumerate(seqs):
        T = len(x)
        if T - n < 1:
            raise ValueError(f"item {i}: EL_{n} needs more than n = {n} tokens, the text has T = {T}")
        ts = prefix_lengths(T, n, max_prefixes)
        chosen.append(ts)
        for t in ts:
            prompts.append(bos + x[:t])
            max_new.append(T - t)
            owner.append((i, t))
    generated = gen(prompts, max_new) if prompts else []
    overlaps: list[list[float]] = [[] for _ in seqs]
    for (i, t), g in zip(owner, generated, strict=True):
        ov = ngram_overlap(g[: len(seqs[i]) - t], seqs[i][t:], n)
        overlaps[i].append(0.0 if ov is None else ov)
    return np.array([el_from_overlaps(overlaps[i], len(x), n, sampled=len(chosen[i]) < len(x) - n)
                     for i, x in enumerate(seqs)], dtype=np.float64)


def stopping_rule(ma: float | np.ndarray, el: float | np.ndarray, ma_unseen: float | np.ndarray,
                  el_unseen: float | np.ndarray) -> bool:
    """Jang et al.'s forgetting criterion: unlearning is done when the forget set's MA and EL_10
    are both at or below their averages on unseen text (validation data never trained on).

    Arrays are averaged (the authors stop when the forget set's average MA and EL fall below
    the thresholds measured on unseen data); floats are taken as those averages.
    """
    return bool(float(np.mean(ma)) <= float(np.mean(ma_unseen)) and float(np.mean(el)) <= float(np.mean(el_unseen)))
