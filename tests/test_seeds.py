"""--seeds: the aggregate (mean, std, verdict agreement) and a two-seed demo end to end."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from typer.testing import CliRunner

from obliviate.cli import app
from obliviate.data.task import DataError
from obliviate.seeds import aggregate, agreement, parse_seeds


def _run(acc_gd: float, verdict: str) -> dict:
    return {"benchmark": "world", "status": "done", "config": {},
            "models": {"target": {"metrics": {"forget_acc": 1.0}}, "gd": {"metrics": {"forget_acc": acc_gd}}},
            "audit": {"verdicts": {"gd": verdict}}}


def test_aggregate_mean_std_and_agreement_by_hand():
    res = aggregate({0: _run(0.1, "hides: rtt recovers 70%"), 1: _run(0.2, "forgets (largest recovery 3%, rtn4)"),
                     2: _run(0.3, "hides: rtt recovers 40%")})
    gd = res["models"]["gd"]
    assert gd["metrics"]["forget_acc"] == pytest.approx(0.2)
    assert gd["metrics_std"]["forget_acc"] == pytest.approx(0.1)  # sample std of 0.1, 0.2, 0.3
    assert gd["per_seed"]["1"]["forget_acc"] == 0.2
    assert math.isnan(res["models"]["target"]["metrics_std"]["forget_acc"]) is False
    assert res["verdict_agreement"]["gd"] == "hides in 2/3 seeds (rtt); forgets in 1/3 seeds"


def test_agreement_groups_inconclusive_and_not_audited():
    assert agreement(["inconclusive (30%, 95% CI 10–50%)", "inconclusive (20%, 95% CI 5–40%)"]) == \
        "inconclusive in 2/2 seeds"
    assert agreement(["not audited: every attack n/a"]) == "not audited in 1/1 seeds"


@pytest.mark.parametrize("bad", ["0,x", "1,1"])
def test_bad_seeds_are_one_line_errors(bad):
    with pytest.raises(DataError, match="--seeds"):
        parse_seeds(bad)


def test_demo_with_two_seeds(tmp_path):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({
        "methods": ["gd"],
        "world": {"n_people": 12, "n_attributes": 4, "forget_fraction": 0.25, "n_holdout_people": 2,
                  "n_countries": 4, "retain_eval_size": 24},
        "model": {"vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2},
        "train": {"max_epochs": 60, "target_acc": 0.95, "check_every": 5},
        "unlearn": {"max_steps": 8, "epochs": 1},
        "audit": {"attacks": ["rtn4"]},
    }))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["demo", "--config", str(run_file), "--out", str(out), "--seeds", "0,1"])
    assert res.exit_code == 0, res.output
    top = json.loads((out / "results.json").read_text())
    s0 = json.loads((out / "seed-0" / "results.json").read_text())
    s1 = json.loads((out / "seed-1" / "results.json").read_text())
    assert s0["unlearn_seed"] == 0 and s1["unlearn_seed"] == 1
    a, b = s0["models"]["gd"]["metrics"]["forget_prob"], s1["models"]["gd"]["metrics"]["forget_prob"]
    assert a != b  # the seed changed the unlearning
    assert top["models"]["gd"]["metrics"]["forget_prob"] == pytest.approx((a + b) / 2)
    # the target is the same model in both seeds
    assert s0["models"]["target"]["metrics"] == s1["models"]["target"]["metrics"]
    assert "seeds" in top["verdict_agreement"]["gd"]
    assert " ± " in res.output
    page = (out / "report.html").read_text()
    assert "seed-0" in page and "seed-1" in page  # the seeds compared on one page
