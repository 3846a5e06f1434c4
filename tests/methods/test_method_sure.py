"""SURE (obliviate/methods/sure.py): the saliency mask, and that only the masked rows train.

The saliency is recomputed here from the tiny model's own gradients (cross-entropy written
with log_softmax + gather); the percentile rule is checked on hand-made saliencies.
"""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import obliviate.methods.sure as sure
from obliviate.data.collate import collate, encode_items, pad_id_of
from obliviate.methods import get_method, make_params
from obliviate.unlearn import UnlearnConfig, UnlearnContext, unlearn

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def _linear_names(model) -> list[str]:
    return [f"model.layers.{i}.{n}" for i in range(model.config.num_hidden_layers) for n in LINEARS]


def _ctx(task, tokenizer, batch_size, **overrides):
    ctx = UnlearnContext(params=make_params(get_method("sure"), overrides), task=task,
                         config=UnlearnConfig(method="sure", batch_size=batch_size))
    ctx.tokenizer = tokenizer
    return ctx


def _forget_ce(model, batch) -> torch.Tensor:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    target = batch["labels"][:, 1:]
    mask = target != -100
    picked = logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return -(picked * mask).sum() / mask.sum()


@pytest.mark.parametrize("threshold, expected", [(90, [[False] * 5, [False] * 4 + [True]]),
                                                 (80, [[False] * 5, [False] * 3 + [True] * 2]),
                                                 (50, [[False] * 5, [True] * 5])])
def test_percentile_mask_by_hand(threshold, expected):
    # 10 rows 1..10 over two layers; linear-interpolated percentile at position q*(n-1):
    # 90 -> 9.1 (1 row), 80 -> 8.2 (2 rows), 50 -> 5.5 (5 rows)
    saliency = {"a": torch.tensor([3.0, 1.0, 5.0, 2.0, 4.0]), "b": torch.tensor([6.0, 7.0, 8.0, 9.0, 10.0])}
    mask = sure.saliency_mask(saliency, threshold)
    assert [mask["a"].tolist(), mask["b"].tolist()] == expected


def test_saliency_is_the_row_norm_of_the_forget_gradient(small_world, tiny_model, tiny_tokenizer):
    # one batch holds the whole forget set, so the test's single gradient is setup's sum
    batch = collate(encode_items(tiny_tokenizer, small_world.forget), pad_id_of(tiny_tokenizer))
    modules = dict(tiny_model.named_modules())
    names = _linear_names(tiny_model)
    grads = torch.autograd.grad(_forget_ce(tiny_model, batch), [modules[n].weight for n in names],
                                allow_unused=True)
    ctx = _ctx(small_world, tiny_tokenizer, batch_size=len(small_world.forget))
    sure.setup(tiny_model, small_world, ctx)
    expected = {n: g.norm(dim=1) for n, g in zip(names, grads, strict=True)}
    assert sorted(ctx.state["saliency"]) == sorted(names)  # every decoder linear, no LM head
    for n in names:
        torch.testing.assert_close(ctx.state["saliency"][n], expected[n], rtol=1e-4, atol=1e-7)

    rows = torch.cat([expected[n] for n in names]).numpy()
    cut = np.percentile(rows, 90)
    n_rows = len(rows)
    assert len(np.unique(rows)) == n_rows  # distinct, so the count below is exact
    n_salient = sum(int(ctx.state["mask"][n].sum()) for n in names)
    assert n_salient == int((rows >= cut).sum()) == n_rows - math.ceil(0.9 * (n_rows - 1))
    for n in names:
        assert torch.equal(ctx.state["mask"][n], torch.from_numpy(expected[n].numpy() >= cut))

    # only the decoder linears with a salient row train; no gradient is left behind
    trainable = {n for n, p in tiny_model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.weight" for n in names if ctx.state["mask"][n].any()}
    assert all(p.grad is None for p in tiny_model.parameters())
    sure.finalize(tiny_model, ctx)


@pytest.mark.parametrize("base", ["gd", "npo_kl"])
def test_only_salient_rows_move_through_adamw(base, small_world, tiny_model, tiny_tokenizer, monkeypatch):
    masks = []
    choose = sure.saliency_mask
    monkeypatch.setattr(sure, "saliency_mask", lambda s, t: masks.append(choose(s, t)) or masks[-1])
    before = {k: v.detach().clone() for k, v in tiny_model.state_dict().items()}
    log = unlearn(tiny_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="sure", params={"base": base}, lr=1e-3, weight_decay=0.1,
                                max_steps=4, batch_size=4))
    assert (log.status, log.steps) == ("done", 4), log.message
    (mask,) = masks
    after = tiny_model.state_dict()
    weights = {f"{n}.weight": m for n, m in mask.items()}
    for key, value in after.items():
        if key not in weights:  # embeddings, norms, LM head: frozen
            assert torch.equal(value, before[key]), key
            continue
        m = weights[key]
        assert torch.equal(value[~m], before[key][~m]), key  # bit-identical despite weight decay
        assert (value[m] != before[key][m]).any(dim=1).all(), key  # every salient row moved
    assert sum(int(m.sum()) for m in mask.values()) > 0
    assert all(p.grad is None for p in tiny_model.parameters())


def test_unknown_base_names_the_choices(small_world, tiny_model, tiny_tokenizer):
    ctx = _ctx(small_world, tiny_tokenizer, batch_size=4, base="simnpo")
    with pytest.raises(ValueError, match="npo_kl"):
        sure.setup(copy.deepcopy(tiny_model), small_world, ctx)


def test_gradients_of_other_rows_are_zero(small_world, tiny_model, tiny_tokenizer):
    """So that gradient clipping measures the trained rows only."""
    ctx = _ctx(small_world, tiny_tokenizer, batch_size=4)
    sure.setup(tiny_model, small_world, ctx)
    batch = collate(encode_items(tiny_tokenizer, small_world.forget[:4]), pad_id_of(tiny_tokenizer), range(4))
    retain = collate(encode_items(tiny_tokenizer, small_world.retain[:4]), pad_id_of(tiny_tokenizer))
    get_method("sure").loss(tiny_model, batch, retain, ctx).backward()
    modules = dict(tiny_model.named_modules())
    for name, m in ctx.state["mask"].items():
        grad = modules[name].weight.grad
        if m.any():
            assert (grad[~m] == 0).all() and grad[m].abs().sum() > 0, name
        else:
            assert grad is None, name
    sure.finalize(tiny_model, ctx)
    assert not ctx.state.get("hooks")
