"""RMU (Li et al. 2024): the loss against a hand recomputation from the model's own hidden
states, the control vector, which weights train, and the direction of the forget term."""

import copy

import pytest
import torch

from obliviate.data.collate import collate, encode_items, pad_id_of
from obliviate.methods import get_method, make_params
from obliviate.methods.rmu import control_vector, resolve_layer
from obliviate.unlearn import UnlearnConfig, UnlearnContext, unlearn


@pytest.fixture
def batches(small_world, tiny_tokenizer):
    pad = pad_id_of(tiny_tokenizer)
    forget = collate(encode_items(tiny_tokenizer, small_world.forget[:3]), pad)
    retain = collate(encode_items(tiny_tokenizer, small_world.retain[:4]), pad)
    assert (forget["labels"] == -100).any(dim=1).all() and (forget["attention_mask"] == 0).any()
    return forget, retain


def _hidden(model, batch, layer):
    """Output of decoder layer `layer` = hidden_states[layer + 1] (layer 0 is not the last layer,
    whose entry there carries the final norm)."""
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    return out.hidden_states[layer + 1].float()


def _answer_mean_sq(h, target, labels):
    """mean over answer tokens of ||h_t - target_t||^2 / d, token by token."""
    values = [((h[b, t] - target[b, t]) ** 2).sum() / h.size(-1)
              for b in range(h.size(0)) for t in range(h.size(1)) if labels[b, t] != -100]
    return torch.stack(values).mean()


def _perturbed(model, scale=0.05):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return other


def _ctx(model, overrides=None, ref=None, seed=0):
    method = get_method("rmu")
    ctx = UnlearnContext(params=make_params(method, overrides), config=UnlearnConfig(method="rmu", seed=seed),
                         ref_model=ref)
    method.setup(model, None, ctx)
    return ctx


def test_control_vector_has_norm_c_and_follows_the_seed():
    u = control_vector(64, 6.5, seed=3)
    assert float(u.norm()) == pytest.approx(6.5, rel=1e-6)
    assert (u >= 0).all()  # U[0,1) before normalising
    assert torch.equal(u, control_vector(64, 6.5, seed=3))
    assert not torch.equal(u, control_vector(64, 6.5, seed=4))


def test_default_layer_is_a_quarter_of_the_depth():
    assert resolve_layer(None, 32) == 7  # the published Zephyr-7B layer
    assert resolve_layer(None, 2) == 0
    with pytest.raises(ValueError, match="layers 0..1"):
        resolve_layer(2, 2)


def test_loss_matches_hand_recomputation(tiny_model, batches):
    forget, retain = batches
    ref = _perturbed(tiny_model)
    ctx = _ctx(tiny_model, {"alpha": 3.0, "c": 2.0}, ref=ref, seed=5)
    assert ctx.state["rmu_layer"] == 0
    control = control_vector(64, 2.0, seed=5)
    assert torch.equal(ctx.state["rmu_control"], control)
    h_f = _hidden(tiny_model, forget, 0)
    forget_term = _answer_mean_sq(h_f, control.expand_as(h_f), forget["labels"])
    retain_term = _answer_mean_sq(_hidden(tiny_model, retain, 0), _hidden(ref, retain, 0), retain["labels"])
    assert float(retain_term) > 1e-4  # the retain term is really exercised
    with torch.no_grad():
        got = get_method("rmu").loss(tiny_model, forget, retain, ctx)
    assert float(got) == pytest.approx(float(forget_term + 3.0 * retain_term), abs=1e-5, rel=1e-6)


def test_setup_trains_only_the_down_proj_of_layers_l_minus_2_to_l(tiny_model):
    ctx = _ctx(tiny_model, {"layer": 1})
    trainable = sorted(n for n, p in tiny_model.named_parameters() if p.requires_grad)
    assert trainable == ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"]
    get_method("rmu").finalize(tiny_model, ctx)
    assert all(p.requires_grad for p in tiny_model.parameters())


def test_unlearn_changes_only_down_proj_and_moves_forget_states_to_the_control(
        small_world, tiny_model, tiny_tokenizer):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    forget = collate(encode_items(tiny_tokenizer, small_world.forget), pad_id_of(tiny_tokenizer))
    control = control_vector(64, 6.5, seed=0)
    h = _hidden(tiny_model, forget, 0)
    dist_before = _answer_mean_sq(h, control.expand_as(h), forget["labels"])
    log = unlearn(tiny_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="rmu", lr=1e-2, max_steps=5, batch_size=4, seed=0))
    assert (log.status, log.steps) == ("done", 5), log.message
    changed = sorted(k for k, v in tiny_model.state_dict().items() if not torch.equal(v, before[k]))
    assert changed == ["model.layers.0.mlp.down_proj.weight"]  # default layer 0: l-2..l is layer 0
    h = _hidden(tiny_model, forget, 0)
    dist_after = _answer_mean_sq(h, control.expand_as(h), forget["labels"])
    assert float(dist_after) < float(dist_before) - 1e-3, (float(dist_before), float(dist_after))
    assert all(p.requires_grad for p in tiny_model.parameters())  # finalize restored the flags
