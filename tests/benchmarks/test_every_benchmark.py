"""One test over the benchmark registry: every benchmark's reduced run went through the one loop
(`obliviate.pipeline.run_benchmark`), wrote results.json with metrics for the target, the oracle
where the benchmark has one, and a method, and audited every model with the benchmark's own K:
a quantization attack, noise_int4 and rtt scored (finite `recovered`), an attack that cannot
apply recorded as n/a with its reason. And each benchmark's K is its own metric."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from obliviate.attacks import available
from obliviate.benchmarks.spec import REGISTRY
from obliviate.report.results import load_results

# fixture -> the run directory; whether the benchmark has a retain-only oracle
RUNS = {"world": ("demo_run", lambda r: r[0], True), "tofu": ("tofu_run", lambda r: r[0], True),
        "muse": ("muse_run", lambda r: r[0], True), "semeval": ("semeval_run", lambda r: r[0], True),
        "tdec": ("tdec_run", lambda r: r[0], False), "wmdp": ("wmdp_run", lambda r: r[0] / "run", False),
        "rwku": ("rwku_run", lambda r: r[0] / "run", False)}
# WMDP's and RWKU's tests use untrained tiny models (both benchmarks are meaningful only on real
# models): K may not move under unlearning, and then `recovered` is NaN by definition (SPEC 4:
# nothing was forgotten). TOFU's reduced run keeps one forget author: rtt cannot split it.
NOTHING_LEARNED = {"wmdp", "rwku"}


def _finite(row: dict) -> bool:
    return "unavailable" not in row and math.isfinite(row.get("recovered", float("nan")))


def test_the_registry_is_covered():
    assert set(RUNS) == set(REGISTRY) - {"user"}  # user files: tests/test_cli.py


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_benchmark_runs_the_one_loop_with_its_audit(name, request):
    fixture, where, has_oracle = RUNS[name]
    out = where(request.getfixturevalue(fixture))
    results = load_results(out)
    audit = json.loads((out / "audit.json").read_text())
    assert results["status"] == "done" and results["rebuild"]["benchmark"] == name
    models = results["models"]
    assert list(models)[0] == "target" and ("oracle" in models) == has_oracle
    methods = [n for n, e in models.items() if "unlearn" in e]
    assert methods and all(models[n]["metrics"] for n in models)
    assert any(isinstance(v, float) and math.isfinite(v) for v in models["target"]["metrics"].values())
    # the audit: every model, every K measure, every attack scored or n/a with a reason
    registry = available()
    quant = [a for a in audit["attacks"] if registry[a].family == "quantization"]
    assert quant and {"noise_int4", "rtt"} <= set(audit["attacks"])
    assert set(audit["measures"]) and audit["knowledge"] == next(iter(audit["measures"]))
    for m in audit["measures"].values():
        assert set(m["models"]) == set(models)
        for rows in m["models"].values():
            for a in audit["attacks"]:
                row = rows[a]
                assert (len(row["unavailable"]) > 20 if "unavailable" in row
                        else math.isfinite(row["forget_acc"])), (name, a, row)
    method = methods[0]
    need = [quant[0], "noise_int4"] + (["rtt"] if name != "tofu" else [])
    scored = [k for k, m in audit["measures"].items() if all(_finite(m["models"][method][a]) for a in need)]
    if name not in NOTHING_LEARNED:
        assert scored, (name, {k: m["models"][method] for k, m in audit["measures"].items()})
    if name == "tofu":
        assert "at least 2 subjects" in audit["models"][method]["rtt"]["unavailable"]
    if name not in ("world", "tofu"):  # raw-text or multiple-choice probes: prompt attacks do not apply
        assert "paraphrase" in audit["attacks"]
        assert all("unavailable" in m["models"][method]["paraphrase"] for m in audit["measures"].values())
    # the report shows one audit table per K measure
    report = (out / "report.md").read_text()
    assert report.count("### K = ") == len(audit["measures"])


def _k(audit: dict, measure: str, model: str) -> float:
    return audit["measures"][measure]["baseline"][model]["forget_acc"]


def test_muse_k_is_its_own_knowmem_and_verbmem(muse_run):
    out, results, _ = muse_run
    audit = json.loads((out / "audit.json").read_text())
    assert audit["knowledge"] == "knowmem" and set(audit["measures"]) == {"knowmem", "verbmem"}
    for name, entry in results["models"].items():
        assert _k(audit, "knowmem", name) == pytest.approx(entry["metrics"]["knowmem_f"], abs=1e-12)
        assert _k(audit, "verbmem", name) == pytest.approx(entry["metrics"]["verbmem_f"], abs=1e-12)
    # the tiny model cannot read: nothing to forget on KnowMem, and the verdict says so
    assert audit["measures"]["knowmem"]["verdicts"]["ga"].startswith("nothing to forget")
    assert "4-bit quantization, per method" in (out / "report.md").read_text()


def test_semeval_k_is_its_own_regurgitation_and_knowledge(semeval_run):
    out, results = semeval_run
    audit = json.loads((out / "audit.json").read_text())
    assert set(audit["measures"]) == {"regurgitation", "knowledge"}
    for name, entry in results["models"].items():
        assert _k(audit, "regurgitation", name) == pytest.approx(entry["metrics"]["forget_regurgitation"], abs=1e-12)
        assert _k(audit, "knowledge", name) == pytest.approx(entry["metrics"]["forget_knowledge"], abs=1e-12)


def test_rwku_k_is_its_own_answer_recall_per_level(rwku_run):
    root, _, results, _ = rwku_run
    audit = json.loads((root / "run" / "audit.json").read_text())
    assert audit["knowledge"] == "forget_all"
    for name, entry in results["models"].items():
        per_level = [entry["per_item"][f"forget_level{i}"]["rouge"] for i in (1, 2, 3)]
        for i in (1, 2, 3):
            assert _k(audit, f"forget_level{i}", name) == pytest.approx(entry["metrics"][f"forget_level{i}_rouge"],
                                                                        abs=1e-12)
        assert _k(audit, "forget_all", name) == pytest.approx(float(np.mean(np.concatenate(per_level))), abs=1e-12)
    assert "NaN" in audit["measures"]["forget_all"]["oracle_stand_in"]


def test_wmdp_k_is_its_accuracy_with_chance_for_the_oracle(wmdp_run):
    root, _, results, _ = wmdp_run
    audit = json.loads((root / "run" / "audit.json").read_text())
    for name, entry in results["models"].items():
        assert _k(audit, "wmdp_acc", name) == pytest.approx(entry["metrics"]["wmdp_acc"], abs=1e-12)
    assert "chance K = 0.25" in audit["measures"]["wmdp_acc"]["oracle_stand_in"]
    row = audit["models"]["ga"]["rtn4"]
    k_t = results["models"]["target"]["metrics"]["wmdp_acc"]
    # recovered_vs_oracle with chance as the oracle: (K(A(U)) - 0.25) / (K(T) - 0.25)
    assert row["recovered_vs_oracle_raw"] == pytest.approx((row["forget_acc"] - 0.25) / (k_t - 0.25))
    assert "chance" in (root / "run" / "report.md").read_text()


def test_audit_run_dir_rebuilds_any_benchmark(tdec_run, tmp_path):
    """`obliviate audit RUN_DIR` on a benchmark's run directory: the declaration is rebuilt from
    results.json `rebuild`, the saved models are audited with the benchmark's K."""
    import shutil

    from typer.testing import CliRunner

    from obliviate.cli import app

    out = tmp_path / "copy"
    shutil.copytree(tdec_run[0], out)
    res = CliRunner().invoke(app, ["audit", str(out), "--attacks", "rtn4"])
    assert res.exit_code == 0, res.output
    audit = json.loads((out / "audit.json").read_text())
    assert audit["attacks"] == ["rtn4"] and set(audit["measures"]) == {"ma", "el10"}
    before = json.loads((tdec_run[0] / "audit.json").read_text())
    for name, row in before["baseline"].items():
        assert audit["baseline"][name]["forget_acc"] == pytest.approx(row["forget_acc"])
    assert "### K = extraction likelihood" in (out / "report.md").read_text()
