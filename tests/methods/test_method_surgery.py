"""LLM Surgery: the loss against its formula recomputed here, the update set built from each forget
item's first perturbed answer, and a few steps that move p(update) up and p(original) down."""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from obliviate.data.collate import collate, encode, pad_id_of
from obliviate.data.task import DataError
from obliviate.methods import get_method, make_params
from obliviate.methods.surgery import setup, update_batch
from obliviate.unlearn import UnlearnContext

FORGET_INDEX = [5, 0, 9]


def _ctx(task, tokenizer, overrides=None, **fields) -> UnlearnContext:
    ctx = UnlearnContext(params=make_params(get_method("surgery"), overrides), task=task, **fields)
    ctx.tokenizer = tokenizer
    setup(None, task, ctx)
    return ctx


def _batch(tok, pairs, index=None) -> dict:
    return collate([encode(tok, q, a) for q, a in pairs], pad_id_of(tok), index)


@pytest.fixture
def batches(small_world, tiny_tokenizer):
    forget = _batch(tiny_tokenizer, [(small_world.forget[i].question, small_world.forget[i].answer)
                                     for i in FORGET_INDEX], FORGET_INDEX)
    retain = _batch(tiny_tokenizer, [(it.question, it.answer) for it in small_world.retain[:4]])
    return forget, retain


def _logits(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()


def _nll(model, batch) -> torch.Tensor:
    return F.cross_entropy(_logits(model, batch)[:, :-1].transpose(1, 2), batch["labels"][:, 1:], ignore_index=-100)


def _kl(model, ref, batch) -> torch.Tensor:
    q = F.log_softmax(_logits(model, batch)[:, :-1], -1)
    r = F.log_softmax(_logits(ref, batch)[:, :-1], -1)
    return (r.exp() * (r - q)).sum(-1)[batch["labels"][:, 1:] != -100].mean()


def test_update_batch_is_the_first_perturbed_answer(small_world, tiny_tokenizer, batches):
    forget, _ = batches
    ctx = _ctx(small_world, tiny_tokenizer)
    got = update_batch(forget, ctx)
    expected = _batch(tiny_tokenizer, [(small_world.forget[i].question, small_world.forget[i].perturbed_answers[0])
                                       for i in FORGET_INDEX], FORGET_INDEX)
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    answer = tiny_tokenizer.decode(got["labels"][0][got["labels"][0] != -100], skip_special_tokens=True)
    assert answer.strip() == small_world.forget[5].perturbed_answers[0]
    assert small_world.forget[5].perturbed_answers[0] != small_world.forget[5].answer


def test_loss_is_the_formula(small_world, tiny_tokenizer, tiny_model, batches):
    forget, retain = batches
    ref = copy.deepcopy(tiny_model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        update = _batch(tiny_tokenizer, [(small_world.forget[i].question, small_world.forget[i].perturbed_answers[0])
                                         for i in FORGET_INDEX])
        kl = _kl(tiny_model, ref, retain)
        assert float(kl) > 1e-4
        for w in [(1.0, 1.0, 1.0), (0.5, 2.0, 3.0)]:
            ctx = _ctx(small_world, tiny_tokenizer, dict(zip(("g_u", "g_up", "g_r"), w, strict=True)), ref_model=ref)
            expected = -w[0] * _nll(tiny_model, forget) + w[1] * _nll(tiny_model, update) + w[2] * kl
            got = get_method("surgery").loss(tiny_model, forget, retain, ctx)
            assert float(got) == pytest.approx(float(expected), abs=1e-5)


def test_items_without_perturbed_answers(small_world, tiny_tokenizer, tiny_model, batches):
    forget, retain = batches
    # only item 0 keeps its perturbed answers: the batch's update set is that one item; an item
    # without (row 0, index 5) gets no update term (ref = the model itself: KL 0)
    task = dataclasses.replace(small_world, forget=[it if i == 0 else dataclasses.replace(it, perturbed_answers=())
                                                    for i, it in enumerate(small_world.forget)])
    ctx = _ctx(task, tiny_tokenizer, ref_model=tiny_model)
    assert update_batch(forget, ctx)["index"].tolist() == [0]
    assert update_batch(_batch(tiny_tokenizer, [("q", "a")], [3]), ctx) is None
    with torch.no_grad():
        no_update = get_method("surgery").loss(tiny_model, _only(forget, 0), retain, ctx)
        assert float(no_update) == pytest.approx(float(-_nll(tiny_model, _only(forget, 0))), abs=1e-5)
    none = dataclasses.replace(small_world, forget=[dataclasses.replace(it, perturbed_answers=())
                                                    for it in small_world.forget])
    with pytest.raises(DataError, match="surgery needs the field \"perturbed_answers\""):
        _ctx(none, tiny_tokenizer)


def _only(batch: dict, row: int) -> dict:
    return {k: v[row:row + 1] for k, v in batch.items()}


def _seq_logp(model, batch) -> torch.Tensor:
    with torch.no_grad():
        nll = F.cross_entropy(_logits(model, batch)[:, :-1].transpose(1, 2), batch["labels"][:, 1:],
                              ignore_index=-100, reduction="none")
    return -nll.sum(1)


def test_steps_learn_the_update_and_unlearn_the_original(small_world, tiny_tokenizer, tiny_model, batches):
    forget, retain = batches
    ctx = _ctx(small_world, tiny_tokenizer, ref_model=copy.deepcopy(tiny_model).requires_grad_(False))
    update = update_batch(forget, ctx)
    before_update, before_forget = _seq_logp(tiny_model, update), _seq_logp(tiny_model, forget)
    opt = torch.optim.Adam(tiny_model.parameters(), lr=1e-3)
    for _ in range(5):
        opt.zero_grad()
        get_method("surgery").loss(tiny_model, forget, retain, ctx).backward()
        opt.step()
    assert (_seq_logp(tiny_model, update) > before_update).all()
    assert (_seq_logp(tiny_model, forget) < before_forget).all()
