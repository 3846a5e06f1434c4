"""The demo end to end on a reduced world: train target + oracle, unlearn, evaluate, report."""

from __future__ import annotations

import json

import pytest

from obliviate.config import RunConfig
from obliviate.data.task import DataError
from obliviate.models.load import load_model
from obliviate.pipeline import resolve_controls, run_world
from obliviate.report import load_results
from tests.conftest import REDUCED  # the reduced demo run (`demo_run`) is a session fixture there


def test_demo_forgets_and_keeps(demo_run):
    _, results, _ = demo_run
    m = {name: e["metrics"] for name, e in results["models"].items()}
    assert m["target"]["forget_acc"] >= 0.9
    assert m["oracle"]["forget_acc"] <= 0.4  # never saw the forget people: near chance
    for method in ("gd", "npo_kl"):
        assert m[method]["forget_acc"] <= m["target"]["forget_acc"] - 0.5, method
        assert m[method]["retain_acc"] >= m["target"]["retain_acc"] - 0.15, method
        assert m[method]["forget_quality"] > m["target"]["forget_quality"], method
    assert m["oracle"]["forget_quality"] == pytest.approx(1.0)
    assert m["target"]["privleak"] < -50  # the target exposes its forget set
    for name in m:
        for key in ("forget_acc", "retain_acc", "forget_prob", "forget_rouge", "forget_truth_ratio",
                    "forget_quality", "model_utility", "privleak", "mia_min_k_auc"):
            assert key in m[name], (name, key)


def test_run_directory_round_trips(demo_run):
    out, results, _ = demo_run
    for f in ("results.json", "audit.json", "report.md", "config.yaml", "per_item.jsonl", "provenance.json"):
        assert (out / f).is_file(), f
    loaded = load_results(out)
    assert loaded["status"] == "done"
    assert loaded["models"]["gd"]["metrics"]["forget_acc"] == pytest.approx(
        results["models"]["gd"]["metrics"]["forget_acc"])
    rows = [json.loads(line) for line in (out / "per_item.jsonl").read_text().splitlines()]
    forget_rows = [r for r in rows if r["model"] == "gd" and r["set"] == "forget"]
    assert len(forget_rows) == 16  # 4 forget people x 4 facts
    assert all("generation" in r and "truth_ratio" in r for r in forget_rows)
    report = (out / "report.md").read_text()
    assert "| gd |" in report and "| method | status | steps | lr | seconds | tokens/s | peak memory (MiB) |" in report
    gd_row = next(line for line in report.splitlines() if line.startswith("| gd | done"))
    assert gd_row.count("|") == 8  # 7 cells, as many as the header
    u = loaded["models"]["gd"]["unlearn"]  # recorded (RSS reuse can hide a small model's growth)
    assert u["peak_memory_device"] == "cpu" and 0 <= u["peak_memory_mb"] < 1024
    # the saved unlearned model reloads and is not the target
    model, _ = load_model(out / "models" / "gd")
    target, _ = load_model(out / "models" / "target")
    assert any((a != b).any() for a, b in zip(model.parameters(), target.parameters(), strict=True))


def test_audit_rows_for_every_model_and_attack(demo_run):
    out, results, _ = demo_run
    attacks = REDUCED["audit"]["attacks"]
    audit = json.loads((out / "audit.json").read_text())
    assert audit["attacks"] == attacks
    for name in ("gd", "npo_kl", "target", "oracle"):
        assert set(results["models"][name]["audit"]) == set(attacks), name
        for attack in attacks:
            row = audit["models"][name][attack]
            assert 0.0 <= row["forget_acc"] <= 1.0 and 0.0 <= row["retain_acc"] <= 1.0
    target = results["models"]["target"]["audit"]
    for attack in ("rtn8", "rtn4", "gptq4"):  # quantizing the target does not destroy its knowledge
        assert target[attack]["forget_acc"] >= target[attack]["forget_acc_before"] - 0.1, attack
    for method in ("gd", "npo_kl"):
        assert set(results["models"][method]["audit"]["rtn4"]) >= {"retained", "recovered", "recovered_vs_oracle"}
        assert results["audit"]["verdicts"][method]
    assert results["models"]["gd"]["audit"]["rtt"]["n_probed"] < len(results["models"]["gd"]["per_item"]["forget"]["acc"])
    assert "## Audit" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()  # written next to report.md, with the audit's heatmap
    assert "could not be rendered" not in html and "Not shown: this run was not audited" not in html
    for name in ("gd", "npo_kl", *attacks):
        assert f">{name}<" in html, name


def test_planted_control_is_caught_by_rtn4(demo_run):
    """hide_q4 (audited by default on the tiny models) forgets at fp32, and rtn4 gives it all back."""
    out, results, _ = demo_run
    entry = results["models"]["hide_q4"]
    assert entry["control"] and results["audit"]["controls"] == ["hide_q4"]
    target_acc = results["models"]["target"]["metrics"]["forget_acc"]
    assert entry["metrics"]["forget_acc"] <= target_acc - 0.5
    rtn4 = entry["audit"]["rtn4"]
    assert rtn4["forget_acc"] == results["models"]["target"]["audit"]["rtn4"]["forget_acc"]  # the same 4-bit model
    assert rtn4["recovered_net"] >= 0.9 and rtn4["recovered_net_ci"][0] >= 0.25
    assert entry["audit"]["rtn8"]["recovered_net"] < 0.5  # 8-bit bins are 18x finer: the hiding does not hold
    assert results["audit"]["verdicts"]["hide_q4"].startswith("hides: rtn4 recovers")
    assert results["audit"]["diagnostics"]["hide_q4"]["changed_int4_codes"] == 0.0
    # per item: K under each attack, and report.html names rtn4 under the items it brings back
    per = rtn4["forget_per_item"]
    assert len(per["index"]) == len(per["k"]) == rtn4["n_probed"]
    assert sum(per["k"]) / len(per["k"]) == pytest.approx(rtn4["forget_acc"])
    page = (out / "report.html").read_text()
    assert "back under: rtn4" in page
    report = (out / "report.md").read_text()
    assert "**hide_q4 (control)**: hides: rtn4" in report and "| hide_q4 (control) |" in report


def test_metrics_and_recoveries_carry_intervals(demo_run):
    out, results, _ = demo_run
    gd = results["models"]["gd"]
    for key in ("forget_acc", "retain_acc", "forget_prob", "forget_rouge", "forget_truth_ratio"):
        lo, hi = gd["metrics_ci"][key]
        assert lo <= gd["metrics"][key] <= hi, key
    assert hi - lo > 0  # forget truth ratio varies over the 16 items
    row = gd["audit"]["rtt"]
    assert "recovered_net_ci" in row and "forget_acc_ci" in row
    loaded = load_results(out)
    assert loaded["models"]["gd"]["metrics_ci"]["forget_acc"] == pytest.approx(gd["metrics_ci"]["forget_acc"])
    lo, hi = gd["metrics_ci"]["forget_acc"]
    assert f"{gd['metrics']['forget_acc']:.3f} ({lo:.2f}–{hi:.2f})" in (out / "report.md").read_text()


def test_second_run_reuses_cache(demo_run, tmp_path):
    _, results, _ = demo_run
    logs: list[str] = []
    cfg = RunConfig(**{**REDUCED, "methods": ["gd"], "audit": {"enabled": False}})
    again = run_world(cfg, tmp_path, log=logs.append)
    assert any("using cached target and oracle" in line for line in logs)
    assert again["models"]["target"]["metrics"] == results["models"]["target"]["metrics"]
    # same seed -> same unlearning result
    assert again["models"]["gd"]["metrics"]["forget_acc"] == results["models"]["gd"]["metrics"]["forget_acc"]


def test_controls_default_to_hide_q4_in_the_demo_only(tmp_path):
    assert resolve_controls(RunConfig(), tiny=True) == ["hide_q4"]
    assert resolve_controls(RunConfig(benchmark="tofu"), tiny=True) == []
    assert resolve_controls(RunConfig(), tiny=False) == []
    assert resolve_controls(RunConfig(audit={"enabled": False}), tiny=True) == []
    assert resolve_controls(RunConfig(benchmark="tofu", audit={"controls": ["hide_q4"]}), tiny=False) == ["hide_q4"]
    assert resolve_controls(RunConfig(audit={"controls": []}), tiny=True) == []
    # a method is not a control: one line naming it, before any training
    with pytest.raises(DataError, match="audit.controls: 'gd' is not a planted control; controls: hide_q4"):
        run_world(RunConfig(audit={"controls": ["gd"]}), tmp_path / "run")
    assert not (tmp_path / "run").exists()
