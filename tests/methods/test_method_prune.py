"""Selective pruning (Pochinkov & Schoots 2023): the importance ratio and the top-k choice on
hand-made numbers, then the pruning rounds on the tiny model."""

import torch

from obliviate.data.collate import collate, encode_items, pad_id_of
from obliviate.methods import get_method
from obliviate.methods._losses import nll_mean
from obliviate.methods.prune import (
    PruneParams,
    batches_of,
    importance,
    mean_abs_inputs,
    select_top,
    selective_prune,
    target_modules,
    units_per_step,
)
from obliviate.unlearn import UnlearnConfig, unlearn


def test_importance_is_forget_over_retain_plus_eps():
    forget = torch.tensor([1.0, 0.5, 0.0, 2.0])
    retain = torch.tensor([1.0, 0.0, 3.0, 0.999])
    got = importance(forget, retain, 1e-3)
    assert torch.allclose(got, torch.tensor([1 / 1.001, 500.0, 0.0, 2.0]))


def test_select_top_skips_pruned_units():
    scores = torch.tensor([[5.0, 1.0, 4.0], [3.0, 9.0, 2.0]])
    pruned = torch.tensor([[False, False, False], [False, True, False]])
    assert select_top(scores, pruned, 2).tolist() == [0, 2]  # 9.0 is already pruned
    everything_but_one = torch.ones(2, 3, dtype=torch.bool)
    everything_but_one[0, 1] = False
    assert select_top(scores, everything_but_one, 3).tolist() == [1]  # no more than are left


def test_units_per_step_rounds_and_takes_at_least_one():
    assert units_per_step(0.02, 256) == 5  # 5.12
    assert units_per_step(0.02, 128) == 3  # 2.56
    assert units_per_step(0.001, 128) == 1


def test_mean_abs_inputs_over_answer_tokens(tiny_model, small_world, tiny_tokenizer):
    batch = collate(encode_items(tiny_tokenizer, small_world.forget[:3]), pad_id_of(tiny_tokenizer))
    module = target_modules(tiny_model, "mlp")[1]
    seen = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        tiny_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    handle.remove()
    answer = batch["labels"] != -100
    expected = seen[0][answer].abs().mean(0)
    got = mean_abs_inputs(tiny_model, [batch], [module])
    assert got.shape == (1, 128)
    assert torch.allclose(got[0].float(), expected, atol=1e-6)


def _nll(model, tokenizer, items):
    with torch.no_grad():
        return float(nll_mean(model, collate(encode_items(tokenizer, items), pad_id_of(tokenizer))))


def test_prune_rounds_zero_exactly_k_new_columns_and_nothing_else(trained_model, small_world, tiny_tokenizer):
    params = PruneParams(frac=0.05, steps=3)
    before = {k: v.clone() for k, v in trained_model.state_dict().items()}
    forget = batches_of(tiny_tokenizer, small_world.forget, 8, 512, "cpu")
    retain = batches_of(tiny_tokenizer, small_world.retain, 8, 512, "cpu")
    f0, r0 = _nll(trained_model, tiny_tokenizer, small_world.forget), _nll(trained_model, tiny_tokenizer,
                                                                          small_world.retain)
    pruned = selective_prune(trained_model, forget, retain, params)
    # mlp: 2 layers x 128 neurons, round(0.05 * 256) = 13 per step; attn: 2 x 64 dims, round(6.4) = 6
    assert int(pruned["mlp"].sum()) == 3 * 13 and int(pruned["attn"].sum()) == 3 * 6
    after = trained_model.state_dict()
    for target, name in (("mlp", "mlp.down_proj"), ("attn", "self_attn.o_proj")):
        for layer in range(2):
            key = f"model.layers.{layer}.{name}.weight"
            cols = pruned[target][layer]
            assert (after[key][:, cols] == 0).all()
            assert torch.equal(after[key][:, ~cols], before[key][:, ~cols])
    untouched = [k for k in before if "down_proj" not in k and "o_proj" not in k]
    assert all(torch.equal(after[k], before[k]) for k in untouched)
    f1, r1 = _nll(trained_model, tiny_tokenizer, small_world.forget), _nll(trained_model, tiny_tokenizer,
                                                                          small_world.retain)
    assert f1 - f0 > 2 * (r1 - r0) and f1 - f0 > 0.05, (f0, f1, r0, r1)


def test_unlearn_with_prune_takes_no_step(small_world, tiny_model, tiny_tokenizer):
    assert not get_method("prune").trains
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    log = unlearn(tiny_model, tiny_tokenizer, small_world, UnlearnConfig(method="prune", batch_size=4))
    assert (log.status, log.steps) == ("done", 0)
    zeroed = {k: int(((v == 0).all(0) & ~(before[k] == 0).all(0)).sum())
              for k, v in tiny_model.state_dict().items() if k.endswith(("down_proj.weight", "o_proj.weight"))}
    mlp = sum(n for k, n in zeroed.items() if "down_proj" in k)
    attn = sum(n for k, n in zeroed.items() if "o_proj" in k)
    assert (mlp, attn) == (5 * 5, 5 * 3)  # round(0.02 * 256) = 5, round(0.02 * 128) = 3, 5 steps
