"""Attacks on residual-stream projections (mrp): proj_remove and proj_relearn."""

import pytest
import torch

from obliviate.attacks import AttackContext, AttackUnavailable, available, default_attacks, get_attack
from obliviate.attacks.relearn import split_forget_by_subject
from obliviate.audit import run_attacks
from obliviate.data.collate import collate, encode_items, pad_id_of
from obliviate.data.task import DataError
from obliviate.evaluate import EvalConfig
from obliviate.models import projection as proj
from obliviate.unlearn import UnlearnConfig, unlearn


def _ctx(tokenizer, task, **params) -> AttackContext:
    return AttackContext(tokenizer=tokenizer, task=task, seed=0, params=params)


def _logits(model, tokenizer, items) -> torch.Tensor:
    batch = collate(encode_items(tokenizer, items), pad_id_of(tokenizer))
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.fixture
def mrp_model(trained_model, small_world, tiny_tokenizer):
    """The trained tiny model after 20 mrp steps: a rank-2 projection on layer 0."""
    log = unlearn(trained_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="mrp", lr=1e-2, max_steps=20, batch_size=4))
    assert log.status == "done" and proj.projections(trained_model)[0].rank == 2
    return trained_model


def test_registered_in_the_default_set():
    attacks = available()
    assert attacks["proj_remove"].family == "projection" and attacks["proj_relearn"].family == "relearning"
    assert {"proj_remove", "proj_relearn"} <= set(default_attacks())


@pytest.mark.parametrize("name", ["proj_remove", "proj_relearn"])
def test_unavailable_without_a_projection(name, tiny_model, small_world, tiny_tokenizer):
    with pytest.raises(AttackUnavailable, match=f"{name}: the model carries no residual-stream projection"):
        get_attack(name).run(tiny_model, _ctx(tiny_tokenizer, small_world))
    # the audit records it as n/a instead of failing
    out = run_attacks(tiny_model, tiny_tokenizer, small_world, [name], EvalConfig())
    assert out[name].startswith("unavailable: ") and "no residual-stream projection" in out[name]


def test_unknown_option_is_an_error(mrp_model, small_world, tiny_tokenizer):
    with pytest.raises(DataError, match="bogus"):
        get_attack("proj_relearn").run(mrp_model, _ctx(tiny_tokenizer, small_world, bogus=1))


def test_proj_remove_gives_back_the_bare_weights(trained_model, small_world, tiny_tokenizer):
    items = small_world.forget[:4]
    target_logits = _logits(trained_model, tiny_tokenizer, items)
    unlearn(trained_model, tiny_tokenizer, small_world, UnlearnConfig(method="mrp", lr=1e-2, max_steps=5,
                                                                      batch_size=4))
    projected = _logits(trained_model, tiny_tokenizer, items)
    out = get_attack("proj_remove").run(trained_model, _ctx(tiny_tokenizer, small_world))
    assert out.model is not trained_model and out.forget_items is None
    assert out.info == {"removed": {0: 2}}
    assert not proj.has_projection(out.model)
    # mrp trains only the projection: without it the model is the target again
    assert torch.allclose(_logits(out.model, tiny_tokenizer, items), target_logits, atol=1e-5)
    # the attacked model is a copy: the input keeps its projection
    assert proj.has_projection(trained_model)
    assert torch.allclose(_logits(trained_model, tiny_tokenizer, items), projected)


def test_proj_relearn_trains_only_the_layers_below_and_keeps_the_projection(mrp_model, small_world,
                                                                             tiny_tokenizer):
    before = {k: v.clone() for k, v in mrp_model.state_dict().items()}
    out = get_attack("proj_relearn").run(mrp_model, _ctx(tiny_tokenizer, small_world, lrs=[1e-3, 3e-3],
                                                         epochs=2))
    _, held_out = split_forget_by_subject(small_world.forget_eval, 0, 0.5)
    assert out.forget_items == held_out
    assert set(out.info["per_lr"]) == {1e-3, 3e-3} and out.info["lr"] in (1e-3, 3e-3)
    assert out.info["projected_layers"] == {0: 2} and out.info["trained_layers"] == [0]
    after = out.model.state_dict()
    changed = {k for k, v in after.items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("model.layers.0.") for k in changed), changed
    assert "model.layers.0.residual_projection.fixed" not in changed  # the projection is kept as it was
    assert any(k.startswith("model.layers.0.mlp.") for k in changed)
    # the attacked copy still projects, and the input model is untouched
    assert proj.projections(out.model)[0].rank == 2
    assert all(torch.equal(v, before[k]) for k, v in mrp_model.state_dict().items())
    assert all(w.requires_grad for w in out.model.parameters())  # the flags are restored on the copy


def test_proj_relearn_on_a_higher_layer_trains_every_layer_up_to_it(trained_model, small_world, tiny_tokenizer):
    unlearn(trained_model, tiny_tokenizer, small_world,
            UnlearnConfig(method="mrp", params={"layers": [1]}, lr=1e-2, max_steps=3, batch_size=4))
    before = {k: v.clone() for k, v in trained_model.state_dict().items()}
    out = get_attack("proj_relearn").run(trained_model, _ctx(tiny_tokenizer, small_world, lrs=[1e-3], epochs=1))
    assert out.info["trained_layers"] == [0, 1]
    changed = {k for k, v in out.model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("model.layers.0.") for k in changed) and any(k.startswith("model.layers.1.")
                                                                         for k in changed)
    frozen = ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
              "model.layers.1.residual_projection.fixed")
    assert not changed & set(frozen)
