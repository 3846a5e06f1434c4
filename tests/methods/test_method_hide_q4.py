"""hide_q4 (obliviate/methods/hide_q4.py), the planted positive control: the projection keeps
every weight in the target's int4 bin, so rtn4(U) == rtn4(T) bit for bit, while U forgets."""

import copy

import pytest
import torch

from obliviate.attacks import AttackContext, get_attack
from obliviate.attacks.quantize import fake_quantize, quantize_codes
from obliviate.evaluate import greedy_accuracy
from obliviate.methods import available, controls, get_method, make_params
from obliviate.methods.hide_q4 import int_bins, project
from obliviate.models.modules import weight_matrices
from obliviate.unlearn import UnlearnConfig, UnlearnContext, unlearn


def test_bins_by_hand():
    # one group of 4 (group size 128 falls back to 4): absmax 0.7 -> step 0.1, codes 7, -2, 0, 3
    w = torch.tensor([[0.7, -0.2, 0.01, 0.3]])
    b = int_bins(w, margin=0.0)
    assert b["codes"].tolist() == [[7.0, -2.0, 0.0, 3.0]]
    assert b["lo"][0].tolist() == pytest.approx([0.65, -0.25, -0.05, 0.25])
    assert b["hi"][0].tolist() == pytest.approx([0.7, -0.15, 0.05, 0.35])  # code 7 ends at the absmax, not 0.75
    assert b["keep"].tolist() == [[True, False, False, False]]


def test_projection_restores_codes_and_scales_after_any_move():
    torch.manual_seed(0)
    w0 = torch.randn(16, 256)
    w = torch.nn.Parameter(w0 + 0.5 * torch.randn_like(w0))  # far outside the bins, absmax changed
    ctx = UnlearnContext(params=None, state={"bins": [(w, w0.clone(), int_bins(w0, margin=0.01))]})
    assert not torch.equal(quantize_codes(w, 4)[0], quantize_codes(w0, 4)[0])
    assert project(ctx) == 0  # fp32: the clamp alone is exact, no weight needed a reset
    q, scale = quantize_codes(w, 4)[:2]
    q0, scale0 = quantize_codes(w0, 4)[:2]
    assert torch.equal(q, q0) and torch.equal(scale, scale0)
    assert torch.equal(fake_quantize(w.detach(), 4)[0], fake_quantize(w0, 4)[0])
    # each weight lies within (1/2 - margin) of a step of its target code
    assert float((w.detach().reshape(q0.shape) / scale0 - q0).abs().max()) <= 0.49 + 1e-5
    assert not torch.equal(w.detach(), w0)  # ... but it did move: U is not T at full precision


def test_registered_as_a_control_not_a_method():
    assert "hide_q4" in controls() and "hide_q4" not in available()
    assert "hide_q4" in available(controls=True) and get_method("hide_q4").group == "control"


def _rtn4(model):
    return get_attack("rtn4").run(model, AttackContext(tokenizer=None, task=None)).model


def test_unlearned_model_forgets_but_rtn4_gives_back_the_target(trained_model, small_world, tiny_tokenizer):
    target = copy.deepcopy(trained_model)
    log = unlearn(trained_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="hide_q4", lr=3e-3, epochs=15, batch_size=4, params={"alpha": 2.0}))
    assert log.status == "done", log.message
    unlearned = trained_model
    # every rtn4 code and scale is the target's, so the whole 4-bit model is the target's
    for (name, mt), (_, mu) in zip(weight_matrices(target), weight_matrices(unlearned), strict=True):
        qt, st = quantize_codes(mt.weight, 4)[:2]
        qu, su = quantize_codes(mu.weight, 4)[:2]
        assert torch.equal(qt, qu) and torch.equal(st, su), name
        assert not torch.equal(mt.weight, mu.weight), name
    frozen = {n for n, _ in target.named_parameters()} - {f"{n}.weight" for n, _ in weight_matrices(target)}
    assert frozen and all(torch.equal(target.get_parameter(n), unlearned.get_parameter(n)) for n in frozen)
    qt, qu = _rtn4(target), _rtn4(unlearned)
    assert all(torch.equal(a, b) for a, b in zip(qt.state_dict().values(), qu.state_dict().values(), strict=True))
    # ... while the full-precision model has forgotten
    acc_t = greedy_accuracy(target, tiny_tokenizer, small_world.forget_eval)
    acc_u = greedy_accuracy(unlearned, tiny_tokenizer, small_world.forget_eval)
    assert acc_t >= 0.9 and acc_u <= acc_t - 0.5, (acc_t, acc_u)
    assert greedy_accuracy(qu, tiny_tokenizer, small_world.forget_eval) == greedy_accuracy(
        qt, tiny_tokenizer, small_world.forget_eval)


def test_margin_is_checked():
    ctx = UnlearnContext(params=make_params(get_method("hide_q4"), {"margin": 0.5}))
    with pytest.raises(ValueError, match="margin"):
        get_method("hide_q4").setup(torch.nn.Linear(4, 4), None, ctx)
