"""`obliviate.benchmarks.muse.run` on a reduced MUSE-News (the first 9 articles of the real
files): a tiny target memorises them, the oracle never saw them, `ga` unlearns them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from obliviate.benchmarks import muse
from obliviate.data.task import DataError
from tests.benchmarks.runs import MUSE_SMALL as SMALL

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "muse-news"  # conftest.SHARED_DATA
pytestmark = pytest.mark.skipif(not (DATA / "raw" / "forget.json").is_file(), reason=f"{DATA} not present")

def test_the_target_memorises_the_articles_and_ga_forgets_them(muse_run):
    out, results, _ = muse_run
    m = {n: e["metrics"] for n, e in results["models"].items()}
    assert list(m) == ["target", "oracle", "ga"]
    # memorised: the forget windows' NLL is far below the oracle's, and VerbMem is higher
    assert m["target"]["forget_nll"] < m["oracle"]["forget_nll"] - 1.0
    assert m["target"]["verbmem_f"] > m["oracle"]["verbmem_f"]
    assert m["target"]["privleak"] == pytest.approx(-100.0, abs=10) and m["oracle"]["privleak"] == 0.0
    # the retain windows were seen by both
    assert m["target"]["retain_nll"] < m["oracle"]["forget_nll"] and m["oracle"]["retain_nll"] < 4.5
    # gradient ascent drives the forget NLL up and VerbMem down
    assert m["ga"]["forget_nll"] > m["target"]["forget_nll"] + 2.0
    assert m["ga"]["verbmem_f"] < m["target"]["verbmem_f"]
    assert m["ga"]["privleak"] > m["target"]["privleak"] + 5
    # the tiny model cannot read: KnowMem is near 0 for all
    assert all(0.0 <= v["knowmem_r"] < 0.2 for v in m.values())
    u = results["models"]["ga"]["unlearn"]
    assert u["status"] == "done" and u["steps"] > 0 and u["lr"] == 1e-3


def test_the_run_directory(muse_run):
    out, results, logs = muse_run
    saved = json.loads((out / "results.json").read_text())
    assert saved["status"] == "done" and saved["benchmark"] == "muse_news_a9"
    keys = [c[0] for c in saved["columns"]]
    assert keys == ["verbmem_f", "knowmem_f", "knowmem_r", "privleak", "forget_nll", "retain_nll"]
    assert all(k in e["metrics"] for e in saved["models"].values() for k in keys if k != "knowmem_f")
    p = saved["probes"]
    assert p["articles"] == 9 and p["verbmem"] >= 1 and p["knowmem_retain"] == 100 and p["privleak_holdout"] == 100
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["benchmark"] == "muse" and cfg["methods"] == ["ga"] and cfg["method_overrides"]["ga"]["lr"] == 1e-3
    assert (out / "provenance.json").is_file() and "VerbMem forget" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()  # the benchmark's own columns: VerbMem forget vs KnowMem retain
    assert "could not be rendered" not in html and html.count("<svg") >= 1 and ">ga<" in html
    rows = [json.loads(line) for line in (out / "per_item.jsonl").read_text().splitlines()]
    assert {r["set"] for r in rows} >= {"verbmem", "knowmem_retain"} and {r["model"] for r in rows} == set(
        results["models"])
    assert any("training the tiny MUSE target" in line for line in logs)


def test_the_models_are_cached(muse_run, tmp_path):
    _, results, _ = muse_run
    logs: list[str] = []
    again = muse.run(tmp_path / "again", SMALL.model_copy(update={"methods": []}), DATA, articles=9,
                     log=logs.append)
    assert any(line.startswith("using cached MUSE target") for line in logs)
    assert again["models"]["target"]["metrics"] == pytest.approx(results["models"]["target"]["metrics"], nan_ok=True)


def test_bad_data_dir_and_refusal_methods_are_data_errors(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        muse.run(tmp_path / "r", SMALL, tmp_path / "nope", articles=2)
    with pytest.raises(DataError, match="idk_dpo"):
        muse.run(tmp_path / "r2", SMALL.model_copy(update={"methods": ["idk_dpo"]}), DATA, articles=2)


def test_no_oracle_privleak_is_not_measured_with_the_reason():
    """A benchmark run without an oracle (e.g. --model alone) has no reference AUC: privleak is
    NaN, and results.json / the table say why instead of showing "-"."""
    from obliviate.evaluate import NO_ORACLE
    from obliviate.pipeline import not_measured
    from obliviate.report.tables import markdown_table

    metrics = {"verbmem_f": 0.3, "privleak": float("nan")}
    assert not_measured(metrics, has_oracle=True) == {}
    entry = {"metrics": metrics, **not_measured(metrics, has_oracle=False)}
    assert entry["not_measured"] == {"privleak": NO_ORACLE}
    table = markdown_table({"models": {"target": entry},
                            "columns": [["verbmem_f", "VerbMem", "↓"], ["privleak", "PrivLeak", "→0"]]})
    assert "| target | 0.300 | n/a |" in table and f"n/a: PrivLeak of target: {NO_ORACLE}" in table
