"""MUSE's metrics (Shi et al. 2024, sec. 3; SPEC section 3): VerbMem, KnowMem and PrivLeak.

- VerbMem (C1, verbatim memorisation): the model greedily continues each VerbMem prompt for 128
  tokens; score = ROUGE-L F1 of the continuation against the true continuation `gt`.
- KnowMem (C2 on the forget QA, C4 utility on the retain QA): a few-shot prompt, the split's
  ICL examples as "Question: q\\nAnswer: a\\n\\n" each, then "Question: {q}\\nAnswer:"; 32 greedy
  tokens, cut at the first "\\n\\n" or "Question" and stripped; score = ROUGE-L F1 against the answer.
- PrivLeak (C3): AUC of Min-K% Prob (k = 0.4) separating the privleak forget texts (members)
  from the holdout texts, for the model and for the retrained oracle;
  PrivLeak = (AUC_model - AUC_oracle) / AUC_oracle * 100 in MUSE's AUC convention
  (`obliviate.metrics.mia.privleak`: about -100 = leaks, 0 = like the oracle, > 0 = over-unlearned).

Pure functions build the prompts, cut at the stop strings and score given generations; the
thin `run_*` functions run a model through the repository's batched greedy decoding
(`obliviate.metrics.extraction.greedy_generate_fn`) and teacher-forced scoring
(`obliviate.evaluate.score_sequences`).

Context length: a prompt and its new tokens must fit in the model's context
(`config.max_position_embeddings`; 256 for the tiny test models, 4096 for MUSE's Llama-2-7B).
Every prompt longer than `context - max_new_tokens` is LEFT-truncated: BOS (when the tokenizer
adds one) is kept and the earliest tokens after it are dropped, so the model still continues
the end of the prompt (VerbMem) or answers the last question, after as many of the final ICL
examples as fit (KnowMem; the first kept example may start mid-way). VerbMem's prompts are
about 1,000 Llama tokens, so with a 256-token model only their last ~127 tokens are seen.
The results count the truncated prompts (`n_truncated`). PrivLeak texts are RIGHT-truncated to
the context (their first tokens are scored). A context too small to hold BOS, one prompt token
and the new tokens is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from obliviate.data.collate import Encoded, context_length, fit_prompt, pad_id_of
from obliviate.data.muse import VerbMemItem
from obliviate.data.task import QAItem
from obliviate.metrics.extraction import greedy_generate_fn
from obliviate.metrics.mia import mia_auc, min_k_score
from obliviate.metrics.mia import privleak as _privleak
from obliviate.metrics.rouge import rouge_l_f1

VERBMEM_MAX_NEW_TOKENS = 128
KNOWMEM_MAX_NEW_TOKENS = 32
KNOWMEM_STOPS = ("\n\n", "Question")
MIN_K = 0.4


@dataclass
class MuseScores:
    """Per-item ROUGE-L F1 of one VerbMem / KnowMem probe set, with the generations scored."""

    scores: np.ndarray
    generations: list[str]
    n_truncated: int = 0  # prompts left-truncated to fit the context
    prompts: list[str] = field(default_factory=list)  # the prompt texts, before truncation

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores)) if len(self.scores) else float("nan")


# ---------------------------------------------------------------- pure functions


def _pair(example: QAItem | tuple[str, str]) -> tuple[str, str]:
    if isinstance(example, QAItem):
        if example.question is None:
            raise ValueError("a KnowMem ICL example needs a question")
        return example.question, example.answer
    q, a = example
    return q, a


def icl_prefix(icl: Sequence[QAItem | tuple[str, str]]) -> str:
    """The few-shot block: "Question: q\\nAnswer: a\\n\\n" per example, in order."""
    return "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in map(_pair, icl))


def knowmem_prompt(question: str, icl: Sequence[QAItem | tuple[str, str]] = ()) -> str:
    """The ICL block, then "Question: {question}\\nAnswer:" (no trailing space: the answer's
    leading space belongs to its first token)."""
    return f"{icl_prefix(icl)}Question: {question}\nAnswer:"


def cut_at_stop(text: str, stops: Sequence[str] = KNOWMEM_STOPS) -> str:
    """`text` up to the first occurrence of any stop string, stripped (idempotent)."""
    end = len(text)
    for s in stops:
        j = text.find(s)
        if j != -1:
            end = min(end, j)
    return text[:end].strip()


def verbmem_scores(generations: Sequence[str], gts: Sequence[str]) -> np.ndarray:
    """Per-item ROUGE-L F1 of the continuations against the true continuations."""
    return rouge_l_f1(list(generations), list(gts))


def knowmem_scores(generations: Sequence[str], answers: Sequence[str],
                   stops: Sequence[str] = KNOWMEM_STOPS) -> np.ndarray:
    """Per-item ROUGE-L F1 of the generations, each cut at the stop strings, against the answers."""
    return rouge_l_f1([cut_at_stop(g, stops) for g in generations], list(answers))


def privleak_from_aucs(auc_model: float, auc_oracle: float) -> float:
    """PrivLeak from detection AUCs (`obliviate.metrics.mia.mia_auc` convention, 1 = members
    perfectly detectable): (AUC_model - AUC_oracle) / AUC_oracle * 100 with MUSE's AUC = 1 - ours."""
    return _privleak(auc_model, auc_oracle)


# ---------------------------------------------------------------- model-running functions


def _bos(tokenizer) -> list[int]:
    return list(tokenizer("", add_special_tokens=True)["input_ids"])


def _limit(model, max_length: int | None) -> int | None:
    ctx = context_length(model)
    if max_length is None:
        return ctx
    return max_length if ctx is None else min(max_length, ctx)


def generate_texts(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 16,
                   max_length: int | None = None) -> tuple[list[str], int]:
    """Greedy continuations of text prompts (BOS added when the tokenizer adds one), decoded
    without stripping, and the number of prompts left-truncated to fit `max_length` (default:
    the model's context) with the new tokens."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    limit = _limit(model, max_length)
    keep = len(_bos(tokenizer))
    encoded = [list(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    if limit is not None:
        budget = limit - max_new_tokens
        if budget < keep + 1:
            raise ValueError(f"a context of {limit} tokens cannot hold {max_new_tokens} new tokens after a "
                             f"prompt of at least {keep + 1} token(s); lower max_new_tokens")
        fitted = [fit_prompt(ids, budget, keep) for ids in encoded]
    else:
        fitted = encoded
    n_truncated = sum(len(a) != len(b) for a, b in zip(encoded, fitted, strict=True))
    if not fitted:
        return [], 0
    model.eval()
    gen = greedy_generate_fn(model, tokenizer, batch_size)
    ids = gen(fitted, [max_new_tokens] * len(fitted))
    return [tokenizer.decode(g, skip_special_tokens=True) for g in ids], n_truncated


def run_verbmem(model, tokenizer, items: Sequence[VerbMemItem], max_new_tokens: int = VERBMEM_MAX_NEW_TOKENS,
                batch_size: int = 16, max_length: int | None = None) -> MuseScores:
    """VerbMem: greedy `max_new_tokens` continuation of each prompt, ROUGE-L F1 against `gt`."""
    prompts = [it.prompt for it in items]
    gens, n_trunc = generate_texts(model, tokenizer, prompts, max_new_tokens, batch_size, max_length)
    gens = [g.strip() for g in gens]
    return MuseScores(verbmem_scores(gens, [it.gt for it in items]), gens, n_trunc, prompts)


def run_knowmem(model, tokenizer, items: Sequence[QAItem], icl: Sequence[QAItem | tuple[str, str]],
                max_new_tokens: int = KNOWMEM_MAX_NEW_TOKENS, batch_size: int = 16,
                max_length: int | None = None, stops: Sequence[str] = KNOWMEM_STOPS) -> MuseScores:
    """KnowMem: few-shot prompt (`knowmem_prompt`), greedy `max_new_tokens`, cut at `stops`,
    ROUGE-L F1 against the answer. `icl`: the split's examples (`icl_forget` for the forget
    questions, `icl_retain` for the retain ones)."""
    prompts = [knowmem_prompt(it.question, icl) for it in items]
    gens, n_trunc = generate_texts(model, tokenizer, prompts, max_new_tokens, batch_size, max_length)
    gens = [cut_at_stop(g, stops) for g in gens]
    return MuseScores(knowmem_scores(gens, [it.answer for it in items], stops), gens, n_trunc, prompts)


def _text_encoded(tokenizer, text: str, limit: int | None) -> Encoded:
    """BOS as the prompt and the text's tokens as the scored part (without BOS: the first
    token is the prompt), cut to `limit` tokens in all; no EOS."""
    bos = _bos(tokenizer)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    prompt, rest = (bos, ids) if bos else (ids[:1], ids[1:])
    if limit is not None:
        rest = rest[: max(0, limit - len(prompt))]
    if not rest:
        raise ValueError(f"text {text[:40]!r}: no token left to score")
    return Encoded(prompt_ids=prompt, answer_ids=rest)


def min_k_text_scores(model, tokenizer, texts: Sequence[str], k: float = MIN_K, batch_size: int = 4,
                      max_length: int | None = None) -> np.ndarray:
    """Min-K% Prob score per text (higher = less member-like), texts right-truncated to
    `max_length` tokens (default: the model's context)."""
    from obliviate.evaluate import score_sequences  # evaluate imports the metrics package

    limit = _limit(model, max_length)
    encoded = [_text_encoded(tokenizer, t, limit) for t in texts]
    model.eval()
    scored = score_sequences(model, encoded, pad_id_of(tokenizer), batch_size)
    return min_k_score([r["logp"] for r in scored], k)


def privleak_auc(model, tokenizer, forget_texts: Sequence[str], holdout_texts: Sequence[str], k: float = MIN_K,
                 batch_size: int = 4, max_length: int | None = None) -> dict:
    """Min-K% detection AUC of forget (members) vs holdout texts for one model:
    `{"auc", "forget_scores", "holdout_scores"}`."""
    f = min_k_text_scores(model, tokenizer, forget_texts, k, batch_size, max_length)
    h = min_k_text_scores(model, tokenizer, holdout_texts, k, batch_size, max_length)
    return {"auc": mia_auc(f, h), "forget_scores": f, "holdout_scores": h}


def run_privleak(model, tokenizer, forget_texts: Sequence[str], holdout_texts: Sequence[str],
                 auc_oracle: float | None = None, oracle=None, k: float = MIN_K, batch_size: int = 4,
                 max_length: int | None = None) -> dict:
    """PrivLeak of `model` against the retrained oracle, given as its AUC (`auc_oracle`, e.g.
    cached from `privleak_auc`) or as a model (`oracle`, same tokenizer). Returns `{"auc",
    "auc_oracle", "privleak", "forget_scores", "holdout_scores"}` (AUCs in the detection
    convention of `obliviate.metrics.mia.mia_auc`); without an oracle, `auc_oracle` and
    `privleak` are NaN."""
    res = privleak_auc(model, tokenizer, forget_texts, holdout_texts, k, batch_size, max_length)
    if auc_oracle is None and oracle is not None:
        auc_oracle = privleak_auc(oracle, tokenizer, forget_texts, holdout_texts, k, batch_size, max_length)["auc"]
    if auc_oracle is None:
        res.update(auc_oracle=float("nan"), privleak=float("nan"))
    else:
        res.update(auc_oracle=float(auc_oracle), privleak=privleak_from_aucs(res["auc"], float(auc_oracle)))
    return res
