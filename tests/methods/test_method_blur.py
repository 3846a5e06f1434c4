"""BLUR: the combination d = g_r + (gamma - <g_r,g_f>/||g_f||^2) g_f on hand-made gradients, and the
`backward` hook on the tiny model against gradients computed separately here."""

import pytest
import torch
import torch.nn.functional as F

from obliviate.data.collate import collate, encode, pad_id_of
from obliviate.methods import get_method, make_params
from obliviate.methods.blur import backward, blur_direction
from obliviate.unlearn import UnlearnContext

FORGET_INDEX = [5, 0, 9]


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b, strict=True)))


def _random_grads(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 4, generator=g), torch.randn(5, generator=g), torch.randn(2, 2, 2, generator=g)]


def test_two_dimensional_case_by_hand():
    # the two coordinates sit in different tensors: the inner products are global
    g_f, g_r = [torch.tensor([2.0]), torch.tensor([0.0])], [torch.tensor([3.0]), torch.tensor([1.0])]
    # <g_r,g_f> = 6, ||g_f||^2 = 4: coef = 1 - 6/4 = -0.5, d = (3, 1) - 0.5 (2, 0) = (2, 1)
    d = blur_direction(g_f, g_r, gamma=1.0)
    assert [t.tolist() for t in d] == [[2.0], [1.0]]
    # gamma 3: coef = 1.5, d = (6, 1)
    assert [t.tolist() for t in blur_direction(g_f, g_r, gamma=3.0)] == [[6.0], [1.0]]


@pytest.mark.parametrize("gamma", [1.0, 0.3, 2.0])
def test_forget_rate_is_prescribed_and_orthogonal_part_is_retains(gamma):
    g_f, g_r = _random_grads(0), _random_grads(1)
    d = blur_direction(g_f, g_r, gamma)
    f_sq = _dot(g_f, g_f)
    # <d, g_f> = gamma ||g_f||^2: the forget loss falls at the prescribed rate
    assert _dot(d, g_f) == pytest.approx(gamma * f_sq, rel=1e-6)
    # the components orthogonal to g_f: d's equals g_r's
    d_perp = [x - _dot(d, g_f) / f_sq * f for x, f in zip(d, g_f, strict=True)]
    r_perp = [x - _dot(g_r, g_f) / f_sq * f for x, f in zip(g_r, g_f, strict=True)]
    for a, b in zip(d_perp, r_perp, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_zero_forget_gradient_gives_retain_gradient():
    g_r = _random_grads(1)
    d = blur_direction([torch.zeros_like(t) for t in g_r], g_r, gamma=1.0)
    for a, b in zip(d, g_r, strict=True):
        assert torch.equal(a, b) and a is not b
        assert torch.isfinite(a).all()


# --- the hook on the tiny model ----------------------------------------------------------------


@pytest.fixture
def batches(small_world, tiny_tokenizer):
    tok, pad = tiny_tokenizer, pad_id_of(tiny_tokenizer)
    forget = collate([encode(tok, small_world.forget[i].question, small_world.forget[i].answer)
                      for i in FORGET_INDEX], pad, FORGET_INDEX)
    retain = collate([encode(tok, it.question, it.answer) for it in small_world.retain[:4]], pad)
    return forget, retain


def _nll(model, batch) -> torch.Tensor:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:], ignore_index=-100)


def _seq_logp(model, batch) -> torch.Tensor:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:], ignore_index=-100,
                          reduction="none")
    return -nll.sum(1)


def _expected(params, l_f, l_r, gamma) -> list[torch.Tensor]:
    g_f = torch.autograd.grad(l_f, params, allow_unused=True)
    g_r = torch.autograd.grad(l_r, params, allow_unused=True)
    g_f = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(g_f, params, strict=True)])
    g_r = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(g_r, params, strict=True)])
    d = g_r + (gamma - g_r.double().dot(g_f.double()) / g_f.double().dot(g_f.double())).float() * g_f
    return list(torch.split(d, [p.numel() for p in params]))


def test_hook_sets_grad_to_the_formula(tiny_model, batches):
    forget, retain = batches
    tiny_model.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in tiny_model.parameters() if p.requires_grad]
    expected = _expected(params, -_nll(tiny_model, forget), _nll(tiny_model, retain), gamma=0.5)
    ctx = UnlearnContext(params=make_params(get_method("blur"), {"gamma": 0.5}))
    loss = backward(tiny_model, forget, retain, ctx, None)
    with torch.no_grad():
        assert float(loss) == pytest.approx(float(-_nll(tiny_model, forget) + _nll(tiny_model, retain)), abs=1e-5)
    for p, d in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad.flatten(), d, atol=1e-6, rtol=1e-4)
    assert tiny_model.get_input_embeddings().weight.grad is None  # frozen: untouched


def test_hook_adds_to_accumulated_grads_and_supports_npo(tiny_model, batches):
    forget, retain = batches
    params = [p for p in tiny_model.parameters() if p.requires_grad]
    with torch.no_grad():
        ref = torch.zeros(12)
        ref[FORGET_INDEX] = _seq_logp(tiny_model, forget) + 1.0  # theta != ref: a non-trivial NPO term
    beta = 0.1
    npo = -(2 / beta) * F.logsigmoid(-beta * (_seq_logp(tiny_model, forget) - ref[FORGET_INDEX])).mean()
    expected = _expected(params, npo, _nll(tiny_model, retain), gamma=1.0)
    for p in params:
        p.grad = torch.ones_like(p)  # from an earlier micro-batch
    ctx = UnlearnContext(params=make_params(get_method("blur"), {"forget_loss": "npo"}), ref_forget_logp=ref)
    backward(tiny_model, forget, retain, ctx, None)
    for p, d in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad.flatten(), 1.0 + d, atol=1e-6, rtol=1e-4)


def test_unknown_forget_loss_is_named():
    ctx = UnlearnContext(params=make_params(get_method("blur"), {"forget_loss": "dpo"}))
    with pytest.raises(ValueError, match="'dpo'.*'ga' or 'npo'"):
        get_method("blur").setup(None, None, ctx)
