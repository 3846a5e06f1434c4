"""`obliviate.benchmarks.rwku.run` on the made-up RWKU fixture (tests/fixtures/rwku) with a tiny
model saved to a temporary directory: probes evaluated, the subject's passages unlearned with
GA / NPO / GD, the run directory, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from obliviate.benchmarks import rwku
from obliviate.config import RunConfig
from obliviate.data.rwku import PROBE_SETS, load_rwku_probes
from obliviate.data.task import DataError
from obliviate.evaluate import EvalConfig
from obliviate.metrics.rwku import evaluate_rwku
from obliviate.models.load import load_model
from tests.benchmarks.runs import MAREN
from tests.benchmarks.runs import RWKU_COUNTS as COUNTS
from tests.benchmarks.runs import RWKU_STEPS as STEPS

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "rwku"
def test_probes_are_scored_on_every_level(rwku_run):
    root, model_dir, results, _ = rwku_run
    assert list(results["models"]) == ["target", *STEPS]
    entry = results["models"]["target"]
    m = entry["metrics"]
    for name, n in COUNTS.items():
        for k in ("acc", "rouge"):
            assert 0.0 <= m[f"{name}_{k}"] <= 1.0
            assert len(entry["per_item"][name][k]) == n
    for t in ("prefix_injection", "affirmative_suffix", "incontext_learning", "multiple_choice"):
        assert 0.0 <= m[f"forget_level3_{t}_rouge"] <= 1.0
    for s in ("loss", "zlib", "min_k", "min_k_pp"):
        assert 0.0 <= m[f"mia_{s}_auc"] <= 1.0
        assert len(entry["per_item"]["forget_mia"][f"mia_{s}"]) == 2
    assert m["forget_passage_nll"] > 0 and len(entry["per_item"]["passage"]["nll"]) == 2
    # the same numbers as evaluating the saved model directly
    model, tok = load_model(model_dir)
    direct = evaluate_rwku(model, tok, load_rwku_probes(FIXTURE, [MAREN]), EvalConfig(batch_size=16))
    for name in COUNTS:
        assert m[f"{name}_rouge"] == pytest.approx(direct.metrics[f"{name}_rouge"])
    assert m["mia_loss_auc"] == pytest.approx(direct.metrics["mia_loss_auc"])


def test_unlearned_models_changed(rwku_run):
    root, model_dir, results, logs = rwku_run
    base = results["models"]["target"]["metrics"]
    before = load_file(str(model_dir / "model.safetensors"))
    for method, steps in STEPS.items():
        entry = results["models"][method]
        u = entry["unlearn"]
        assert u["status"] == "done" and u["steps"] == steps and u["lr"] == 1e-3
        assert np.isfinite(u["final_loss"])
        for name in PROBE_SETS:
            assert 0.0 <= entry["metrics"][f"{name}_rouge"] <= 1.0
        after = load_file(str(root / "run" / "models" / method / "model.safetensors"))
        assert any(not torch.equal(before[k], after[k]) for k in before), method
        assert any(line.startswith(f"{method}: done, {steps} steps") for line in logs)
    # gradient ascent on the passages raises their NLL; NPO pushes the same way
    assert results["models"]["ga"]["metrics"]["forget_passage_nll"] > base["forget_passage_nll"] + 0.01
    assert results["models"]["npo"]["metrics"]["forget_passage_nll"] > base["forget_passage_nll"]


def test_run_directory(rwku_run):
    root, _, results, _ = rwku_run
    out = root / "run"
    saved = json.loads((out / "results.json").read_text())
    assert saved["benchmark"] == "rwku_maren_holloway" and saved["status"] == "done"
    assert saved["sources"]["subjects"] == [MAREN] and saved["sources"]["chat"] is False
    assert [c[0] for c in saved["columns"]] == [
        "forget_level1_rouge", "forget_level2_rouge", "forget_level3_rouge", "neighbor_level1_rouge",
        "neighbor_level2_rouge", "mia_loss_auc", "forget_passage_nll"]
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["benchmark"] == "rwku" and cfg["methods"] == list(STEPS) and cfg["audit"]["enabled"] is True
    rows = [json.loads(line) for line in (out / "per_item.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * sum(COUNTS.values())
    assert all("generation" in r and "\n" not in r["generation"] for r in rows)
    assert {r["type"] for r in rows if r["set"] == "forget_level3"} >= {"prefix injection", "multiple choice"}
    report = (out / "report.md").read_text()
    assert "forget L1" in report and "neighbour L2" in report and "| npo | done | 2 |" in report
    assert "TOFU" not in report  # the QA suite's reading guide is replaced by RWKU's


def test_bad_input_is_a_data_error_naming_it(tmp_path):
    cfg = RunConfig(methods=["ga"])
    with pytest.raises(DataError, match="unknown RWKU subject 'Stephen King'"):
        rwku.run(tmp_path / "r1", cfg, FIXTURE, "unused", ["Stephen King"])
    with pytest.raises(DataError, match="nowhere: no such directory"):
        rwku.run(tmp_path / "r2", cfg, tmp_path / "nowhere", "unused", [MAREN])
    with pytest.raises(DataError, match="no subject selected"):
        rwku.run(tmp_path / "r3", cfg, FIXTURE, "unused", [])
    with pytest.raises(DataError, match="'idk_dpo' needs questions"):
        rwku.run(tmp_path / "r4", RunConfig(methods=["idk_dpo"]), FIXTURE, "unused", [MAREN])
    with pytest.raises(KeyError, match="no_such_method"):
        rwku.run(tmp_path / "r5", RunConfig(methods=["no_such_method"]), FIXTURE, "unused", [MAREN])
    with pytest.raises(DataError, match="no such model directory"):
        rwku.run(tmp_path / "r6", cfg, FIXTURE, str(tmp_path / "no-model"), [MAREN])
