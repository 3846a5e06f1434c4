"""One forward pass over forget + retain (`Method.joint`, `joint_forward`) gives the loss and the
gradient of separate passes, and every slice it prepares is used (a method declaring a batch it
never forwards would waste a forward). Length-grouped batches are a seeded permutation with
less padding."""

import copy

import pytest
import torch

from obliviate.data.collate import collate, encode, pad_id_of
from obliviate.methods import available, get_method, make_params
from obliviate.methods._losses import joint_forward
from obliviate.unlearn import _PARTS, UnlearnContext, _EpochShuffle

JOINT = sorted(n for n, m in available().items() if m.joint)
INDEX = [3, 0, 5]


def test_the_methods_that_should_join_do():
    assert {"gd", "npo_gd", "npo_kl", "idk_dpo"} <= set(JOINT)


@pytest.fixture
def batches(small_world, tiny_tokenizer):
    tok, pad = tiny_tokenizer, pad_id_of(tiny_tokenizer)
    items = [small_world.forget[i] for i in INDEX]
    forget = collate([encode(tok, it.question, it.answer) for it in items], pad, INDEX)
    forget["refusal"] = collate([encode(tok, it.question, "I really could not say, sorry.") for it in items], pad,
                                INDEX)
    # retain items longer and shorter than the forget ones: the stacked batch needs extra padding
    retain = collate([encode(tok, it.question, it.answer + extra) for it, extra in
                      zip(small_world.retain[:4], ["", " and more words here", "", " x"], strict=True)], pad)
    assert retain["input_ids"].shape[1] != forget["input_ids"].shape[1]
    return forget, retain


def _ctx(name, model):
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return UnlearnContext(params=make_params(get_method(name)), ref_model=ref,
                          ref_forget_logp=-50.0 - torch.arange(8.0), ref_refusal_logp_cache=-40.0 - torch.arange(8.0))


def _loss_and_grad(name, model, forget, retain, ctx, joint: bool):
    forget, retain = copy.deepcopy(forget), copy.deepcopy(retain)
    model.zero_grad()
    if joint:
        joint_forward(model, [_PARTS[p](forget, retain) for p in get_method(name).joint])
    loss = get_method(name).loss(model, forget, retain, ctx)
    loss.backward()
    left = [k for k, b in (("forget", forget), ("refusal", forget["refusal"]), ("retain", retain)) if "_logits" in b]
    return float(loss.detach()), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]), left


@pytest.mark.parametrize("name", JOINT)
def test_joint_forward_matches_separate_passes(name, tiny_model, batches):
    forget, retain = batches
    ctx = _ctx(name, tiny_model)
    loss, grad, _ = _loss_and_grad(name, tiny_model, forget, retain, ctx, joint=False)
    jloss, jgrad, left = _loss_and_grad(name, tiny_model, forget, retain, ctx, joint=True)
    assert left == [], f"{name} declares joint batches it never forwards: {left}"
    assert jloss == pytest.approx(loss, rel=1e-5, abs=1e-6)
    assert torch.allclose(jgrad, grad, rtol=1e-4, atol=1e-6)
    assert grad.abs().sum() > 0


def test_the_cached_slice_is_for_the_trained_model_only(tiny_model, batches):
    """The frozen reference model must run its own forward, not read the trained model's slice."""
    from obliviate.methods._losses import forward_logits

    forget, retain = copy.deepcopy(batches[0]), copy.deepcopy(batches[1])
    joint_forward(tiny_model, [forget, retain])
    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        other.lm_head.weight.mul_(2)
        assert not torch.allclose(forward_logits(other, retain), forward_logits(tiny_model, retain))
    assert "_logits" not in retain and "_logits" in forget  # used once


def _pad_share(order, lengths, batch_size):
    real = padded = 0
    for k in range(0, len(order), batch_size):
        chunk = [lengths[i] for i in order[k:k + batch_size]]
        real, padded = real + sum(chunk), padded + max(chunk) * len(chunk)
    return 1 - real / padded


def test_length_grouped_batches_are_a_seeded_permutation_with_less_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(20, 180, (800,), generator=g).tolist()
    grouped, plain = _EpochShuffle(800, 3, lengths, 16), _EpochShuffle(800, 3)
    order = list(grouped)
    assert sorted(order) == list(range(800))
    assert order == list(_EpochShuffle(800, 3, lengths, 16))  # a pure function of (seed, pass)
    grouped.set_epoch(1)
    assert list(grouped) != order
    assert _pad_share(order, lengths, 16) < 0.1 < 0.3 < _pad_share(list(plain), lengths, 16)
