"""The shared loss pieces (obliviate/methods/_losses.py) against formulas written out by hand.

Toy: batch of 2, sequence length 4, vocabulary 3. Position t's logits predict token t+1, so
the targets are labels[:, 1:]; -100 marks prompt and padding.
"""

import math
from types import SimpleNamespace

import pytest
import torch

from obliviate.methods._losses import (
    kl_to_ref,
    masked_kl,
    nll_mean,
    nll_mean_from_logits,
    npo_loss,
    retain_loss,
    sequence_logp,
    sequence_nll_avg,
    token_logp,
)

# Row 0: two prompt tokens, then a 2-token answer. Row 1: one prompt token, a 2-token answer,
# one padding token. Shifted targets: row 0 -> [-100, 2, 0], row 1 -> [1, 2, -100].
LABELS = torch.tensor([[-100, -100, 2, 0],
                       [-100, 1, 2, -100]])
LOGITS = torch.tensor([[[0.5, -1.0, 2.0], [1.0, 0.0, -0.5], [0.3, 0.2, 1.7], [9.0, 9.0, 9.0]],
                       [[-0.2, 1.5, 0.1], [2.0, -2.0, 0.0], [0.7, 0.7, -3.0], [4.0, -4.0, 0.0]]])
REF_LOGITS = torch.tensor([[[0.0, 0.0, 0.0], [-1.0, 2.0, 0.5], [1.2, -0.3, 0.0], [0.0, 1.0, 2.0]],
                           [[1.0, 1.0, -1.0], [0.1, 0.2, 0.3], [-2.0, 0.5, 1.5], [3.0, 3.0, 3.0]]])
# (row, logits position) pairs that predict a real answer token, with the token.
ANSWER = [(0, 1, 2), (0, 2, 0), (1, 0, 1), (1, 1, 2)]
# Logits positions that predict prompt/padding (or nothing: the last position).
MASKED = [(0, 0), (0, 3), (1, 2), (1, 3)]


def _log_softmax(row: list[float], v: int) -> float:
    return row[v] - math.log(sum(math.exp(x) for x in row))


def _hand_token_logp(logits: torch.Tensor) -> dict[tuple[int, int], float]:
    return {(b, t): _log_softmax(logits[b, t].tolist(), v) for b, t, v in ANSWER}


def _fake_model(logits: torch.Tensor):
    """Stands in for a causal LM: returns fixed logits whatever the input (computed from
    `logits` inside the call, as a model would, so that torch.no_grad around it applies)."""
    return lambda **kw: SimpleNamespace(logits=logits * 1.0)


def _batch() -> dict:
    return {"input_ids": torch.zeros(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4, dtype=torch.long),
            "labels": LABELS, "index": torch.arange(2)}


def _poison_masked(logits: torch.Tensor, values=(50.0, -30.0, 7.0)) -> torch.Tensor:
    out = logits.clone()
    for b, t in MASKED:
        out[b, t] = torch.tensor(values)
    return out


def test_token_logp_by_hand():
    logp, mask = token_logp(LOGITS, LABELS)
    assert logp.shape == mask.shape == (2, 3)
    expected = torch.zeros(2, 3)
    for (b, t), v in _hand_token_logp(LOGITS).items():
        expected[b, t] = v
    torch.testing.assert_close(logp, expected, atol=1e-6, rtol=0)
    assert mask.tolist() == [[False, True, True], [True, True, False]]
    assert (logp[~mask] == 0).all()


def test_token_logp_is_fp32_for_low_precision_logits():
    logp, _ = token_logp(LOGITS.bfloat16(), LABELS)
    assert logp.dtype == torch.float32


def test_nll_mean_by_hand_over_answer_tokens_only():
    hand = _hand_token_logp(LOGITS)
    expected = -sum(hand.values()) / len(hand)  # 4 answer tokens, not 6 positions
    assert float(nll_mean_from_logits(LOGITS, LABELS)) == pytest.approx(expected, abs=1e-6)
    assert float(nll_mean(_fake_model(LOGITS), _batch())) == pytest.approx(expected, abs=1e-6)


def test_nll_mean_ignores_prompt_and_padding_logits():
    base = nll_mean_from_logits(LOGITS, LABELS)
    torch.testing.assert_close(nll_mean_from_logits(_poison_masked(LOGITS), LABELS), base, atol=0, rtol=0)
    # ...and an answer position does count (the check above can fail).
    changed = LOGITS.clone()
    changed[0, 1] = torch.tensor([5.0, 0.0, -5.0])
    assert float(nll_mean_from_logits(changed, LABELS)) > float(base) + 1.0


def test_nll_mean_gradient_is_zero_at_masked_positions():
    logits = LOGITS.clone().requires_grad_(True)
    nll_mean_from_logits(logits, LABELS).backward()
    for b, t in MASKED:
        assert (logits.grad[b, t] == 0).all()
    for b, t, _ in ANSWER:
        assert logits.grad[b, t].abs().sum() > 0


def test_sequence_logp_and_nll_avg_by_hand():
    hand = _hand_token_logp(LOGITS)
    row_sum = [sum(v for (b, _), v in hand.items() if b == r) for r in range(2)]
    model = _fake_model(LOGITS)
    torch.testing.assert_close(sequence_logp(model, _batch()), torch.tensor(row_sum), atol=1e-6, rtol=0)
    # both rows have 2 answer tokens; make row 1 have 1 to see the per-item length
    labels = LABELS.clone()
    labels[1, 2] = -100
    batch = {**_batch(), "labels": labels}
    expected = torch.tensor([-row_sum[0] / 2, -hand[(1, 0)] / 1])
    torch.testing.assert_close(sequence_nll_avg(model, batch), expected, atol=1e-6, rtol=0)


def _hand_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> float:
    total = 0.0
    for b, t, _ in ANSWER:
        q, r = logits[b, t].tolist(), ref_logits[b, t].tolist()
        for v in range(3):
            log_r, log_q = _log_softmax(r, v), _log_softmax(q, v)
            total += math.exp(log_r) * (log_r - log_q)
    return total / len(ANSWER)


def test_masked_kl_by_hand_is_kl_ref_to_model():
    got = float(masked_kl(LOGITS, REF_LOGITS, LABELS))
    assert got == pytest.approx(_hand_kl(LOGITS, REF_LOGITS), abs=1e-6)
    # the direction matters: KL(p_theta || p_ref) is a different number on this toy
    assert abs(got - _hand_kl(REF_LOGITS, LOGITS)) > 1e-3


def test_masked_kl_zero_for_equal_logits():
    assert float(masked_kl(LOGITS, LOGITS.clone(), LABELS)) == pytest.approx(0.0, abs=1e-7)


def test_masked_kl_ignores_masked_positions():
    base = masked_kl(LOGITS, REF_LOGITS, LABELS)
    got = masked_kl(_poison_masked(LOGITS), _poison_masked(REF_LOGITS, (-20.0, 0.0, 20.0)), LABELS)
    torch.testing.assert_close(got, base, atol=0, rtol=0)


def test_kl_to_ref_uses_ref_without_gradient():
    logits = LOGITS.clone().requires_grad_(True)
    ref_logits = REF_LOGITS.clone().requires_grad_(True)
    kl = kl_to_ref(_fake_model(logits), _fake_model(ref_logits), _batch())
    assert float(kl.detach()) == pytest.approx(_hand_kl(LOGITS, REF_LOGITS), abs=1e-6)
    kl.backward()
    assert ref_logits.grad is None
    assert logits.grad.abs().sum() > 0


def test_retain_loss_dispatch():
    ctx = SimpleNamespace(ref_model=_fake_model(REF_LOGITS))
    model = _fake_model(LOGITS)
    torch.testing.assert_close(retain_loss("nll", model, _batch(), ctx), nll_mean_from_logits(LOGITS, LABELS))
    torch.testing.assert_close(retain_loss("kl", model, _batch(), ctx), masked_kl(LOGITS, REF_LOGITS, LABELS))
    with pytest.raises(ValueError, match="nll"):
        retain_loss("mse", model, _batch(), ctx)


def _hand_npo(logp: list[float], ref: list[float], beta: float) -> float:
    terms = [math.log(1.0 / (1.0 + math.exp(beta * (lp - r)))) for lp, r in zip(logp, ref, strict=True)]  # log sigmoid(-b*d)
    return -(2.0 / beta) * sum(terms) / len(terms)


@pytest.mark.parametrize("beta", [1.0, 0.1])
def test_npo_loss_by_hand(beta):
    logp, ref = [-2.0, -5.0, -1.5], [-3.0, -4.0, -1.5]
    got = float(npo_loss(torch.tensor(logp), torch.tensor(ref), beta))
    assert got == pytest.approx(_hand_npo(logp, ref, beta), rel=1e-6)


def test_npo_loss_beta1_known_value():
    # d = logp - ref = [1, -1]: -(2/1) * (log sigmoid(-1) + log sigmoid(1)) / 2
    expected = -(math.log(1 / (1 + math.e)) + math.log(1 / (1 + math.exp(-1))))
    assert float(npo_loss(torch.tensor([-2.0, -5.0]), torch.tensor([-3.0, -4.0]), 1.0)) == pytest.approx(
        expected, abs=1e-6)


def test_npo_loss_at_reference_is_2_log2_over_beta():
    x = torch.tensor([-7.0, -3.0])
    assert float(npo_loss(x, x.clone(), 0.5)) == pytest.approx(2 / 0.5 * math.log(2), abs=1e-6)


def test_npo_loss_gradient_lowers_logp():
    logp = torch.tensor([-2.0, -5.0, -40.0], requires_grad=True)
    npo_loss(logp, torch.tensor([-3.0, -4.0, -1.0]), 1.0).backward()
    # positive gradient: a descent step moves logp down (the forget answers become less likely)
    assert (logp.grad > 0).all()
    # NPO's weight: dL/dlogp_i = (2/n) * sigmoid(beta * d_i), small once the answer is unlikely
    d = torch.tensor([1.0, -1.0, -39.0])
    torch.testing.assert_close(logp.grad, 2 / 3 * torch.sigmoid(d), atol=1e-6, rtol=0)
