"""Divergence is not success: a finite collapse of the retain loss stops the run as "diverged"
and keeps the last good (checked) weights."""

import torch

from obliviate.evaluate import greedy_accuracy, mean_answer_nll
from obliviate.unlearn import UnlearnConfig, unlearn


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_lr_1e6_diverges_and_keeps_the_last_good_weights(small_world, trained_model, tiny_tokenizer):
    before = _state(trained_model)
    retain_before = greedy_accuracy(trained_model, tiny_tokenizer, small_world.retain_eval)
    log = unlearn(trained_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="gd", lr=1e6, max_steps=6, batch_size=4, check_every=1, warmup_ratio=0.0))
    assert log.status == "diverged", (log.status, log.message)
    assert log.steps == 1 and "retain loss" in log.message and "step 0" in log.message
    # the last good check is the start: every weight is back, and so is retain accuracy
    for k, v in trained_model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert greedy_accuracy(trained_model, tiny_tokenizer, small_world.retain_eval) == retain_before


def test_a_sound_run_is_not_flagged_and_the_guard_can_be_switched_off(small_world, trained_model, tiny_tokenizer):
    start = mean_answer_nll(trained_model, tiny_tokenizer, small_world.retain_eval[:32])
    log = unlearn(trained_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="gd", lr=1e-4, max_steps=4, batch_size=4, check_every=2))
    assert (log.status, log.steps) == ("done", 4)
    assert mean_answer_nll(trained_model, tiny_tokenizer, small_world.retain_eval[:32]) < start + 1.0
    off = unlearn(trained_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="gd", lr=1e6, max_steps=1, batch_size=4, warmup_ratio=0.0, diverge_at=None))
    assert off.status == "done"  # what the loop did before the guard: a wrecked model reported as done
