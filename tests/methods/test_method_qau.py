"""QAU (obliviate/methods/qau.py): the straight-through quantized forward and the loss.

The quantized reference is a deep copy of the tiny model run through the audit's own `rtn4` /
`rtn8` attacks; log-probs are recomputed here with log_softmax + gather.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from obliviate.attacks import AttackContext, get_attack
from obliviate.data.collate import collate, encode_items, pad_id_of
from obliviate.methods import get_method, make_params
from obliviate.methods.qau import quantized_logits
from obliviate.unlearn import UnlearnContext

FORGET_INDEX = [3, 0, 7, 10]


@pytest.fixture
def batches(small_world, tiny_tokenizer):
    pad = pad_id_of(tiny_tokenizer)
    forget = collate(encode_items(tiny_tokenizer, [small_world.forget[i] for i in FORGET_INDEX]), pad, FORGET_INDEX)
    retain = collate(encode_items(tiny_tokenizer, small_world.retain[:4]), pad)
    return forget, retain


def _rtn(model, task, tokenizer, bits):
    """The audit's attack: a deep copy with every decoder linear at Q_b(W)."""
    return get_attack(f"rtn{bits}").run(model, AttackContext(tokenizer=tokenizer, task=task)).model


def _logits(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _seq_logp(logits, labels):
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    mask = target != -100
    return (logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask).sum(-1), mask


def _nll(logits, labels):
    logp, mask = _seq_logp(logits, labels)
    return -logp.sum() / mask.sum()


@pytest.mark.parametrize("bits", [4, 8])
def test_ste_forward_is_quantized_and_gradient_passes_straight_through(bits, small_world, tiny_model, tiny_tokenizer,
                                                                       batches):
    forget, _ = batches
    quantized = _rtn(tiny_model, small_world, tiny_tokenizer, bits)
    ste = quantized_logits(tiny_model, forget, bits)
    expected = _logits(quantized, forget)
    torch.testing.assert_close(ste, expected, atol=1e-5, rtol=0)
    assert (ste - _logits(tiny_model, forget)).abs().max() > 1e-3  # quantization does change the forward

    names = [n for n, p in tiny_model.named_parameters()]
    grads = torch.autograd.grad(_nll(ste, forget["labels"]), list(tiny_model.parameters()))
    q_grads = torch.autograd.grad(_nll(expected, forget["labels"]), list(quantized.parameters()))
    for name, g, qg in zip(names, grads, q_grads, strict=True):
        # dL/dW through the STE is dL/dQ_b(W): the gradient of the quantized model
        torch.testing.assert_close(g, qg, atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize("base", ["gd", "npo_kl"])
def test_loss_is_base_plus_mean_quantized_forget_loss(base, small_world, tiny_model, tiny_tokenizer, batches):
    forget, retain = batches
    ref_model = copy.deepcopy(tiny_model)
    with torch.no_grad():  # a reference that differs from the model, so the KL term is live
        for p in ref_model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ref_forget_logp = -60.0 - 2.0 * torch.arange(12, dtype=torch.float32)
    overrides = {"base": base, "bits": (4, 8), "lambda_q": 0.7, "alpha": 0.3, "gamma": 0.5, "beta": 0.2}
    ctx = UnlearnContext(params=make_params(get_method("qau"), overrides), ref_model=ref_model,
                         ref_forget_logp=ref_forget_logp)
    with torch.no_grad():
        got = get_method("qau").loss(tiny_model, forget, retain, ctx)

        base_keys = {"gd": ("alpha", "gamma"), "npo_kl": ("alpha", "gamma", "beta")}[base]
        base_ctx = UnlearnContext(params=make_params(get_method(base), {k: overrides[k] for k in base_keys}),
                                  ref_model=ref_model, ref_forget_logp=ref_forget_logp)
        l_base = get_method(base).loss(tiny_model, forget, retain, base_ctx)
        quantized = []
        for bits in (4, 8):
            logits = _logits(_rtn(tiny_model, small_world, tiny_tokenizer, bits), forget)
            if base == "gd":
                quantized.append(-_nll(logits, forget["labels"]))
            else:
                d = _seq_logp(logits, forget["labels"])[0] - ref_forget_logp[FORGET_INDEX]
                quantized.append(-(2 / 0.2) * torch.log(torch.sigmoid(-0.2 * d)).mean())
    expected = l_base + 0.7 * (quantized[0] + quantized[1]) / 2
    assert float(got) == pytest.approx(float(expected), abs=1e-5, rel=1e-6)
    assert ctx.params.base == base  # the base's params were swapped back


def test_loss_never_modifies_the_model(small_world, tiny_model, tiny_tokenizer, batches):
    forget, retain = batches
    before = {k: v.detach().clone() for k, v in tiny_model.state_dict().items()}
    ctx = UnlearnContext(params=make_params(get_method("qau")))
    get_method("qau").loss(tiny_model, forget, retain, ctx).backward()
    after = tiny_model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert tiny_model.model.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0
