"""Quantization attacks: RTN by hand, against optimum-quanto, on tiny Llamas; bitsandbytes; noise; diagnostics."""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from torch import nn

from obliviate.attacks import AttackContext, AttackUnavailable, available, get_attack
from obliviate.attacks.quantize import (
    fake_quantize,
    int_step,
    mean_step_ratio,
    quantize_codes,
    quantized_change_fraction,
    relative_weight_change,
    resolve_group_size,
)
from obliviate.models.modules import weight_matrices
from obliviate.models.tiny import TinyModelConfig, build_model

RTN = sorted(n for n, a in available().items() if n.startswith("rtn"))
DECODER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _ctx(task, tok, seed=0, **params):
    return AttackContext(tokenizer=tok, task=task, seed=seed, params=params)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same(model, snapshot):
    state = model.state_dict()
    assert state.keys() == snapshot.keys()
    for k, v in snapshot.items():
        assert torch.equal(state[k], v), k


def _bitsandbytes():
    # ImportError too: a bitsandbytes whose native library fails to load is as good as absent
    return pytest.importorskip("bitsandbytes", exc_type=ImportError)


def _logits(model, tok):
    x = tok(["Question: where was the author born?\nAnswer:"], return_tensors="pt")
    with torch.no_grad():
        return model(**x).logits


# --------------------------------------------------------------------------------------------
# fake_quantize on hand-made weights
# --------------------------------------------------------------------------------------------

def test_symmetric_int4_per_channel_by_hand():
    # row 0: scale 0.7/7 = 0.1, w/s = [7, 1, -3.4, 2.6] -> [7, 1, -3, 3]
    # row 1: scale 1.4/7 = 0.2, w/s = [-7, 2.3, 0, 4.3] -> [-7, 2, 0, 4]
    w = torch.tensor([[0.7, 0.1, -0.34, 0.26], [-1.4, 0.46, 0.0, 0.86]])
    out, gs = fake_quantize(w, 4, group_size=None)
    assert gs == 4
    torch.testing.assert_close(out, torch.tensor([[0.7, 0.1, -0.3, 0.3], [-1.4, 0.4, 0.0, 0.8]]),
                               atol=1e-6, rtol=0)
    q, scale, zero, _ = quantize_codes(w, 4, None)
    assert q.reshape(2, 4).tolist() == [[7, 1, -3, 3], [-7, 2, 0, 4]]
    torch.testing.assert_close(scale.flatten(), torch.tensor([0.1, 0.2]))
    assert (zero == 0).all()


def test_symmetric_groups_have_their_own_scales():
    # the two rows above side by side: group 4 quantizes each half as before; per-channel
    # uses scale 0.2 for the whole row and rounds the first half coarsely
    w = torch.tensor([[0.7, 0.1, -0.34, 0.26, -1.4, 0.46, 0.0, 0.86]])
    out, gs = fake_quantize(w, 4, group_size=4)
    assert gs == 4
    expected = torch.tensor([[0.7, 0.1, -0.3, 0.3, -1.4, 0.4, 0.0, 0.8]])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    # per-channel: scale 0.2, w/s = [3.5, 0.5, -1.7, 1.3, ...]: ties round to even
    per_row, _ = fake_quantize(w, 4, group_size=None)
    torch.testing.assert_close(per_row[0, :4], torch.tensor([0.8, 0.0, -0.4, 0.2]), atol=1e-6, rtol=0)


def test_asymmetric_int2_by_hand():
    # straddles zero: min -0.3, max 0.6, scale 0.9/3 = 0.3, zero = round(1) = 1
    # all positive: min 0.2, max 0.8, scale 0.2, zero = round(-1) = -1: min -> code 0
    w = torch.tensor([[-0.3, 0.0, 0.32, 0.6], [0.2, 0.45, 0.8, 0.65]])
    q, scale, zero, _ = quantize_codes(w, 2, None, symmetric=False)
    assert q.reshape(2, 4).tolist() == [[0, 1, 2, 3], [0, 1, 3, 2]]
    assert zero.flatten().tolist() == [1, -1]
    torch.testing.assert_close(scale.flatten(), torch.tensor([0.3, 0.2]))
    out, _ = fake_quantize(w, 2, None, symmetric=False)
    torch.testing.assert_close(out, torch.tensor([[-0.3, 0.0, 0.3, 0.6], [0.2, 0.4, 0.8, 0.6]]),
                               atol=1e-6, rtol=0)


def test_asymmetric_all_positive_row_spans_every_code():
    w = torch.linspace(0.5, 2.0, 16).reshape(1, 16)  # on the 4-bit grid of its own range
    q, _, _, _ = quantize_codes(w, 4, None, symmetric=False)
    assert q.flatten().tolist() == list(range(16))
    out, _ = fake_quantize(w, 4, None, symmetric=False)
    torch.testing.assert_close(out, w, atol=1e-6, rtol=0)


@pytest.mark.parametrize("symmetric", [True, False])
def test_all_zero_row_stays_zero(symmetric):
    w = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.5, -0.2, 0.1, 0.3]])
    out, _ = fake_quantize(w, 4, None, symmetric=symmetric)
    assert torch.equal(out[0], torch.zeros(4))
    assert torch.isfinite(out).all()


def test_constant_nonzero_group_is_exact_asymmetric():
    w = torch.full((2, 8), -0.37)
    out, _ = fake_quantize(w, 4, 4, symmetric=False)
    torch.testing.assert_close(out, w, atol=1e-7, rtol=0)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("bits,group_size", [(8, 128), (4, 128), (3, 128), (4, None), (3, 64)])
def test_quantizing_twice_is_idempotent(bits, group_size, symmetric):
    w = torch.randn(16, 256) * 0.05
    once, _ = fake_quantize(w, bits, group_size, symmetric)
    twice, _ = fake_quantize(once, bits, group_size, symmetric)
    torch.testing.assert_close(twice, once, atol=1e-6, rtol=0)


def test_group_fallback_returns_the_divisor_it_uses():
    assert resolve_group_size(192, 128) == 96
    assert resolve_group_size(64, 128) == 64
    assert resolve_group_size(100, 128) == 100
    assert resolve_group_size(200, 128) == 100
    assert resolve_group_size(512, None) == 512 and resolve_group_size(512, 0) == 512
    w = torch.randn(4, 192)
    out, gs = fake_quantize(w, 4, 128)
    assert gs == 96
    assert torch.equal(out, fake_quantize(w, 4, 96)[0])
    assert not torch.equal(out, fake_quantize(w, 4, None)[0])


def test_dtype_is_kept():
    w = torch.randn(8, 128, dtype=torch.bfloat16)
    out, _ = fake_quantize(w, 4)
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("symmetric", [True, False])
def test_error_grows_as_bits_shrink(symmetric):
    w = torch.randn(64, 256)
    err = {b: float(((fake_quantize(w, b, 128, symmetric)[0] - w) ** 2).mean()) for b in (8, 4, 3)}
    assert err[8] < err[4] < err[3]
    # RTN error is within half a step of every weight
    step = int_step(w, 4, 128)[0]
    assert ((fake_quantize(w, 4, 128)[0] - w).abs() <= step / 2 + 1e-6).all()


# --------------------------------------------------------------------------------------------
# Cross-check against optimum-quanto (pip install 'obliviate[dev]')
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quanto():
    return pytest.importorskip("optimum.quanto", reason="optimum-quanto not installed (obliviate[dev])")


def test_rtn8_equals_quanto_qint8_on_tiny_llama(quanto, tiny_model, small_world, tiny_tokenizer):
    """quanto's qint8 weights: per output row, scale = absmax / 127, codes round(w / scale)
    clamped to [-128, 127] (AbsmaxOptimizer + quantize_symmetric), our symmetric convention.
    quanto has no int8 groups; on this model every in_features (64, 128) is <= 128, so rtn8's
    group 128 is the whole row (64 after the fallback) and the two must agree exactly."""
    ours = get_attack("rtn8").run(tiny_model, _ctx(small_world, tiny_tokenizer)).model
    theirs = copy.deepcopy(tiny_model)
    quanto.quantize(theirs, weights=quanto.qint8, exclude="lm_head")
    quanto.freeze(theirs)
    mine = dict(weight_matrices(ours))
    n = 0
    for name, _ in weight_matrices(tiny_model):
        q_module = theirs.get_submodule(name)
        assert type(q_module).__name__ == "QLinear", name
        torch.testing.assert_close(mine[name].weight, q_module.weight.dequantize(), atol=1e-7, rtol=0)
        n += 1
    assert n == 14


def test_rtn4_asym_equals_quanto_qint4_with_integer_zero_point(quanto):
    """quanto's qint4 is affine: MaxOptimizer gives scale = (max - min) / 15 per group of 128
    along the row. With zeropoint=True its shift is round(-min / scale) clamped to [0, 15] and
    q = clamp(round(w / scale) + shift, 0, 15): our asymmetric convention whenever min < 0 < max
    (then the clamp of the shift never binds), which holds for every group of these weights."""
    torch.manual_seed(1)
    w = torch.randn(16, 512) * 0.02
    groups = w.reshape(-1, 128)
    assert (groups.amin(1) < 0).all() and (groups.amax(1) > 0).all()
    scale, shift = quanto.MaxOptimizer()(w, qtype=quanto.qint4, axis=0, group_size=128, zeropoint=True)
    # optimized=False: the plain QBits tensor; kernel-specific packing adds nothing to dequantize()
    qt = quanto.quantize_weight(w, qtype=quanto.qint4, axis=0, scale=scale, shift=shift, group_size=128,
                                optimized=False)
    ours, gs = fake_quantize(w, 4, 128, symmetric=False)
    assert gs == 128
    torch.testing.assert_close(ours, qt.dequantize(), atol=1e-7, rtol=0)
    _, our_scale, our_zero, _ = quantize_codes(w, 4, 128, symmetric=False)
    torch.testing.assert_close(our_scale.reshape(-1, 1), scale, atol=0, rtol=0)
    assert torch.equal(our_zero.reshape(-1, 1).to(torch.uint8), shift)


def test_quanto_default_float_shift_differs_by_less_than_a_step(quanto):
    """quanto's default qint4 (zeropoint=False) shifts by -min in floating point: its grid is
    min + k * scale (min and max exact, zero not on the grid) where ours is (k - zero) * scale
    (zero exact). Same scale, both within half a step of w, so within one step of each other."""
    torch.manual_seed(2)
    w = torch.randn(8, 256) * 0.02
    scale, shift = quanto.MaxOptimizer()(w, qtype=quanto.qint4, axis=0, group_size=128)
    theirs = quanto.quantize_weight(w, qtype=quanto.qint4, axis=0, scale=scale, shift=shift, group_size=128,
                                    optimized=False).dequantize()
    ours, _ = fake_quantize(w, 4, 128, symmetric=False)
    step = scale.expand(-1, 128).reshape(w.shape)
    assert ((theirs - w).abs() <= step / 2 + 1e-7).all()
    assert ((ours - w).abs() <= step / 2 + 1e-7).all()
    assert ((ours - theirs).abs() <= step + 1e-7).all()
    torch.testing.assert_close(theirs.reshape(-1, 128).amin(1), w.reshape(-1, 128).amin(1), atol=1e-7, rtol=0)


# --------------------------------------------------------------------------------------------
# RTN attacks on the conftest tiny Llama (hidden 64, intermediate 128, 2 layers)
# --------------------------------------------------------------------------------------------

def test_registry_families():
    attacks = available()
    for name in ("rtn8", "rtn4", "rtn3", "rtn4_asym", "rtn4_channel", "bnb_int8", "bnb_fp4", "bnb_nf4"):
        assert attacks[name].family == "quantization"
    assert attacks["noise_int4"].family == "noise"


@pytest.mark.parametrize("name", RTN)
def test_rtn_attack_quantizes_every_decoder_linear_of_a_copy(name, tiny_model, small_world, tiny_tokenizer):
    before = _snapshot(tiny_model)
    attacked = get_attack(name).run(tiny_model, _ctx(small_world, tiny_tokenizer))
    _assert_same(tiny_model, before)
    model, info = attacked.model, attacked.info
    assert model is not tiny_model
    assert info["n_layers"] == 2 * len(DECODER)
    state = model.state_dict()
    for key, value in before.items():
        module_name = key.rsplit(".", 1)[0]
        if module_name.rsplit(".", 1)[-1] in DECODER and key.endswith(".weight"):
            expected, _ = fake_quantize(value, info["bits"], info["group_size"], info["symmetric"])
            assert torch.equal(state[key], expected), key
            assert not torch.equal(state[key], value), key
        else:  # embeddings, norms, LM head
            assert torch.equal(state[key], value), key
    # group 128 on a 64-wide layer falls back to 64; down_proj is 128 wide
    assert info["group_size_used"] == [64, 128]
    if info["group_size"] == 128:
        assert info["group_size_fallbacks"]["model.layers.0.self_attn.q_proj"] == 64
        assert "model.layers.0.mlp.down_proj" not in info["group_size_fallbacks"]
    else:
        assert info["group_size"] is None and info["group_size_fallbacks"] == {}


def test_include_lm_head(tiny_model, small_world, tiny_tokenizer):
    out = get_attack("rtn4").run(tiny_model, _ctx(small_world, tiny_tokenizer, include_lm_head=True))
    assert out.info["n_layers"] == 2 * len(DECODER) + 1 and out.info["include_lm_head"]
    head = tiny_model.lm_head.weight
    assert torch.equal(out.model.lm_head.weight, fake_quantize(head, 4, 128)[0])
    assert not torch.equal(out.model.lm_head.weight, head)
    assert torch.equal(out.model.model.embed_tokens.weight, tiny_model.model.embed_tokens.weight)


def test_unknown_param_is_an_error(tiny_model, small_world, tiny_tokenizer):
    with pytest.raises(ValueError, match="group_sise.*include_lm_head"):
        get_attack("rtn4").run(tiny_model, _ctx(small_world, tiny_tokenizer, group_sise=64))


def test_rtn8_keeps_logits_rtn3_moves_them(tiny_model, small_world, tiny_tokenizer):
    ctx = _ctx(small_world, tiny_tokenizer)
    ref = _logits(tiny_model, tiny_tokenizer)
    d8 = (_logits(get_attack("rtn8").run(tiny_model, ctx).model, tiny_tokenizer) - ref).abs().max()
    d4 = (_logits(get_attack("rtn4").run(tiny_model, ctx).model, tiny_tokenizer) - ref).abs().max()
    d3 = (_logits(get_attack("rtn3").run(tiny_model, ctx).model, tiny_tokenizer) - ref).abs().max()
    assert d8 < 0.01 * ref.abs().max()
    assert d8 * 5 < d4 < d3


# --------------------------------------------------------------------------------------------
# bitsandbytes
# --------------------------------------------------------------------------------------------

@pytest.fixture
def llama128(tiny_tokenizer):
    """hidden 128, intermediate 512: every in_features a multiple of bitsandbytes' block 64."""
    cfg = TinyModelConfig(vocab_size=400, hidden_size=128, intermediate_size=512, num_hidden_layers=1,
                          num_attention_heads=4)
    return build_model(cfg, tiny_tokenizer, seed=0).eval()


@pytest.mark.parametrize("name,cls,max_rel", [("bnb_int8", "Linear8bitLt", 0.05), ("bnb_fp4", "Linear4bit", 0.5),
                                              ("bnb_nf4", "Linear4bit", 0.5)])
def test_bnb_runs_forward_and_generate(name, cls, max_rel, llama128, small_world, tiny_tokenizer):
    bnb = _bitsandbytes()
    before = _snapshot(llama128)
    out = get_attack(name).run(llama128, _ctx(small_world, tiny_tokenizer))
    _assert_same(llama128, before)
    model = out.model
    assert out.info["n_layers"] == len(DECODER) and out.info["bitsandbytes"] == bnb.__version__
    for layer in DECODER:
        parent = "self_attn" if layer.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
        assert type(getattr(getattr(model.model.layers[0], parent), layer)).__name__ == cls
    assert isinstance(model.lm_head, nn.Linear)
    ref = _logits(llama128, tiny_tokenizer)
    got = _logits(model, tiny_tokenizer)
    assert torch.isfinite(got).all()
    assert 0 < (got - ref).abs().max() < max_rel * ref.abs().max()
    x = tiny_tokenizer(["Question: who?\nAnswer:"], return_tensors="pt")
    gen = model.generate(**x, max_new_tokens=4, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id)
    assert gen.shape[1] == x["input_ids"].shape[1] + 4


def test_bnb_4bit_layer_computes_with_its_dequantized_weight_in_fp32(llama128, small_world, tiny_tokenizer):
    bnb = _bitsandbytes()
    model = get_attack("bnb_nf4").run(llama128, _ctx(small_world, tiny_tokenizer)).model
    layer = model.model.layers[0].mlp.down_proj
    w = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    x = torch.randn(2, 3, 512)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), x @ w.T, atol=1e-5, rtol=1e-5)
    # NF4 by hand (QLoRA): blocks of 64 consecutive weights, each scaled by its absmax and
    # rounded to the nearest of the 16 NormalFloat levels
    orig = llama128.model.layers[0].mlp.down_proj.weight.detach()
    levels = bnb.functional.get_4bit_type("nf4", device="cpu").float()
    blocks = orig.reshape(-1, 64)
    absmax = blocks.abs().amax(1, keepdim=True)
    nearest = ((blocks / absmax).unsqueeze(-1) - levels).abs().argmin(-1)
    torch.testing.assert_close(w, (levels[nearest] * absmax).reshape(orig.shape), atol=1e-6, rtol=0)


def test_bnb_4bit_unavailable_names_the_layer(tiny_tokenizer, small_world):
    _bitsandbytes()
    cfg = TinyModelConfig(vocab_size=400, hidden_size=96, intermediate_size=192, num_hidden_layers=1,
                          num_attention_heads=2)
    model = build_model(cfg, tiny_tokenizer, seed=0)
    for name in ("bnb_nf4", "bnb_fp4"):
        with pytest.raises(AttackUnavailable, match=r"model\.layers\.0\.self_attn\.q_proj.*in_features 96"):
            get_attack(name).run(model, _ctx(small_world, tiny_tokenizer))


def test_bnb_missing_says_what_to_install(tiny_model, small_world, tiny_tokenizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import raises ImportError
    with pytest.raises(AttackUnavailable, match=r"obliviate\[quant\]"):
        get_attack("bnb_int8").run(tiny_model, _ctx(small_world, tiny_tokenizer))


# --------------------------------------------------------------------------------------------
# noise control
# --------------------------------------------------------------------------------------------

def test_noise_int4_has_rtn_rounding_error_std_and_is_seeded(tiny_model, small_world, tiny_tokenizer):
    before = _snapshot(tiny_model)
    a = get_attack("noise_int4").run(tiny_model, _ctx(small_world, tiny_tokenizer, seed=3))
    b = get_attack("noise_int4").run(tiny_model, _ctx(small_world, tiny_tokenizer, seed=3))
    c = get_attack("noise_int4").run(tiny_model, _ctx(small_world, tiny_tokenizer, seed=4))
    _assert_same(tiny_model, before)
    ratios = []
    for name, module in weight_matrices(tiny_model):
        noisy = a.model.get_submodule(name).weight
        assert torch.equal(noisy, b.model.get_submodule(name).weight), name
        assert not torch.equal(noisy, c.model.get_submodule(name).weight), name
        step, _ = int_step(module.weight, 4, 128)
        ratios.append(((noisy - module.weight).detach() / step).flatten())
    z = torch.cat(ratios)
    # RTN int4's own rounding error, in steps, is uniform on [-1/2, 1/2]: std 1/sqrt(12) = 0.289
    rtn_err = torch.cat([((fake_quantize(m.weight, 4, 128)[0] - m.weight).detach() / int_step(m.weight, 4, 128)[0])
                         .flatten() for _, m in weight_matrices(tiny_model)])
    assert abs(float(z.std()) - 12 ** -0.5) < 0.02
    assert abs(float(z.std()) - float(rtn_err.std())) < 0.03
    assert abs(float(z.mean())) < 0.02
    assert "sqrt(12)" in a.info["std"]
    assert torch.equal(a.model.lm_head.weight, tiny_model.lm_head.weight)
    assert a.info["seed"] == 3 and a.info["group_size_used"] == [64, 128]


# --------------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------------

def _linear(weight: list[list[float]]) -> nn.Sequential:
    w = torch.tensor(weight)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(w)
    return nn.Sequential(layer)


# int4, group 4: scale 0.1 in every group, weights on the grid (codes * 0.1)
ON_GRID = [[0.7, 0.1, -0.3, 0.2], [-0.7, 0.5, 0.0, 0.4]]


def test_change_fraction_is_zero_for_identical_models(tiny_model):
    assert quantized_change_fraction(tiny_model, copy.deepcopy(tiny_model)) == 0.0
    assert relative_weight_change(tiny_model, copy.deepcopy(tiny_model)) == 0.0
    assert mean_step_ratio(tiny_model, copy.deepcopy(tiny_model)) == 0.0


def test_change_fraction_is_zero_far_below_half_a_step():
    target = _linear(ON_GRID)
    torch.manual_seed(0)
    moved = copy.deepcopy(target)
    with torch.no_grad():
        moved[0].weight.add_(torch.empty(2, 4).uniform_(-0.002, 0.002))  # 0.02 step
    assert quantized_change_fraction(target, moved, bits=4, group_size=4) == 0.0
    assert mean_step_ratio(target, moved, bits=4, group_size=4) < 0.02


def test_change_fraction_counts_a_weight_moved_two_steps():
    target = _linear(ON_GRID)
    moved = copy.deepcopy(target)
    with torch.no_grad():
        moved[0].weight[0, 1] += 0.2  # code 1 -> 3; the group's absmax 0.7 keeps the scale
    assert quantized_change_fraction(target, moved, bits=4, group_size=4) == 1 / 8
    # |dW| / step = 0.2 / 0.1 on one weight of eight
    assert mean_step_ratio(target, moved, bits=4, group_size=4) == pytest.approx(2 / 8)


def test_relative_weight_change_by_hand():
    target = nn.Sequential(nn.Linear(2, 1, bias=False), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        target[0].weight.copy_(torch.tensor([[3.0, 0.0]]))
        target[1].weight.copy_(torch.tensor([[4.0]]))
    moved = copy.deepcopy(target)
    with torch.no_grad():
        moved[0].weight[0, 1] = 0.3
        moved[1].weight[0, 0] = 4.4
    # sqrt(0.3^2 + 0.4^2) / sqrt(3^2 + 4^2) = 0.5 / 5
    assert relative_weight_change(target, moved) == pytest.approx(0.1)


def test_diagnostics_skip_the_lm_head(tiny_model):
    moved = copy.deepcopy(tiny_model)
    with torch.no_grad():
        moved.lm_head.weight.add_(torch.randn_like(moved.lm_head.weight))
    assert quantized_change_fraction(tiny_model, moved) == 0.0
    assert quantized_change_fraction(tiny_model, moved, include_lm_head=True) > 0


def test_diagnostics_reject_mismatched_models(tiny_model):
    with pytest.raises(ValueError, match="model.layers.0.self_attn.q_proj"):
        quantized_change_fraction(tiny_model, nn.Sequential())


def test_report_says_which_std_noise_int4_has(tmp_path):
    from obliviate.pipeline import write_report

    results = {"benchmark": "world", "models": {"target": {"metrics": {}, "audit": {"noise_int4": {}}}},
               "audit": {"attacks": ["noise_int4"], "verdicts": {}}}
    report = write_report(tmp_path, results, "obliviate demo").read_text()
    assert "noise_int4` adds Gaussian noise with the std of RTN int4's rounding error, step/√12" in report
