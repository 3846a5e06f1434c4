"""Resumable unlearning: batch order from (seed, pass, position), accelerate checkpoints, bit-identical resume."""

from __future__ import annotations

import dataclasses

import torch

import obliviate.unlearn as U
from obliviate.unlearn import UnlearnConfig, _EpochShuffle, checkpoint_path, unlearn


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_epoch_shuffle_is_a_new_permutation_each_pass_and_reproducible():
    s = _EpochShuffle(50, seed=3)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    assert sorted(first) == sorted(second) == list(range(50))
    assert first != second  # a new order each pass
    s.set_epoch(0)
    assert list(s) == first  # a pure function of (seed, pass)


def test_retain_batches_are_reshuffled_every_pass(monkeypatch, trained_model, tiny_tokenizer, small_world):
    """itertools.cycle over a DataLoader replayed the first pass's order forever."""
    seen: list[tuple[int, ...]] = []
    real = U.get_method

    def recording(name):
        m = real(name)

        def loss(model, forget, retain, ctx):
            seen.append(tuple(retain["index"].tolist()))
            return m.loss(model, forget, retain, ctx)
        return dataclasses.replace(m, loss=loss)

    monkeypatch.setattr(U, "get_method", recording)
    n_retain = len(small_world.retain)
    cfg = UnlearnConfig(method="gd", lr=1e-4, batch_size=2, retain_batch_size=n_retain // 2, max_steps=8)
    unlearn(trained_model, tiny_tokenizer, small_world, cfg)
    passes = [seen[i:i + 2] for i in range(0, len(seen) - 1, 2)]
    assert len(passes) >= 3
    assert len({tuple(p) for p in passes}) > 1, "every pass over the retain set saw the same batches"


def test_resume_from_a_checkpoint_is_bit_identical(tmp_path, _trained_state, tiny_tokenizer, small_world):
    from obliviate.models.tiny import build_model

    cfg_model, state = _trained_state

    def fresh():
        m = build_model(cfg_model, tiny_tokenizer, seed=0)
        m.load_state_dict(state)
        return m

    cfg = UnlearnConfig(method="npo_gd", lr=3e-4, batch_size=2, retain_batch_size=3, max_steps=12,
                        checkpoint_every=4, check_every=6, grad_accum=1)
    full = fresh()
    log_full = unlearn(full, tiny_tokenizer, small_world, cfg)
    assert log_full.steps == 12

    ckpt = tmp_path / "ckpt"
    stopped = fresh()  # killed (here: stopped) at step 6, after the checkpoint of step 4
    log_stop = unlearn(stopped, tiny_tokenizer, small_world, cfg, checkpoint_dir=ckpt,
                       stop_when=lambda m: "stop here")
    assert log_stop.steps == 6 and checkpoint_path(ckpt) is not None

    resumed = fresh()
    log_res = unlearn(resumed, tiny_tokenizer, small_world, cfg, checkpoint_dir=ckpt, resume=True)
    assert log_res.steps == 12
    assert log_res.losses[:4] == log_full.losses[:4]  # the log before the checkpoint is restored
    for k, v in _weights(full).items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert not torch.equal(_weights(stopped)["lm_head.weight"], _weights(full)["lm_head.weight"])


def test_resume_without_a_checkpoint_starts_from_the_beginning(tmp_path, trained_model, tiny_tokenizer, small_world):
    cfg = UnlearnConfig(method="ga", lr=1e-4, batch_size=2, max_steps=3)
    log = unlearn(trained_model, tiny_tokenizer, small_world, cfg, checkpoint_dir=tmp_path / "none", resume=True)
    assert log.steps == 3
