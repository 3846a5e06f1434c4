"""Tokenization boundary, padding masks, and the one-pass evaluator against direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from obliviate.data.collate import collate, collate_prompts, encode, encode_prompt
from obliviate.evaluate import EvalConfig, evaluate, probe_set, score_sequences
from obliviate.methods._losses import sequence_logp


def test_prompt_is_a_prefix_of_the_training_sequence(tiny_tokenizer):
    enc = encode(tiny_tokenizer, "Where was Ann born?", "Ann was born in Oslo.")
    assert enc.prompt_ids == encode_prompt(tiny_tokenizer, "Where was Ann born?")
    assert enc.prompt_ids[0] == tiny_tokenizer.bos_token_id
    assert enc.answer_ids[-1] == tiny_tokenizer.eos_token_id
    # no lone-space token at the boundary: the answer starts with a space-glued word
    assert tiny_tokenizer.convert_ids_to_tokens(enc.prompt_ids[-1]) == ":"
    assert tiny_tokenizer.decode(enc.answer_ids[:-1]) == " Ann was born in Oslo."


def test_collate_masks_prompt_and_padding_not_eos(tiny_tokenizer):
    a = encode(tiny_tokenizer, "Q one?", "short.")
    b = encode(tiny_tokenizer, "A much longer question here?", "a longer answer than the other.")
    batch = collate([a, b], tiny_tokenizer.pad_token_id)
    la = len(a.prompt_ids) + len(a.answer_ids)
    assert batch["attention_mask"][0].sum() == la
    assert (batch["labels"][0, : len(a.prompt_ids)] == -100).all()
    assert batch["labels"][0, la - 1] == tiny_tokenizer.eos_token_id  # EOS is a real label
    assert (batch["labels"][0, la:] == -100).all()
    left = collate_prompts([a.prompt_ids, b.prompt_ids], tiny_tokenizer.pad_token_id)
    assert left["attention_mask"][0, -1] == 1 and left["attention_mask"][0, 0] == 0


def test_scored_logp_matches_direct_forward(tiny_model, tiny_tokenizer, small_world):
    items = small_world.forget[:5]
    encs = [encode(tiny_tokenizer, it.question, it.answer) for it in items]
    scored = score_sequences(tiny_model, encs, tiny_tokenizer.pad_token_id, batch_size=2, vocab_stats=True)
    with torch.no_grad():
        for enc, rec in zip(encs, scored, strict=True):
            direct = sequence_logp(tiny_model, collate([enc], tiny_tokenizer.pad_token_id))
            assert rec["logp"].sum() == pytest.approx(float(direct), abs=1e-4)
            assert len(rec["logp"]) == len(enc.answer_ids)
            assert (rec["sigma"] >= 0).all()


def test_evaluate_reports_every_schema_metric(tiny_model, tiny_tokenizer, small_world):
    cfg = EvalConfig(max_new_tokens=8)
    oracle = evaluate(tiny_model, tiny_tokenizer, small_world, cfg)
    res = evaluate(tiny_model, tiny_tokenizer, small_world, cfg, oracle=oracle)
    for key in ("forget_acc", "retain_acc", "forget_prob", "forget_rouge", "forget_truth_ratio",
                "forget_quality", "model_utility", "privleak", "mia_min_k_auc", "utility_world_facts_prob"):
        assert key in res.metrics, key
    assert res.metrics["forget_quality"] == pytest.approx(1.0)  # same model as its own oracle
    assert res.metrics["privleak"] == pytest.approx(0.0)
    assert len(res.per_item["forget"]["prob"]) == len(small_world.forget_eval)
    probe = probe_set(tiny_model, tiny_tokenizer, small_world.forget_eval[:3], cfg)
    assert np.allclose(np.exp(-probe["nll_avg"]), res.per_item["forget"]["prob"][:3])
