"""`obliviate bench tdec` on a reduced TDEC (8 of the 32 sequences of the real files): a tiny
target trained from the data, gradient ascent with the published stopping rule, the run
directory, the quantization audit, and the real-model path (a saved model given as `model=`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from obliviate.benchmarks import tdec
from obliviate.config import AuditConfig, RunConfig
from obliviate.data.task import DataError
from tests.benchmarks.runs import TDEC_SMALL_CFG as SMALL_CFG

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tdec"  # conftest.SHARED_DATA
pytestmark = pytest.mark.skipif(not (DATA / "lm_extraction_32_0.csv").is_file(), reason=f"{DATA} is absent")

def test_the_tiny_target_memorises_the_forget_set_not_the_unseen_one(tdec_run):
    _, results, _ = tdec_run
    t = results["models"]["target"]["metrics"]
    assert t["forget_ma"] >= 0.8 and t["forget_ma"] > t["unseen_ma"] + 0.5
    assert t["forget_el10"] > t["unseen_el10"] + 0.3
    assert t["val_nll"] < t["unseen_nll"] - 2  # the validation texts are its retain set: trained
    assert results["thresholds"] == {"ma": t["unseen_ma"], "el10": t["unseen_el10"]}
    assert t["forgotten"] == 0
    assert len(results["models"]["target"]["per_item"]["forget"]["ma"]) == 8
    assert len(results["models"]["target"]["per_item"]["validation"]["nll"]) == 12


def test_ga_forgets_until_the_stopping_rule_holds(tdec_run):
    _, results, logs = tdec_run
    t, g = results["models"]["target"]["metrics"], results["models"]["ga"]["metrics"]
    u = results["models"]["ga"]["unlearn"]
    assert g["forget_ma"] < t["forget_ma"] - 0.5 and g["forget_el10"] < t["forget_el10"] - 0.3
    assert u["status"] == "stopped_target", u["message"]
    assert u["message"].startswith("TDEC stopping rule met at step") and u["lr"] == 5e-4
    assert g["forget_ma"] <= results["thresholds"]["ma"] and g["forget_el10"] <= results["thresholds"]["el10"]
    assert g["forgotten"] == 1 and g["steps"] == u["steps"] > 0
    assert any("TDEC stopping rule met" in line for line in logs)


def test_the_run_directory(tdec_run):
    out, results, _ = tdec_run
    for f in ("config.yaml", "provenance.json", "results.json", "report.md", "audit.json"):
        assert (out / f).is_file(), f
    saved = json.loads((out / "results.json").read_text())
    assert saved["benchmark"] == "tdec" and saved["status"] == "done" and set(saved["models"]) == {"target", "ga"}
    assert [c[0] for c in saved["columns"]][:5] == ["forget_ma", "forget_el10", "unseen_ma", "unseen_el10", "val_nll"]
    assert saved["sources"]["unseen"] == 1 and saved["sources"]["limit"] == 8
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["benchmark"] == "tdec" and cfg["methods"] == ["ga"] and cfg["model"]["hidden_size"] == 128
    report = (out / "report.md").read_text()
    assert "| model | forget MA ↓ | forget EL10 ↓ |" in report and "TDEC stopping rule met" in report
    assert (out / "models" / "target" / "config.json").is_file() and (out / "models" / "ga" / "config.json").is_file()


def test_the_audit_measures_ma_after_quantization(tdec_run):
    out, results, _ = tdec_run
    audit = json.loads((out / "audit.json").read_text())
    assert audit["knowledge"] == "ma" and set(audit["measures"]) == {"ma", "el10"}
    ma, el = audit["measures"]["ma"]["models"], audit["measures"]["el10"]["models"]
    # K is the table's MA: the unattacked target's K is its forget MA, and 8 bits keep it
    t = results["models"]["target"]["metrics"]
    assert audit["baseline"]["target"]["forget_acc"] == pytest.approx(t["forget_ma"])
    assert audit["measures"]["el10"]["baseline"]["target"]["forget_acc"] == pytest.approx(t["forget_el10"])
    assert ma["target"]["rtn8"]["forget_acc"] == pytest.approx(t["forget_ma"], abs=0.05)
    assert "raw texts" in ma["ga"]["paraphrase"]["unavailable"]
    assert 0.0 <= ma["ga"]["rtn8"]["recovered"] <= 1.0 and el["ga"]["rtn8"]["forget_acc"] >= 0
    assert ma["ga"]["rtt"]["n_probed"] == 4 and ma["ga"]["rtt"]["info"]["n_train"] == 4  # half of the 8
    assert "no oracle model" in audit["measures"]["ma"]["oracle_stand_in"]
    assert "### K = memorisation accuracy (MA)" in (out / "report.md").read_text()


def test_the_target_is_cached(tdec_run):
    logs: list[str] = []
    forget, retain, _ = tdec.load_texts(DATA, 0, 1, 8, 4)
    path = tdec.tiny_target(DATA, forget, retain, SMALL_CFG.model, SMALL_CFG.train, 64, log=logs.append)
    assert str(path) == tdec_run[1]["models"]["target"]["path"] and logs[0].startswith("using cached")


def test_a_given_model_runs_with_the_real_model_settings(tdec_run, tmp_path):
    out, _, _ = tdec_run
    cfg = RunConfig(methods=["ga"], audit=AuditConfig(enabled=False), save_models=False,
                    method_overrides={"ga": {"max_steps": 2}})
    res = tdec.run(tmp_path / "real", cfg, DATA, model=str(out / "models" / "target"), limit=4, retain_per_set=2,
                   max_tokens=64, el_prefixes=4, log=lambda s: None)
    u = res["models"]["ga"]["unlearn"]
    assert res["sources"]["unseen"] == "pile" and u["lr"] == 5e-5 and u["steps"] == 2
    assert u["status"] == "done" and "not met within the cap" in u["message"]
    assert res["config"]["unlearn"]["batch_size"] == 32 and "audit" not in res


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="is the forget set"):
        tdec.run(tmp_path / "a", RunConfig(), DATA, forget_set=2, unseen=2)
    with pytest.raises(DataError, match="must be 0..4"):
        tdec.run(tmp_path / "b", RunConfig(), DATA, forget_set=5)
    with pytest.raises(DataError, match="raw text"):
        tdec.run(tmp_path / "c", RunConfig(methods=["idk_dpo"]), DATA)
    with pytest.raises(DataError, match="unseen 'books'"):
        tdec.run(tmp_path / "d", RunConfig(), DATA, unseen="books")
    with pytest.raises(KeyError, match="unknown attack 'rtn5'"):  # before any training
        tdec.run(tmp_path / "e", RunConfig(audit=AuditConfig(attacks=["rtn5"])), DATA)
