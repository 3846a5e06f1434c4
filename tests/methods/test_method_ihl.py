"""IHL (LoKU): the per-token term by hand on a 3-word toy, the method's loss on the tiny model
against the formula recomputed here, and the direction of one step."""

import math

import pytest
import torch
import torch.nn.functional as F

from obliviate.data.collate import collate, encode, pad_id_of
from obliviate.methods import get_method, make_params
from obliviate.methods.ihl import inverted_hinge
from obliviate.unlearn import UnlearnContext

FORGET_INDEX = [5, 0, 9]


@pytest.fixture
def batches(small_world, tiny_tokenizer):
    tok, pad = tiny_tokenizer, pad_id_of(tiny_tokenizer)
    forget = collate([encode(tok, small_world.forget[i].question, small_world.forget[i].answer)
                      for i in FORGET_INDEX], pad, FORGET_INDEX)
    retain = collate([encode(tok, it.question, it.answer) for it in small_world.retain[:4]], pad)
    assert (forget["labels"] == -100).any(dim=1).all() and (forget["attention_mask"] == 0).any()
    return forget, retain


def _ctx(overrides=None) -> UnlearnContext:
    return UnlearnContext(params=make_params(get_method("ihl"), overrides))


def test_inverted_hinge_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
    logits = probs.log().unsqueeze(0)  # (1, T=4, V=3): position t predicts label t+1
    labels = torch.tensor([[-100, 0, 2, -100]])  # last position has no target; one masked label
    ihl, mask = inverted_hinge(logits, labels)
    assert mask.tolist() == [[True, True, False]]
    assert ihl[0, 0].item() == pytest.approx(1 + 0.7 - 0.2, abs=1e-6)  # y = 0: 1.5
    assert ihl[0, 1].item() == pytest.approx(1 + 0.1 - 0.7, abs=1e-6)  # y = 2: 0.4
    assert ihl[0, 2].item() == 0.0  # masked: ignored whatever its logits


def test_inverted_hinge_ties_and_masked_positions_do_not_count():
    # y = 1 in a tie with 0: max over the others is the tied 0.4 -> 1 + 0.4 - 0.4 = 1
    logits = torch.tensor([[0.4, 0.4, 0.2], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]).log().unsqueeze(0)
    ihl, mask = inverted_hinge(logits, torch.tensor([[-100, 1, -100]]))
    assert ihl.tolist()[0][0] == pytest.approx(1.0, abs=1e-6)
    assert ihl.sum().item() == pytest.approx(1.0, abs=1e-6) and mask.sum().item() == 1


def test_inverted_hinge_in_fp32_from_bf16_logits():
    logits = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.2, 0.6]]).log().unsqueeze(0).to(torch.bfloat16)
    ihl, _ = inverted_hinge(logits, torch.tensor([[-100, 0]]))
    assert ihl.dtype == torch.float32


def _expected_ihl(model, batch) -> torch.Tensor:
    """Mean over answer tokens of 1 + p(y_t) - max_{v != y_t} p(v), by explicit loops."""
    with torch.no_grad():
        probs = F.softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float(), -1)
    values = []
    for b in range(probs.size(0)):
        for t in range(probs.size(1) - 1):
            y = int(batch["labels"][b, t + 1])
            if y == -100:
                continue
            others = torch.cat([probs[b, t, :y], probs[b, t, y + 1:]])
            values.append(1 + probs[b, t, y] - others.max())
    return torch.stack(values).mean()


def _nll(model, batch) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:], ignore_index=-100)


def test_ihl_loss_on_the_tiny_model(tiny_model, batches):
    forget, retain = batches
    ihl = _expected_ihl(tiny_model, forget)
    assert 0.0 <= float(ihl) <= 2.0
    with torch.no_grad():
        got = get_method("ihl").loss(tiny_model, forget, retain, _ctx())
        assert float(got) == pytest.approx(float(ihl + _nll(tiny_model, retain)), abs=1e-5)
        got = get_method("ihl").loss(tiny_model, forget, None, _ctx({"alpha": 0.0, "gamma": 2.0}))
        assert float(got) == pytest.approx(float(2.0 * ihl), abs=1e-5)


def _mean_p_answer(model, batch) -> float:
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    mask = batch["labels"][:, 1:] != -100
    logp = -F.cross_entropy(logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:].clamp_min(0), reduction="none")
    return float(logp.exp()[mask].mean())


def test_one_sgd_step_lowers_p_answer(tiny_model, batches):
    forget, retain = batches
    before = _mean_p_answer(tiny_model, forget)
    opt = torch.optim.SGD(tiny_model.parameters(), lr=10.0)  # IHL's gradient ~ p(y_t) ~ 1/vocab here
    get_method("ihl").loss(tiny_model, forget, retain, _ctx({"alpha": 0.0})).backward()
    opt.step()
    after = _mean_p_answer(tiny_model, forget)
    assert math.isfinite(after) and after < before * 0.95, (before, after)
