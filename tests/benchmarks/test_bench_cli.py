"""`obliviate bench wmdp|rwku` from the command line: options reach the runners, the table is
printed, bad input is a one-line error (the runners themselves are tested beside this file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from obliviate.cli import app
from obliviate.models.load import save_model
from obliviate.models.tiny import TinyModelConfig, build_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny_tokenizer):
    cfg = TinyModelConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=2)
    return save_model(build_model(cfg, tiny_tokenizer, seed=0), tiny_tokenizer, tmp_path_factory.mktemp("m") / "tiny")


def test_bench_rwku_cli(tiny_dir, tmp_path):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({"method_overrides": {"ga": {"max_steps": 2, "lr": 1e-3, "batch_size": 2}}}))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["bench", "rwku", "--model", str(tiny_dir), "--data", str(FIXTURES / "rwku"),
                                   "--subject", "Maren Holloway", "--methods", "ga", "--config", str(run_file),
                                   "--attacks", "rtn4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert list(results["models"]) == ["target", "ga"] and results["models"]["ga"]["unlearn"]["steps"] == 2
    assert "forget_level1_rouge" in results["models"]["ga"]["metrics"]
    res = CliRunner().invoke(app, ["bench", "rwku", "--model", str(tiny_dir), "--data", str(FIXTURES / "rwku"),
                                   "--subject", "Nobody Atall", "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "Nobody Atall" in res.output


def test_bench_wmdp_cli(tiny_dir, tmp_path):
    wmdp = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wmdp"
    if not wmdp.is_dir():
        pytest.skip(f"no WMDP files at {wmdp}")
    # the world tokenizer splits " A" in two: scored as the prompt's continuation, as lm-eval does
    res = CliRunner().invoke(app, ["bench", "wmdp", "--model", str(tiny_dir), "--data", str(wmdp), "--subsets",
                                   "bio", "--limit", "2", "--out", str(tmp_path / "split")])
    assert res.exit_code == 0, res.output
    split = json.loads((tmp_path / "split" / "results.json").read_text())["models"]["target"]["metrics"]
    assert split["wmdp_bio_n"] == 2 and 0 <= split["wmdp_bio_acc"] <= 1
    from tests.benchmarks.runs import wmdp_tiny_dir as _tiny_dir

    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["bench", "wmdp", "--model", str(_tiny_dir(tmp_path / "mc")), "--data", str(wmdp),
                                   "--subsets", "bio,cyber", "--limit", "4", "--attacks", "rtn4",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "results.json").read_text())["models"]["target"]["metrics"]
    assert m["wmdp_bio_n"] == 4 and m["wmdp_cyber_n"] == 4 and "wmdp_chem_n" not in m
    assert 0 <= m["wmdp_acc"] <= 1
    res = CliRunner().invoke(app, ["bench", "wmdp", "--model", str(tiny_dir), "--data", str(wmdp), "--subsets",
                                   "physics", "--out", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "physics" in res.output


def test_bench_semeval_cli(tmp_path):
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({
        "model": {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                  "num_attention_heads": 2, "max_position_embeddings": 512},
        "train": {"max_epochs": 10, "min_epochs": 10, "batch_size": 8},
        "method_overrides": {"gd": {"max_steps": 2, "lr": 1e-3}}}))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["bench", "semeval", "--data", str(FIXTURES / "semeval"), "--methods", "gd",
                                   "--mmlu", "0.5", "--config", str(run_file), "--attacks", "rtn4",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"target", "oracle", "gd"}
    for entry in results["models"].values():
        assert 0 <= entry["metrics"]["final"] <= 1 and 0 <= entry["metrics"]["task_aggregate"] <= 1
    res = CliRunner().invoke(app, ["bench", "semeval", "--data", str(tmp_path / "nowhere"), "--out",
                                   str(tmp_path / "bad")])
    assert res.exit_code == 2 and "nowhere" in res.output


def test_bench_tdec_cli(tmp_path):
    data = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tdec"
    if not data.is_dir():
        pytest.skip(f"no TDEC files at {data}")
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({
        "model": {"vocab_size": 1024, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                  "num_attention_heads": 2, "max_position_embeddings": 256},
        "train": {"lr": 3e-3, "batch_size": 8, "max_epochs": 60, "min_epochs": 60, "check_every": 60,
                  "warmup_steps": 10, "check_items": 1},
        "unlearn": {"epochs": 40, "batch_size": 4, "warmup_ratio": 0.0, "check_every": 1},
        "method_overrides": {"ga": {"lr": 5e-4}}}))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["bench", "tdec", "--data", str(data), "--limit", "8", "--max-tokens", "64",
                                   "--methods", "ga", "--attacks", "rtn8", "--config", str(run_file), "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    m = results["models"]
    assert m["target"]["metrics"]["forget_ma"] > m["target"]["metrics"]["unseen_ma"] + 0.5
    assert m["ga"]["metrics"]["forget_ma"] < m["target"]["metrics"]["forget_ma"] - 0.5
    res = CliRunner().invoke(app, ["bench", "tdec", "--data", str(data), "--forget-set", "7", "--out",
                                   str(tmp_path / "bad")])
    assert res.exit_code == 2 and "7" in res.output
