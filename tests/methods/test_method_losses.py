"""Every registered method's loss against its SPEC section 2 formula, recomputed here.

The expected values use this file's own log-prob code (log_softmax + gather, not the
package's cross-entropy path) on the tiny model's logits, and compare to 1e-5.
"""

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from obliviate.data.collate import collate, encode, pad_id_of
from obliviate.methods import available, get_method, make_params
from obliviate.unlearn import UnlearnContext

# Forget items sit at these dataset positions: cached reference log-probs are looked up by
# batch["index"], so the test uses a non-trivial order.
FORGET_INDEX = [5, 0, 9]
N_FORGET = 12
REFUSALS = ["I don't know.", "I have no idea about that.", "That is not something I can answer."]


@pytest.fixture
def batches(small_world, tiny_tokenizer):
    tok, pad = tiny_tokenizer, pad_id_of(tiny_tokenizer)
    forget_items = [small_world.forget[i] for i in FORGET_INDEX]
    forget = collate([encode(tok, it.question, it.answer) for it in forget_items], pad, FORGET_INDEX)
    forget["refusal"] = collate([encode(tok, it.question, r) for it, r in zip(forget_items, REFUSALS, strict=True)], pad,
                                FORGET_INDEX)
    retain = collate([encode(tok, it.question, it.answer) for it in small_world.retain[:4]], pad)
    # the toy must have prompt and padding positions for the masking to be exercised
    assert (forget["labels"] == -100).any(dim=1).all() and (forget["attention_mask"] == 0).any()
    return forget, retain


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()


def _seq_logp(model, batch) -> torch.Tensor:
    """Per-item sum of log p(answer token), via log_softmax + gather over real labels."""
    logp = F.log_softmax(_logits(model, batch)[:, :-1], dim=-1)
    out = []
    for b in range(logp.size(0)):
        target = batch["labels"][b, 1:]
        pos = (target != -100).nonzero().flatten()
        out.append(logp[b, pos, target[pos]].sum())
    return torch.stack(out)


def _n_answer(batch) -> torch.Tensor:
    return (batch["labels"][:, 1:] != -100).sum(1).float()


def _nll(model, batch) -> torch.Tensor:
    return -_seq_logp(model, batch).sum() / _n_answer(batch).sum()


def _kl(model, ref_model, batch) -> torch.Tensor:
    q = F.log_softmax(_logits(model, batch)[:, :-1], dim=-1)
    r = F.log_softmax(_logits(ref_model, batch)[:, :-1], dim=-1)
    mask = batch["labels"][:, 1:] != -100
    per_pos = (r.exp() * (r - q)).sum(-1)
    return per_pos[mask].mean()


def _npo(logp, ref, beta) -> torch.Tensor:
    return -(2 / beta) * torch.log(torch.sigmoid(-beta * (logp - ref))).mean()


def _perturbed(model, scale=0.05):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return other


def _ref_logp() -> torch.Tensor:
    """A hand-made cache for the whole forget set: distinct, plausible sequence log-probs."""
    return -100.0 - 3.0 * torch.arange(N_FORGET, dtype=torch.float32)


def _ctx(name, overrides=None, **fields):
    return UnlearnContext(params=make_params(get_method(name), overrides), **fields)


def _loss(name, model, forget, retain, ctx):
    with torch.no_grad():
        return get_method(name).loss(model, forget, retain, ctx)


def _close(got, expected):
    assert float(got) == pytest.approx(float(expected), abs=1e-5, rel=1e-6)


# --- one formula per method -------------------------------------------------------------


def test_ga(tiny_model, batches):
    forget, retain = batches
    _close(_loss("ga", tiny_model, forget, retain, _ctx("ga")), -_nll(tiny_model, forget))
    _close(_loss("ga", tiny_model, forget, None, _ctx("ga", {"gamma": 2.5})), -2.5 * _nll(tiny_model, forget))


def test_gd(tiny_model, batches):
    forget, retain = batches
    expected = -_nll(tiny_model, forget) + _nll(tiny_model, retain)
    _close(_loss("gd", tiny_model, forget, retain, _ctx("gd")), expected)
    expected = -0.5 * _nll(tiny_model, forget) + 2.0 * _nll(tiny_model, retain)
    _close(_loss("gd", tiny_model, forget, retain, _ctx("gd", {"gamma": 0.5, "alpha": 2.0})), expected)


def test_ga_kl_is_ga_when_ref_is_a_copy(tiny_model, batches):
    forget, retain = batches
    ctx = _ctx("ga_kl", ref_model=copy.deepcopy(tiny_model))
    _close(_loss("ga_kl", tiny_model, forget, retain, ctx), -_nll(tiny_model, forget))


def test_ga_kl_with_a_different_ref(tiny_model, batches):
    forget, retain = batches
    ref = _perturbed(tiny_model)
    kl = _kl(tiny_model, ref, retain)
    assert float(kl) > 1e-4  # the KL term is really exercised
    ctx = _ctx("ga_kl", {"gamma": 0.5, "alpha": 3.0}, ref_model=ref)
    _close(_loss("ga_kl", tiny_model, forget, retain, ctx), -0.5 * _nll(tiny_model, forget) + 3.0 * kl)


def test_npo_reads_the_cache_by_index(tiny_model, batches):
    forget, retain = batches
    ref = _ref_logp()
    expected = _npo(_seq_logp(tiny_model, forget), ref[FORGET_INDEX], 0.1)
    _close(_loss("npo", tiny_model, forget, retain, _ctx("npo", ref_forget_logp=ref)), expected)
    expected = 2.0 * _npo(_seq_logp(tiny_model, forget), ref[FORGET_INDEX], 1.0)
    _close(_loss("npo", tiny_model, forget, None, _ctx("npo", {"beta": 1.0, "gamma": 2.0}, ref_forget_logp=ref)),
           expected)


def test_npo_at_reference_is_2_log2_over_beta(tiny_model, batches):
    forget, retain = batches
    ref = torch.zeros(N_FORGET)
    ref[FORGET_INDEX] = _seq_logp(tiny_model, forget)
    _close(_loss("npo", tiny_model, forget, retain, _ctx("npo", ref_forget_logp=ref)), 2 / 0.1 * math.log(2))


def test_npo_gd(tiny_model, batches):
    forget, retain = batches
    ref = _ref_logp()
    expected = 0.5 * _npo(_seq_logp(tiny_model, forget), ref[FORGET_INDEX], 0.2) + 2.0 * _nll(tiny_model, retain)
    ctx = _ctx("npo_gd", {"beta": 0.2, "gamma": 0.5, "alpha": 2.0}, ref_forget_logp=ref)
    _close(_loss("npo_gd", tiny_model, forget, retain, ctx), expected)


def test_npo_kl(tiny_model, batches):
    forget, retain = batches
    ref = _ref_logp()
    npo = _npo(_seq_logp(tiny_model, forget), ref[FORGET_INDEX], 0.1)
    ctx = _ctx("npo_kl", ref_forget_logp=ref, ref_model=copy.deepcopy(tiny_model))
    _close(_loss("npo_kl", tiny_model, forget, retain, ctx), npo)  # KL to an exact copy is 0
    other = _perturbed(tiny_model)
    ctx = _ctx("npo_kl", {"alpha": 3.0}, ref_forget_logp=ref, ref_model=other)
    _close(_loss("npo_kl", tiny_model, forget, retain, ctx), npo + 3.0 * _kl(tiny_model, other, retain))


def test_simnpo_defaults(tiny_model, batches):
    forget, retain = batches
    params = make_params(get_method("simnpo"))
    assert (params.beta, params.delta, params.gamma, params.alpha) == (4.5, 0.0, 0.125, 1.0)
    nll_avg = -_seq_logp(tiny_model, forget) / _n_answer(forget)
    forget_loss = -(2 / 4.5) * torch.log(torch.sigmoid(4.5 * nll_avg)).mean()
    _close(_loss("simnpo", tiny_model, forget, retain, _ctx("simnpo")),
           0.125 * forget_loss + _nll(tiny_model, retain))


def test_simnpo_delta(tiny_model, batches):
    forget, retain = batches
    nll_avg = -_seq_logp(tiny_model, forget) / _n_answer(forget)
    # delta near the untrained model's nll_avg (~log 400) so the sigmoid is not saturated
    forget_loss = -(2 / 1.0) * torch.log(torch.sigmoid(1.0 * (nll_avg - 6.0))).mean()
    ctx = _ctx("simnpo", {"beta": 1.0, "delta": 6.0, "gamma": 1.0, "alpha": 0.0})
    _close(_loss("simnpo", tiny_model, forget, retain, ctx), forget_loss)


def test_idk_dpo(tiny_model, batches):
    forget, retain = batches
    ref_answer = _ref_logp()
    ref_refusal = -20.0 - torch.arange(N_FORGET, dtype=torch.float32)
    win = _seq_logp(tiny_model, forget["refusal"]) - ref_refusal[FORGET_INDEX]
    lose = _seq_logp(tiny_model, forget) - ref_answer[FORGET_INDEX]
    beta = 0.1
    dpo = -(2 / beta) * torch.log(torch.sigmoid(beta * (win - lose))).mean()
    ctx = _ctx("idk_dpo", ref_forget_logp=ref_answer, ref_refusal_logp_cache=ref_refusal)
    _close(_loss("idk_dpo", tiny_model, forget, retain, ctx), dpo + _nll(tiny_model, retain))


def test_idk_dpo_at_reference_is_2_log2_over_beta(tiny_model, batches):
    forget, retain = batches
    ref_answer, ref_refusal = torch.zeros(N_FORGET), torch.zeros(N_FORGET)
    ref_answer[FORGET_INDEX] = _seq_logp(tiny_model, forget)
    ref_refusal[FORGET_INDEX] = _seq_logp(tiny_model, forget["refusal"])
    ctx = _ctx("idk_dpo", {"alpha": 0.0}, ref_forget_logp=ref_answer, ref_refusal_logp_cache=ref_refusal)
    _close(_loss("idk_dpo", tiny_model, forget, retain, ctx), 2 / 0.1 * math.log(2))


def test_idk_nll(tiny_model, batches):
    forget, retain = batches
    expected = 0.5 * _nll(tiny_model, forget["refusal"]) + 2.0 * _nll(tiny_model, retain)
    _close(_loss("idk_nll", tiny_model, forget, retain, _ctx("idk_nll", {"gamma": 0.5, "alpha": 2.0})), expected)
    # the true answer plays no part
    assert abs(float(_nll(tiny_model, forget)) - float(_nll(tiny_model, forget["refusal"]))) > 1e-3


FORMULA_TESTS = {"ga", "gd", "ga_kl", "npo", "npo_gd", "npo_kl", "simnpo", "idk_dpo", "idk_nll"}


def test_every_registered_method_has_a_formula_test():
    """A method is tested here, or by its own tests/methods/test_method_<name>.py."""
    here = Path(__file__).parent
    missing = sorted(n for n in set(available()) - FORMULA_TESTS if not (here / f"test_method_{n}.py").is_file())
    assert not missing, f"add tests/methods/test_method_<name>.py with a hand-computed test for: {', '.join(missing)}"


# --- gradient direction ---------------------------------------------------------------------


def _sgd_step(name, model, forget, retain, ctx, lr=0.05):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    get_method(name).loss(model, forget, retain, ctx).backward()
    opt.step()


def test_ga_step_raises_forget_nll(tiny_model, batches):
    forget, retain = batches
    before = float(_nll(tiny_model, forget))
    _sgd_step("ga", tiny_model, forget, retain, _ctx("ga"))
    assert float(_nll(tiny_model, forget)) > before + 1e-3


def test_idk_nll_step_lowers_refusal_nll(tiny_model, batches):
    forget, retain = batches
    before = float(_nll(tiny_model, forget["refusal"]))
    _sgd_step("idk_nll", tiny_model, forget, retain, _ctx("idk_nll", {"alpha": 0.0}))
    assert float(_nll(tiny_model, forget["refusal"])) < before - 1e-3


def test_npo_step_lowers_forget_logp(tiny_model, batches):
    forget, retain = batches
    before = _seq_logp(tiny_model, forget)
    ref = torch.zeros(N_FORGET)
    ref[FORGET_INDEX] = before
    _sgd_step("npo", tiny_model, forget, retain, _ctx("npo", ref_forget_logp=ref))
    assert float(_seq_logp(tiny_model, forget).sum()) < float(before.sum()) - 1e-3
