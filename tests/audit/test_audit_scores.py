"""Recovery scores and verdicts on hand-made numbers (SPEC section 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from obliviate.audit import Probe, recovery_scores, score_audit, verdict
from obliviate.data.task import ForgetTask, QAItem


def test_nothing_comes_back():
    s = recovery_scores(k_attacked=0.1, k_unlearned=0.1, k_target=0.9, k_oracle=0.1, k_attacked_oracle=0.1)
    assert s["recovered"] == 0.0 and s["recovered_vs_oracle"] == 0.0
    assert s["retained"] == pytest.approx(0.1 / 0.9)


def test_target_level_restored():
    s = recovery_scores(0.9, 0.1, 0.9, 0.1, 0.1)
    assert s["recovered"] == pytest.approx(1.0) and s["recovered_vs_oracle"] == pytest.approx(1.0)
    assert s["retained"] == pytest.approx(1.0)


def test_partial_recovery_hand_computed():
    # U forgot from 0.8 to 0.2; 4-bit brings it to 0.5: half of the forgetting undone
    s = recovery_scores(0.5, 0.2, 0.8, 0.0, 0.1)
    assert s["recovered"] == pytest.approx(0.5)
    assert s["recovered_vs_oracle"] == pytest.approx((0.5 - 0.1) / 0.8)
    assert s["retained"] == pytest.approx(0.5 / 0.8)


def test_clipped_outside_unit_interval_raw_kept():
    more_forgotten = recovery_scores(0.0, 0.2, 0.8, 0.0, 0.0)
    assert more_forgotten["recovered"] == 0.0 and more_forgotten["recovered_raw"] == pytest.approx(-1 / 3)
    beyond_target = recovery_scores(1.0, 0.2, 0.8, 0.0, 0.0)
    assert beyond_target["recovered"] == 1.0 and beyond_target["recovered_raw"] == pytest.approx(8 / 6)


def test_nothing_forgotten_is_undefined():
    s = recovery_scores(0.9, 0.9, 0.9, 0.1, 0.1)
    assert math.isnan(s["recovered"]) and math.isnan(s["recovered_raw"])


def _task(n: int) -> ForgetTask:
    items = [QAItem(f"q{i}?", f"a{i}.", keyword=f"a{i}", subject=f"s{i}") for i in range(n)]
    retain = [QAItem("r?", "r.", keyword="r")]
    return ForgetTask("toy", items, retain, items, retain)


def _probe(correct, index=None, retain=1.0):
    correct = np.array(correct, dtype=float)
    return Probe(list(index if index is not None else range(len(correct))), correct, retain, {})


def test_score_audit_uses_the_attacks_items():
    task = _task(4)
    base = {"target": _probe([1, 1, 1, 1]), "oracle": _probe([0, 0, 0, 0]), "u": _probe([0, 0, 1, 1])}
    # an RTT-like attack probes only items 0 and 1 (V); U recovers one of them
    attacked = {"u": {"rtt": _probe([1, 0], index=[0, 1]), "rtn4": "unavailable: no kernel"},
                "target": {"rtt": _probe([1, 1], index=[0, 1])},
                "oracle": {"rtt": _probe([0, 0], index=[0, 1])}}
    table = score_audit(task, base, attacked)
    row = table["u"]["rtt"]
    assert row["forget_acc_before"] == 0.0 and row["n_probed"] == 2  # U's accuracy on V, not on all items
    assert row["recovered"] == pytest.approx(0.5)
    assert row["recovered_vs_oracle"] == pytest.approx(0.5)
    assert table["u"]["rtn4"] == {"unavailable": "unavailable: no kernel"}
    assert table["target"]["rtt"]["retained"] == pytest.approx(1.0)


def test_verdicts():
    rows = {"rtn4": {"recovered_net": 0.62}, "rtn8": {"recovered_net": 0.05},
            "bnb_nf4": {"unavailable": "x"}}
    assert verdict(rows, forget_acc=0.1, target_forget_acc=1.0) == "hides: rtn4 recovers 62%"
    assert verdict({"rtn8": {"recovered_net": 0.05}}, 0.1, 1.0).startswith("forgets")
    assert verdict(rows, forget_acc=0.8, target_forget_acc=1.0).startswith("did not forget")


def test_net_recovery_discounts_what_the_attack_teaches_the_oracle():
    # U forgot 0.9 -> 0.1; relearning lifts U to 0.5 but also lifts the oracle from 0.1 to 0.3
    s = recovery_scores(k_attacked=0.5, k_unlearned=0.1, k_target=0.9, k_oracle=0.1, k_attacked_oracle=0.3)
    assert s["recovered"] == pytest.approx(0.5)
    assert s["recovered_net"] == pytest.approx((0.4 - 0.2) / 0.8)
    # an attack that changes nothing scores 0 net, whatever U kept
    assert recovery_scores(0.4, 0.4, 0.9, 0.1, 0.1)["recovered_net"] == 0.0


def test_an_attack_that_hurts_the_oracle_does_not_count_as_recovery():
    # quantizing costs the oracle a chance-level guess (0.10 -> 0.08); U is unchanged
    assert recovery_scores(0.82, 0.82, 1.0, 0.10, 0.08)["recovered_net"] == 0.0


# --- intervals and the verdicts that respect them (issue 11) ------------------------------------


def _one_attack(n: int, recovered: int):
    """n forget items: T knows all, O and U none; the attack gives U back `recovered` of them."""
    task = _task(n)
    base = {"target": _probe([1] * n), "oracle": _probe([0] * n), "u": _probe([0] * n)}
    attacked = {"u": {"rtn4": _probe([1] * recovered + [0] * (n - recovered))},
                "target": {"rtn4": _probe([1] * n)}, "oracle": {"rtn4": _probe([0] * n)}}
    return score_audit(task, base, attacked)["u"]["rtn4"]


def test_scores_carry_paired_bootstrap_intervals():
    row = _one_attack(40, 20)
    assert row["recovered_net"] == pytest.approx(0.5)
    for key in ("recovered", "recovered_vs_oracle", "recovered_net", "forget_acc"):
        lo, hi = row[f"{key}_ci"]
        assert lo < row[key] < hi, key
        # 40 items at 0.5: about +-1.96 * sqrt(0.25 / 40) = +-0.155
        assert hi - lo == pytest.approx(0.31, abs=0.06), key


def test_small_recovery_on_few_items_is_inconclusive():
    row = _one_attack(10, 3)  # 30% recovered, but 3 of 10 items: the interval reaches below 25%
    assert row["recovered_net"] == pytest.approx(0.3) and row["recovered_net_ci"][0] < 0.25
    v = verdict({"rtn4": row}, forget_acc=0.0, target_forget_acc=1.0, oracle_forget_acc=0.0)
    lo, hi = row["recovered_net_ci"]
    assert v == f"inconclusive (30%, 95% CI {lo:.0%}–{hi:.0%}, rtn4)"
    # the same share on 40 items clears the threshold at its lower bound
    many = _one_attack(40, 36)
    assert many["recovered_net_ci"][0] >= 0.25
    assert verdict({"rtn4": many}, 0.0, 1.0, oracle_forget_acc=0.0).startswith("hides: rtn4 recovers 90% (95% CI")


def test_no_attack_scored_is_not_audited():
    """Issue 12 A2: when every attack is n/a or NaN there is no evidence, so no "forgets"."""
    unavailable = {"rtn4": {"unavailable": "bitsandbytes is not usable here"}, "rtt": {"unavailable": "x"}}
    v = verdict(unavailable, forget_acc=0.1, target_forget_acc=1.0)
    assert v.startswith("not audited: ") and "bitsandbytes is not usable here" in v and "forgets" not in v
    nan = {"rtn4": {"recovered_net": float("nan")}, "rtt": {"unavailable": "x"}}
    assert verdict(nan, 0.1, 1.0).startswith("not audited: ") and "rtn4" in verdict(nan, 0.1, 1.0)


def test_did_not_forget_is_measured_against_the_oracle_gap():
    """Issue 12 A3: with ROUGE as K (TOFU) the oracle answers with K well above 0; a model exactly at
    the oracle's level has forgotten all there is to forget."""
    rows = {"rtn4": {"recovered_net": 0.0, "recovered_net_ci": [0.0, 0.05]}}
    at_oracle = verdict(rows, forget_acc=0.35, target_forget_acc=0.6, oracle_forget_acc=0.35)
    assert at_oracle.startswith("forgets"), at_oracle
    # a model that closed only a fifth of the gap did not forget
    assert verdict(rows, 0.55, 0.6, oracle_forget_acc=0.35).startswith("did not forget")
    # without an oracle the floor is 0, as before
    assert verdict(rows, 0.35, 0.6).startswith("did not forget")


def test_too_few_probed_items_give_no_interval_and_no_verdict():
    """The default `bench muse` (9 articles) probes one VerbMem item in rtt's half: its bootstrap
    "interval" was 90%-90% and the verdict "hides". Below MIN_CI_ITEMS there is no interval and
    the verdict is inconclusive, naming how few items the attack probed."""
    from obliviate.audit import MIN_CI_ITEMS
    from obliviate.report.tables import _pct

    one = _one_attack(1, 1)  # the one probed item came back
    assert one["recovered_net"] == pytest.approx(1.0) and one["n_probed"] == 1
    assert all(math.isnan(x) for x in one["recovered_net_ci"])
    v = verdict({"rtt": one}, forget_acc=0.0, target_forget_acc=1.0, oracle_forget_acc=0.0)
    assert v == "inconclusive (rtt probed 1 item: too few for an interval; it recovers 100%)"
    assert _pct(one, "recovered_net", ci=True) == "100% (n=1)"
    # nor does a thin row let another attack's small recovery read as "forgets"
    enough = _one_attack(MIN_CI_ITEMS * 8, 0)
    assert verdict({"rtt": _one_attack(2, 0), "rtn4": enough}, 0.0, 1.0, oracle_forget_acc=0.0).startswith(
        "inconclusive (rtt probed 2 items")
    # while a well-measured hiding attack still decides
    hiding = _one_attack(40, 36)
    assert verdict({"rtt": one, "rtn4": hiding}, 0.0, 1.0, oracle_forget_acc=0.0).startswith("hides: rtn4")
    assert not math.isnan(_one_attack(MIN_CI_ITEMS, 2)["recovered_net_ci"][0])
