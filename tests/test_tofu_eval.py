"""`obliviate eval --benchmark tofu`: the TOFU suite on the real files with a tiny model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from obliviate.cli import app
from obliviate.data.tofu import load_tofu, packaged_tofu_dir
from obliviate.evaluate import NO_ORACLE
from obliviate.models.load import save_model
from obliviate.models.tiny import TinyModelConfig, build_model, train_tokenizer

TOFU = packaged_tofu_dir()


@pytest.fixture(scope="module")
def tofu_models(tmp_path_factory):
    task = load_tofu(TOFU, "forget10", authors=2)
    corpus = [s for it in task.forget + task.retain + task.holdout + task.retain_eval
              + [u for v in task.utility.values() for u in v]
              for s in (it.question, it.answer, it.paraphrased_answer, *it.perturbed_answers) if s]
    tok = train_tokenizer(corpus, vocab_size=800)
    cfg = TinyModelConfig(vocab_size=800, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=512)
    root = tmp_path_factory.mktemp("tofu")
    return {name: save_model(build_model(cfg, tok, seed=i), tok, root / name)
            for i, name in enumerate(("model", "oracle"))}


def test_eval_tofu_end_to_end(tofu_models, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["eval", "--benchmark", "tofu", "--data", str(TOFU), "--split", "forget10",
                                   "--authors", "2", "--model", str(tofu_models["model"]),
                                   "--oracle", str(tofu_models["oracle"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"] == "tofu_forget10_a2"
    m = results["models"]["model"]["metrics"]
    for key in ("forget_quality", "model_utility", "forget_truth_ratio", "forget_prob", "forget_rouge",
                "privleak", "utility_real_authors_prob", "utility_world_facts_truth_ratio"):
        assert m[key] is not None, key
    assert 0.0 <= m["forget_quality"] <= 1.0
    assert results["models"]["oracle"]["metrics"]["forget_quality"] == pytest.approx(1.0)
    per_item = results["models"]["model"]["per_item"]
    assert len(per_item["forget"]["truth_ratio"]) == 20  # one forget author x 20 QA
    assert len(per_item["utility_real_authors"]["norm_prob"]) == 100


def test_eval_tofu_bad_split():
    res = CliRunner().invoke(app, ["eval", "--benchmark", "tofu", "--data", str(TOFU), "--split", "forget07",
                                   "--model", "x"])
    assert res.exit_code == 2 and "forget07" in res.output


def test_eval_without_oracle_reports_no_oracle_relative_score(tofu_models, tmp_path):
    """No oracle, no score: the model is not compared with itself (that gave forget quality 1.0
    and privleak 0.0, the ideal values); both are NaN with the reason, in results.json, the
    report and the printed table."""
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["eval", "--benchmark", "tofu", "--data", str(TOFU), "--split", "forget10",
                                   "--authors", "2", "--model", str(tofu_models["model"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    entry = json.loads((out / "results.json").read_text())["models"]["model"]
    assert entry["metrics"]["forget_quality"] is None and entry["metrics"]["privleak"] is None
    assert entry["metrics"]["model_utility"] is not None
    assert entry["not_measured"] == {"forget_quality": NO_ORACLE, "privleak": NO_ORACLE}
    report = (out / "report.md").read_text()
    header, row = [line for line in report.splitlines() if line.startswith("| model |")][:2]
    cells = dict(zip(header.split("|"), row.split("|"), strict=True))
    assert cells[" forget quality ↑ "].strip() == "n/a" and cells[" privleak →0 "].strip() == "n/a", row
    assert f"n/a: forget quality of model: {NO_ORACLE}" in report
    assert f"n/a: privleak of model: {NO_ORACLE}" in report
    assert NO_ORACLE in res.output
