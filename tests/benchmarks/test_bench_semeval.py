"""`obliviate.benchmarks.semeval.run` on the SemEval-2025 Task 4 fixtures: a tiny target
memorises every item, the oracle only the retain ones, `ga` unlearns the forget set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from obliviate.benchmarks import semeval
from obliviate.data.task import DataError, QAItem
from tests.benchmarks.runs import SEMEVAL_SMALL as SMALL

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "semeval"

def test_item_text_joins_input_and_output():
    assert semeval.item_text(QAItem("The canal opened in", " 1883.")) == "The canal opened in 1883."
    assert semeval.item_text(QAItem("Which river?", "The Tallow")) == "Which river? The Tallow"
    assert semeval.item_text(QAItem(None, "a document")) == "a document"


def test_the_target_memorises_and_ga_forgets(semeval_run):
    _, results = semeval_run
    m = {n: e["metrics"] for n, e in results["models"].items()}
    assert list(m) == ["target", "oracle", "ga"]
    t, o, g = m["target"], m["oracle"], m["ga"]
    # the target completes the forget items verbatim (validation fold: trained, as the published target)
    assert t["forget_regurgitation"] >= 0.9 and t["forget_knowledge"] == 1.0
    assert o["forget_regurgitation"] <= 0.3 and o["forget_knowledge"] == 0.0
    assert o["retain_regurgitation"] >= 0.9 and t["retain_regurgitation"] >= 0.9
    assert t["forget_nll"] < o["forget_nll"] - 2.0
    # members are perfectly exposed in the target: MIA score 0, task aggregate 0 (forget cells 1 - 1)
    assert t["mia_auc"] == 1.0 and t["mia_score"] == 0.0 and t["task_aggregate"] == 0.0
    assert o["task_aggregate"] > 0.9 and o["final"] == pytest.approx((o["task_aggregate"] + o["mia_score"] + 0.5) / 3)
    # gradient ascent: nothing of the forget set is completed any more
    assert g["forget_regurgitation"] < 0.2 and g["forget_nll"] > t["forget_nll"] + 5
    assert results["models"]["ga"]["unlearn"]["steps"] == 10


def test_the_run_directory(semeval_run):
    out, results = semeval_run
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "done" and saved["benchmark"] == "semeval25"
    keys = [c[0] for c in saved["columns"]]
    assert keys[:3] == ["task_aggregate", "mia_score", "final"] and "retain_knowledge" in keys
    assert all(k in e["metrics"] for e in saved["models"].values() for k in keys)
    info = saved["semeval"]
    assert info["final_components"] == ["task_aggregate", "mia_score", "mmlu"] and info["complete"] is False
    assert "forget/Task3/regurgitation" in info["missing"]  # the fixtures' validation folds lack some cells
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["benchmark"] == "semeval" and cfg["methods"] == ["ga"] and cfg["method_overrides"]["ga"]["epochs"] == 10
    rows = [json.loads(line) for line in (out / "per_item.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 8 and {r["kind"] for r in rows} == {"regurgitation", "knowledge"}
    assert "task agg" in (out / "report.md").read_text()


def test_bad_data_dir_refusal_methods_and_mmlu_are_data_errors(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        semeval.run(tmp_path / "r", SMALL, tmp_path / "nope")
    with pytest.raises(DataError, match="idk_nll"):
        semeval.run(tmp_path / "r2", SMALL.model_copy(update={"methods": ["idk_nll"]}), DATA)
    with pytest.raises(DataError, match="mmlu"):
        semeval.run(tmp_path / "r3", SMALL, DATA, mmlu=1.5)
