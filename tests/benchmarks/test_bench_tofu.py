"""`obliviate prepare tofu` and `obliviate bench tofu` on a reduced TOFU (the shipped files):
tiny target and oracle trained from the real data, one method, the suite and the audit."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from obliviate.cli import app
from obliviate.models.prepare import prepare_tofu_models
from obliviate.models.tiny import TinyModelConfig, TrainConfig
from obliviate.report.tables import audit_grid
from tests.benchmarks.runs import TOFU_SMALL as SMALL


def test_tiny_models_learn_tofu_and_the_oracle_never_saw_the_forget_authors(tofu_run):
    out, results, _ = tofu_run
    m = {n: e["metrics"] for n, e in results["models"].items()}
    assert results["benchmark"] == "tofu_forget10_a2" and set(m) == {"target", "oracle", "gd"}
    log = json.loads((results_path := (out / "models" / "target" / "train_log.json")).read_text())
    assert log["stop_metric"] == "rouge" and log["acc"] >= 0.9, results_path
    assert m["target"]["forget_rouge"] >= 0.8
    assert m["oracle"]["forget_rouge"] <= m["target"]["forget_rouge"] - 0.4
    assert m["oracle"]["forget_quality"] == pytest.approx(1.0)
    assert m["gd"]["forget_rouge"] < m["target"]["forget_rouge"] - 0.3
    for key in ("model_utility", "forget_truth_ratio", "privleak", "retain_rouge"):
        assert all(key in v for v in m.values()), key


def test_the_audit_uses_rouge_and_rtt_needs_two_authors(tofu_run):
    out, results, output = tofu_run
    audit = json.loads((out / "audit.json").read_text())
    assert audit["knowledge"] == "rouge" and audit["attacks"] == ["rtn4", "paraphrase", "rtt", "noise_int4"]
    # forget10 with 2 retain authors keeps one forget author: RTT cannot split it into T and V
    assert "at least 2 subjects" in audit["models"]["gd"]["rtt"]["unavailable"]
    row = audit["models"]["target"]["rtn4"]
    assert row["forget_acc"] >= 0.6  # 4-bit RTN keeps most of what the target knows
    assert "target ROUGE" in audit_grid(audit)[0] and "audit" in output
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["benchmark"] == "tofu" and cfg["eval"]["knowledge"] == "rouge" and cfg["methods"] == ["gd"]


def test_prepare_reuses_the_cached_models(tofu_run):
    _, results, _ = tofu_run
    logs: list[str] = []
    dirs = prepare_tofu_models(None, ("forget10",), 2, TinyModelConfig(**SMALL["model"]),
                               TrainConfig(**SMALL["train"]), log=logs.append)
    assert str(dirs["target"]) == results["models"]["target"]["path"]
    assert str(dirs["forget10"]) == results["models"]["oracle"]["path"]
    assert len(logs) == 2 and all(line.startswith("using cached") for line in logs)
    res = CliRunner().invoke(app, ["prepare", "tofu", "--splits", "forget10,forget33"])
    assert res.exit_code == 2 and "forget33" in res.output


def test_bad_split_and_oracle_without_model_are_one_line_errors(tmp_path):
    res = CliRunner().invoke(app, ["bench", "tofu", "--split", "forget20", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "forget20" in res.output and "forget10" in res.output
    res = CliRunner().invoke(app, ["bench", "tofu", "--oracle", "x", "--out", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "--oracle needs --model" in res.output
