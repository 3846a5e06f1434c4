"""GPTQ and AWQ (the paper fallbacks): one weight matrix by hand, then the attacks on a tiny Llama."""

from __future__ import annotations

import pytest
import torch

from obliviate.attacks import AttackContext, get_attack
from obliviate.attacks.awq import awq_quantize, quantize_asymmetric
from obliviate.attacks.gptq import gptq_quantize, rtn_symmetric
from obliviate.attacks.quantize import resolve_group_size


def _correlated_inputs(n_tokens: int, dim: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim**0.5 + torch.eye(dim, dtype=torch.float64)
    return torch.randn(n_tokens, dim, generator=g, dtype=torch.float64) @ mixing


def _hessian(x: torch.Tensor) -> torch.Tensor:
    return 2 * x.T @ x / x.shape[0]


def _output_error(x: torch.Tensor, w: torch.Tensor, q: torch.Tensor) -> float:
    return float((x.double() @ (w.double() - q.double()).T).norm())


def _naive_gptq(w: torch.Tensor, H: torch.Tensor, bits: int, group: int, damp: float) -> torch.Tensor:
    """The OBQ form GPTQ starts from: after each column, update the remaining weights with the
    explicit inverse Hessian and remove that column from the inverse (Gaussian elimination)."""
    W = w.double().clone()
    H = H.double().clone()
    H.diagonal().add_(damp * H.diagonal().mean())
    Hinv = torch.linalg.inv(H)
    qmax = 2 ** (bits - 1) - 1
    Q = torch.zeros_like(W)
    for j in range(W.shape[1]):
        if j % group == 0:
            scale = W[:, j:j + group].abs().amax(dim=1) / qmax
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        Q[:, j] = torch.clamp(torch.round(W[:, j] / scale), -qmax, qmax) * scale  # rtn4's grid: -7..7
        err = (W[:, j] - Q[:, j]) / Hinv[j, j]
        W[:, j:] -= err[:, None] * Hinv[j, j:][None, :]
        Hinv = Hinv - Hinv[:, j:j + 1] @ Hinv[j:j + 1, :] / Hinv[j, j]
    return Q


def _gptq_algorithm_1(w: torch.Tensor, H: torch.Tensor, bits: int, group: int, damp: float) -> torch.Tensor:
    """Frantar et al. 2023, Algorithm 1, as printed (no lazy batches), with group-wise scales
    taken from the error-updated weights when a group starts, on rtn4's symmetric grid
    (scale max|w| / 7, codes -7..7)."""
    W = w.double().clone()
    H = H.double().clone()
    H += damp * H.diagonal().mean() * torch.eye(H.shape[0], dtype=torch.float64)
    Hinv = torch.linalg.cholesky(torch.linalg.inv(H), upper=True)  # Cholesky(H^-1)^T
    qmax = 2 ** (bits - 1) - 1
    Q = torch.zeros_like(W)
    for j in range(W.shape[1]):
        if j % group == 0:
            scale = W[:, j:j + group].abs().amax(dim=1) / qmax
        Q[:, j] = torch.clamp(torch.round(W[:, j] / scale), -qmax, qmax) * scale
        E = (W[:, j] - Q[:, j]) / Hinv[j, j]
        W[:, j:] -= E[:, None] * Hinv[j, j:][None, :]
    return Q


# ---------------------------------------------------------------------------------------------
# GPTQ on one weight matrix
# ---------------------------------------------------------------------------------------------

def test_gptq_equals_algorithm_1_on_rtn4s_grid():
    """A small layer against the published algorithm: same dequantized weights; error updates push
    some weights past their group's max|w|, and those clamp to code +-7 (rtn4's grid), never -8."""
    x = _correlated_inputs(200, 32, seed=2)
    w = torch.randn(12, 32, dtype=torch.float64)
    result = gptq_quantize(w, _hessian(x), bits=4, group_size=8, damp=0.01)
    torch.testing.assert_close(result.weight, _gptq_algorithm_1(w, _hessian(x), 4, 8, 0.01), atol=1e-9, rtol=0)
    codes = (result.weight / result.scales[:, result.group_index]).round()
    assert codes.min() == -7 and codes.max() == 7
    assert not result.rtn_fallback


def test_gptq_and_rtn4_share_one_grid():
    """Without error compensation (uncorrelated inputs) gptq4's quantizer is rtn4's, bit for bit."""
    from obliviate.attacks.quantize import fake_quantize

    w = torch.randn(16, 128)
    q = gptq_quantize(w, 3.0 * torch.eye(128), bits=4, group_size=64, damp=0.01)
    torch.testing.assert_close(q.weight, fake_quantize(w, 4, 64)[0], atol=1e-6, rtol=0)


def test_no_calibration_signal_falls_back_to_rtn_and_says_so():
    from obliviate.attacks.quantize import fake_quantize

    w = torch.randn(8, 64)
    result = gptq_quantize(w, torch.zeros(64, 64), bits=4, group_size=32, damp=0.01)
    assert result.rtn_fallback
    torch.testing.assert_close(result.weight, fake_quantize(w, 4, 32)[0], atol=1e-6, rtol=0)


def test_gptq4_records_the_layers_it_rounded_with_rtn(tiny_model, tiny_tokenizer, small_world):
    with torch.no_grad():  # layer 0's attention sees only zeros (and so outputs zeros): no calibration signal
        tiny_model.model.layers[0].input_layernorm.weight.zero_()
    info = get_attack("gptq4").run(tiny_model, AttackContext(tokenizer=tiny_tokenizer, task=small_world,
                                                              params={"n_calibration": 8})).info
    assert info["rtn_fallback"] == ["layers.0.self_attn.q_proj", "layers.0.self_attn.k_proj",
                                    "layers.0.self_attn.v_proj", "layers.0.self_attn.o_proj"]
    assert "max|w|/7" in info["grid"]


def test_group_size_falls_back_to_largest_divisor():
    assert resolve_group_size(256, 128) == 128
    assert resolve_group_size(64, 128) == 64
    assert resolve_group_size(192, 128) == 96
    assert resolve_group_size(100, 128) == 100
    assert resolve_group_size(130, 128) == 65


def test_gptq_has_lower_output_error_than_rtn_on_its_calibration_data():
    x = _correlated_inputs(512, 256)
    w = torch.randn(32, 256)
    q = gptq_quantize(w, _hessian(x), bits=4, group_size=128, damp=0.01).weight
    rtn, _ = rtn_symmetric(w, bits=4, group_size=128)
    assert _output_error(x, w, q) < _output_error(x, w, rtn)


def test_gptq_equals_the_column_by_column_obs_update():
    x = _correlated_inputs(200, 48, seed=1)
    w = torch.randn(8, 48, dtype=torch.float64)
    q = gptq_quantize(w, _hessian(x), bits=4, group_size=16, damp=0.01).weight
    torch.testing.assert_close(q, _naive_gptq(w, _hessian(x), bits=4, group=16, damp=0.01), atol=1e-9, rtol=0)


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_weights_lie_on_their_groups_grid(act_order):
    x = _correlated_inputs(300, 128)
    w = torch.randn(16, 128)
    result = gptq_quantize(w, _hessian(x), bits=4, group_size=32, damp=0.01, act_order=act_order)
    codes = result.weight / result.scales[:, result.group_index]
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.round().min() >= -7 and codes.round().max() <= 7


def test_gptq_equals_rtn_when_inputs_are_uncorrelated():
    w = torch.randn(16, 128)
    q = gptq_quantize(w, 3.0 * torch.eye(128), bits=4, group_size=64, damp=0.01).weight
    rtn, _ = rtn_symmetric(w, bits=4, group_size=64)
    torch.testing.assert_close(q, rtn, atol=1e-5, rtol=0)


def test_gptq_dampening_handles_a_dead_input_channel():
    x = _correlated_inputs(256, 64)
    x[:, 5] = 0.0  # never active in calibration: H is singular
    H = _hessian(x)
    assert torch.linalg.matrix_rank(H) < 64
    w = torch.randn(8, 64)
    result = gptq_quantize(w, H, bits=4, group_size=64, damp=0.01)
    assert torch.isfinite(result.weight).all()
    codes = result.weight / result.scales[:, result.group_index]
    assert torch.allclose(codes, codes.round(), atol=1e-4)


# ---------------------------------------------------------------------------------------------
# AWQ on one weight matrix
# ---------------------------------------------------------------------------------------------

def _outlier_inputs(n_tokens: int = 512, dim: int = 128) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_tokens, dim, generator=g)
    x[:, [3, 40, 77, 100]] *= 30.0  # a few salient channels, as in LLM activations
    return x


def test_awq_has_lower_output_error_than_rtn_with_outlier_channels():
    x = _outlier_inputs()
    w = torch.randn(64, 128)
    q, alpha = awq_quantize(w, x, bits=4, group_size=128)
    rtn = quantize_asymmetric(w, bits=4, group_size=128)
    assert alpha > 0
    assert _output_error(x, w, q) < _output_error(x, w, rtn)


def test_awq_picks_the_alpha_of_least_direct_output_error():
    """awq_quantize scores candidates through the Gram matrix x^T x: its choice must be the alpha
    whose fake-quantized weight has the least output error computed directly on x."""
    x = _outlier_inputs(n_tokens=300)
    for seed in range(3):
        w = torch.randn(48, 128, generator=torch.Generator().manual_seed(seed))
        alphas = [i / 10 for i in range(10)]
        errors = []
        for a in alphas:
            q, _ = awq_quantize(w, x, bits=4, group_size=64, alphas=[a])
            errors.append(_output_error(x, w, q))
        q, alpha = awq_quantize(w, x, bits=4, group_size=64, alphas=alphas)
        assert alpha == alphas[min(range(len(alphas)), key=errors.__getitem__)]


def test_awq_with_alpha_zero_is_plain_rtn():
    x = _outlier_inputs()
    w = torch.randn(64, 128)
    q, alpha = awq_quantize(w, x, bits=4, group_size=64, alphas=[0.0])
    assert alpha == 0.0
    assert torch.equal(q, quantize_asymmetric(w, bits=4, group_size=64))


def test_asymmetric_grid_has_sixteen_levels_per_group():
    w = torch.randn(4, 64)
    q = quantize_asymmetric(w, bits=4, group_size=32)
    for row in q.reshape(-1, 32):
        assert len(torch.unique(row)) <= 16


# ---------------------------------------------------------------------------------------------
# The registered attacks on a tiny Llama
# ---------------------------------------------------------------------------------------------

def _decoder_linears(model) -> dict[str, torch.Tensor]:
    return {name: m.weight for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and ".layers." in name}


@pytest.mark.parametrize("name", ["gptq4", "awq4"])
def test_attack_quantizes_a_copy_of_every_decoder_linear(name, tiny_model, tiny_tokenizer, small_world):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    ctx = AttackContext(tokenizer=tiny_tokenizer, task=small_world, seed=0)
    attacked = get_attack(name).run(tiny_model, ctx)
    model = attacked.model

    assert model is not tiny_model
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k]), f"{name} modified the input model's {k}"
    linears = _decoder_linears(model)
    assert len(linears) == 2 * 7
    originals = _decoder_linears(tiny_model)
    for k, w in linears.items():
        assert not torch.equal(w, originals[k]), f"{name} left {k} unchanged"
    assert torch.equal(model.lm_head.weight, tiny_model.lm_head.weight)
    assert torch.equal(model.get_input_embeddings().weight, tiny_model.get_input_embeddings().weight)

    ids = torch.tensor([tiny_tokenizer("Question: where was she born?\nAnswer:")["input_ids"]])
    with torch.no_grad():
        ref, out = tiny_model(ids).logits, model(ids).logits
    assert torch.isfinite(out).all()
    assert (out - ref).norm() < 0.5 * ref.norm()

    info = attacked.info
    assert info["bits"] == 4 and info["group_size"] == 128
    assert info["group_size_by_in_features"] == {"64": 64, "128": 128}  # hidden 64, intermediate 128
    assert info["backend"].endswith("(paper fallback)")
    assert info["n_calibration"] == min(128, len(small_world.retain))

    again = get_attack(name).run(tiny_model, ctx).model
    for k, w in _decoder_linears(again).items():
        assert torch.equal(w, linears[k]), f"{name} is not deterministic for a fixed seed ({k})"


@pytest.mark.parametrize("name", ["gptq4", "awq4"])
def test_attack_params_override_and_unknown_keys_are_named(name, tiny_model, tiny_tokenizer, small_world):
    ctx = AttackContext(tokenizer=tiny_tokenizer, task=small_world, seed=0, params={"n_calibration": 8})
    assert get_attack(name).run(tiny_model, ctx).info["n_calibration"] == 8
    bad = AttackContext(tokenizer=tiny_tokenizer, task=small_world, seed=0, params={"n_calib": 8})
    with pytest.raises(ValueError, match="n_calib"):
        get_attack(name).run(tiny_model, bad)
