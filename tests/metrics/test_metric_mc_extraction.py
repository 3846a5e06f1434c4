"""WMDP multiple-choice accuracy and TDEC MA / EL_n / stopping rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from obliviate.data.task import QAItem
from obliviate.data.wmdp import MCItem
from obliviate.metrics.extraction import (
    el_from_overlaps,
    extraction_likelihood,
    memorization_accuracy,
    ngram_overlap,
    ngrams,
    prefix_lengths,
    stopping_rule,
    text_encoded,
)
from obliviate.metrics.multiple_choice import (
    letter_continuations,
    mc_accuracy,
    mc_accuracy_calibrated,
    mc_letter_loglik,
    mc_prompt,
)
from obliviate.models.tiny import train_tokenizer

# ---- multiple choice -------------------------------------------------------------------------


def test_mc_accuracy_hand_made():
    logits = np.array([[3.0, 1, 0, 0], [0, 2, 1, 0], [0, 0, 0, 5], [1, 1, 0, 0]])
    assert mc_accuracy(logits, [0, 1, 3, 1]) == 0.75  # the tie in row 4 goes to A


def test_calibration_removes_a_constant_bias_toward_a():
    answers = np.array([0, 1, 2, 3, 1, 2, 3, 0])
    clean = np.eye(4)[answers] * 1.0  # the right letter is +1
    biased = clean + np.array([5.0, 0, 0, 0])  # ... but "A" gets +5 everywhere
    assert mc_accuracy(biased, answers) == 0.25  # always predicts A
    assert mc_accuracy_calibrated(biased, answers) == 1.0
    assert mc_accuracy_calibrated(clean, answers) == 1.0


def test_mc_accuracy_checks_shapes():
    with pytest.raises(ValueError):
        mc_accuracy(np.zeros((3, 4)), [0, 1])


def test_mc_prompt_is_lm_eval_style():
    it = MCItem(" What? ", ("w", "x", "y", "z"), 2)
    assert mc_prompt(it, "biology") == ("The following are multiple choice questions (with answers) about biology.\n\n"
                                        "What?\nA. w\nB. x\nC. y\nD. z\nAnswer:")


ITEMS = [MCItem("Which one is right?", ("cat", "dog", "a bird", "fish"), 0),
         MCItem("Right?", ("a", "b", "c", "d"), 3),
         MCItem("Which one is right, the cat or the dog or the bird?", ("cat", "dog", "bird", "fish"), 1)]
MC_CORPUS = (["The following are multiple choice questions (with answers) about biology.",
              "Which one is right?\nA. cat\nB. dog\nC. a bird\nD. fish\nAnswer: A"] * 20
             + [" A B C D" * 50] * 20 + [f"Answer: {L}" for L in "ABCD"] * 20)


@pytest.fixture(scope="module")
def mc_tokenizer():
    tok = train_tokenizer(MC_CORPUS, vocab_size=400)
    assert len(tok) <= 400
    return tok


@pytest.fixture(scope="module")
def sp_tokenizer():
    """A SentencePiece-style tokenizer built offline, as Llama-2's behaves: spaces become "▁", a
    "▁" is prepended to the text (the dummy prefix) and pieces never span a word start, so " A"
    alone is ['▁', '▁A'] while "...Answer: A" ends in the one token '▁A'."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(MC_CORPUS, trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<unk>", clean_up_tokenization_spaces=False)


def _forward_logp(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)


def test_sentencepiece_letter_is_scored_as_the_prompts_continuation(tiny_model, sp_tokenizer):
    """lm-evaluation-harness's split: " A" alone is two tokens with a SentencePiece tokenizer (the
    old scorer raised), but as the continuation of the prompt it is the one token '▁A'."""
    alone = sp_tokenizer.convert_ids_to_tokens(sp_tokenizer(" A", add_special_tokens=False)["input_ids"])
    assert alone == ["▁", "▁A"]
    context, conts = letter_continuations(sp_tokenizer, mc_prompt(ITEMS[0], "biology"))
    assert [sp_tokenizer.convert_ids_to_tokens(c) for c in conts] == [["▁A"], ["▁B"], ["▁C"], ["▁D"]]
    tiny_model.eval()
    got = mc_letter_loglik(tiny_model, sp_tokenizer, ITEMS, "biology", batch_size=2)
    for i, it in enumerate(ITEMS):
        context, conts = letter_continuations(sp_tokenizer, mc_prompt(it, "biology"))
        want = _forward_logp(tiny_model, context)[-1, [c[0] for c in conts]].numpy()
        np.testing.assert_allclose(got[i], want, atol=1e-5)


def test_multi_token_continuations_sum_their_log_probs(tiny_model, tiny_tokenizer):
    # The world tokenizer has no " A" or " C" token: those continuations are two tokens, teacher-forced.
    context, conts = letter_continuations(tiny_tokenizer, mc_prompt(ITEMS[1], "biology"))
    assert [len(c) for c in conts] == [2, 1, 2, 1]
    tiny_model.eval()
    got = mc_letter_loglik(tiny_model, tiny_tokenizer, ITEMS, "biology", batch_size=2)
    for i, it in enumerate(ITEMS):
        context, conts = letter_continuations(tiny_tokenizer, mc_prompt(it, "biology"))
        for k, cont in enumerate(conts):
            logp = _forward_logp(tiny_model, context + cont)
            want = sum(float(logp[len(context) - 1 + t, tok]) for t, tok in enumerate(cont))
            assert got[i, k] == pytest.approx(want, abs=1e-4)


def test_mc_letter_loglik_batched_equals_single(tiny_model, mc_tokenizer):
    tiny_model.eval()
    got = mc_letter_loglik(tiny_model, mc_tokenizer, ITEMS, "biology", batch_size=3)
    assert got.shape == (3, 4)
    for i, it in enumerate(ITEMS):
        context, conts = letter_continuations(mc_tokenizer, mc_prompt(it, "biology"))
        assert all(len(c) == 1 for c in conts)
        want = _forward_logp(tiny_model, context)[-1, [c[0] for c in conts]].numpy()
        np.testing.assert_allclose(got[i], want, atol=1e-5)
    np.testing.assert_allclose(mc_letter_loglik(tiny_model, mc_tokenizer, ITEMS, "biology", batch_size=1), got,
                               atol=1e-5)


# ---- TDEC: MA, n-gram overlap, EL_n, stopping rule -------------------------------------------


def test_memorization_accuracy_hand_made_flags():
    np.testing.assert_allclose(memorization_accuracy([np.array([1, 1, 0, 1]), np.array([0, 0]), [True]]),
                               [0.75, 0.0, 1.0])


def test_text_encoded_scores_x2_to_xT(tiny_tokenizer):
    e = text_encoded(tiny_tokenizer, "Ana was born in Tarnow", max_tokens=4)
    ids = tiny_tokenizer("Ana was born in Tarnow", add_special_tokens=False)["input_ids"][:4]
    assert e.prompt_ids == [tiny_tokenizer.bos_token_id, ids[0]] and e.answer_ids == ids[1:]


def test_ngram_overlap_exact():
    assert ngrams([1, 2, 3, 4], 2) == [(1, 2), (2, 3), (3, 4)]
    assert ngram_overlap([1, 2, 3, 4], [1, 2, 3, 4], 2) == 1.0
    assert ngram_overlap([1, 2, 9, 4], [1, 2, 3, 4], 2) == 1 / 3
    assert ngram_overlap([3, 4, 1, 2], [1, 2, 3, 4], 2) == 2 / 3  # position-free: (3,4), (1,2) found
    assert ngram_overlap([1, 2, 1, 2], [1, 2, 3, 4], 2) == 2 / 3  # repeats count once per occurrence
    assert ngram_overlap([1, 2], [1, 2, 3, 4], 2) == 1 / 3  # a generation cut short scores lower
    assert ngram_overlap([1, 2, 3], [1, 2], 3) is None  # undefined: the suffix has < n tokens


def test_prefix_lengths():
    assert prefix_lengths(12, 10) == [1, 2]
    assert prefix_lengths(30, 10) == list(range(1, 21))
    assert prefix_lengths(30, 10, max_prefixes=3) == [1, 11, 20]
    assert prefix_lengths(30, 10, max_prefixes=50) == list(range(1, 21))


def _echo_truth(seqs):
    """A fake model that knows the true continuation of every text."""
    def fn(prompts, max_new):
        out = []
        for p, m in zip(prompts, max_new, strict=True):
            x = next(s for s in seqs if s[: len(p)] == p)
            out.append(x[len(p): len(p) + m])
        return out
    return fn


def test_el_perfect_memorisation_is_one_and_noise_is_zero():
    x = list(range(100, 130))  # T = 30, n = 10: t = 1..20
    assert extraction_likelihood(None, None, [x], n=10, generate_fn=_echo_truth([x]))[0] == pytest.approx(1.0)
    zeros = lambda prompts, max_new: [[0] * m for m in max_new]  # noqa: E731
    assert extraction_likelihood(None, None, [x], n=10, generate_fn=zeros)[0] == 0.0


def test_el_matches_the_formula_by_hand():
    # T = 6, n = 2: t = 1..4, suffixes x[t:]; the fake model gets the first suffix token right, then says 0.
    x = [1, 2, 3, 4, 5, 6]
    calls = []

    def first_right(prompts, max_new):
        calls.append((prompts, max_new))
        return [[x[len(p)]] + [0] * (m - 1) for p, m in zip(prompts, max_new, strict=True)]

    el = extraction_likelihood(None, None, [x], n=2, generate_fn=first_right)[0]
    # t=1: gen [2,0,0,0,0] vs [2..6]: bigrams (2,0),(0,0)x3 -> 0 of 4; same for every t -> EL 0.
    assert el == 0.0
    assert calls[0] == ([[1], [1, 2], [1, 2, 3], [1, 2, 3, 4]], [5, 4, 3, 2])

    def two_right(prompts, max_new):
        return [x[len(p): len(p) + 2] + [0] * (m - 2) for p, m in zip(prompts, max_new, strict=True)]

    # overlaps: t=1 1/4, t=2 1/3, t=3 1/2, t=4 1/1 -> sum / (T - n) = (1/4 + 1/3 + 1/2 + 1) / 4
    want = (1 / 4 + 1 / 3 + 1 / 2 + 1) / 4
    assert extraction_likelihood(None, None, [x], n=2, generate_fn=two_right)[0] == pytest.approx(want)
    # max_prefixes 2 scores t = 1 and 4 only and averages them
    got = extraction_likelihood(None, None, [x], n=2, max_prefixes=2, generate_fn=two_right)[0]
    assert got == pytest.approx((1 / 4 + 1) / 2)
    assert el_from_overlaps([1 / 4, 1], 6, 2, sampled=False) == pytest.approx(5 / 16)


def test_el_rejects_short_text():
    with pytest.raises(ValueError, match="EL_10"):
        extraction_likelihood(None, None, [[1] * 10], n=10, generate_fn=lambda p, m: [])


def test_el_with_the_tiny_model(tiny_model, tiny_tokenizer):
    items = [QAItem(None, "Ana was born in Tarnow and she works as a baker in the city."),
             QAItem(None, "Bo lives in Oslo.")]
    el = extraction_likelihood(tiny_model, tiny_tokenizer, items, n=2, batch_size=4, max_prefixes=4)
    assert el.shape == (2,) and np.all((el >= 0) & (el <= 1))


def test_stopping_rule():
    assert stopping_rule(0.3, 0.01, 0.4, 0.02)
    assert not stopping_rule(0.5, 0.01, 0.4, 0.02)  # MA still above unseen
    assert not stopping_rule(0.3, 0.05, 0.4, 0.02)  # EL still above unseen
    assert stopping_rule(np.array([0.2, 0.4]), np.array([0.0, 0.02]), np.array([0.3, 0.35]), np.array([0.02]))
