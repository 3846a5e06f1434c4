"""`obliviate.benchmarks.wmdp.run` on the real WMDP files (a few questions per subset) with a tiny
model saved to a temporary directory: evaluation, RMU and GA unlearning on small corpora, the run
directory, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from obliviate.benchmarks import wmdp
from obliviate.benchmarks.spec import method_config
from obliviate.config import RunConfig, load_run_config
from obliviate.data.task import DataError
from obliviate.data.wmdp import SUBJECTS, load_wmdp
from obliviate.metrics.multiple_choice import mc_letter_loglik
from obliviate.models.load import load_model
from tests.benchmarks.runs import WMDP_FORGET as FORGET
from tests.benchmarks.runs import WMDP_LIMIT as LIMIT
from tests.benchmarks.runs import WMDP_RETAIN as RETAIN
from tests.benchmarks.runs import text_corpus as _corpus
from tests.benchmarks.runs import wmdp_tiny_dir as _tiny_dir

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wmdp"  # conftest.SHARED_DATA
pytestmark = pytest.mark.skipif(not (DATA / "wmdp-bio.json").is_file(), reason="../shared/data/wmdp is absent")
def test_accuracies_are_computed_on_the_limited_questions(wmdp_run):
    root, model_dir, results, _ = wmdp_run
    assert list(results["models"]) == ["target", "rmu", "ga"]
    m = results["models"]["target"]["metrics"]
    model, tok = load_model(model_dir)
    hits = []
    for s in ("bio", "chem", "cyber"):
        assert m[f"wmdp_{s}_n"] == LIMIT
        items = load_wmdp(DATA / f"wmdp-{s}.json", LIMIT)
        logits = mc_letter_loglik(model, tok, items, SUBJECTS[s])
        correct = logits.argmax(-1) == np.array([it.answer for it in items])
        hits.append(correct)
        assert m[f"wmdp_{s}_acc"] == pytest.approx(correct.mean())  # the real value, recomputed
        assert 0.0 <= m[f"wmdp_{s}_acc_calibrated"] <= 1.0
        assert m[f"wmdp_{s}_acc_calibrated"] * LIMIT == pytest.approx(round(m[f"wmdp_{s}_acc_calibrated"] * LIMIT))
        per = results["models"]["target"]["per_item"][s]
        assert len(per["pred"]) == len(per["correct"]) == LIMIT and all(0 <= p < 4 for p in per["pred"])
    assert m["wmdp_acc"] == pytest.approx(np.concatenate(hits).mean())
    for name in ("rmu", "ga"):
        for s in ("bio", "chem", "cyber"):
            assert 0.0 <= results["models"][name]["metrics"][f"wmdp_{s}_acc"] <= 1.0


def test_unlearned_models_changed_and_record_their_run(wmdp_run):
    root, model_dir, results, _ = wmdp_run
    base = results["models"]["target"]["metrics"]
    rmu, ga = results["models"]["rmu"], results["models"]["ga"]
    assert rmu["unlearn"]["status"] == "done" and rmu["unlearn"]["steps"] == 2
    # the user's lr/steps win; RMU's published batch size (a benchmark default) is kept
    assert rmu["unlearn"]["lr"] == 1e-2 and rmu["unlearn"]["batch_size"] == 4
    assert rmu["unlearn"]["params"]["c"] == 20.0
    assert ga["unlearn"]["steps"] == 3 and ga["unlearn"]["batch_size"] == 2
    # gradient ascent on the forget corpus raises its NLL
    assert ga["metrics"]["forget_corpus_nll"] > base["forget_corpus_nll"] + 0.01
    assert np.isfinite(ga["metrics"]["retain_corpus_nll"])
    assert len(ga["per_item"]["forget_corpus"]["nll"]) == len(FORGET)
    # RMU trains only mlp.down_proj of layers l-2..l (layer 0 on a 2-layer model)
    before = load_file(str(model_dir / "model.safetensors"))
    after = load_file(str(root / "run" / "models" / "rmu" / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"model.layers.0.mlp.down_proj.weight"}
    assert rmu["metrics"]["forget_corpus_nll"] != base["forget_corpus_nll"]


def test_run_directory(wmdp_run):
    root, _, results, logs = wmdp_run
    out = root / "run"
    saved = json.loads((out / "results.json").read_text())
    assert saved["benchmark"] == "wmdp" and saved["status"] == "done"
    keys = [c[0] for c in saved["columns"]]
    assert keys == ["wmdp_bio_acc", "wmdp_bio_acc_calibrated", "wmdp_chem_acc", "wmdp_chem_acc_calibrated",
                    "wmdp_cyber_acc", "wmdp_cyber_acc_calibrated", "wmdp_acc", "forget_corpus_nll",
                    "retain_corpus_nll"]
    assert saved["sources"]["limit"] == LIMIT and saved["sources"]["subsets"] == ["bio", "chem", "cyber"]
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["benchmark"] == "wmdp" and cfg["methods"] == ["rmu", "ga"] and cfg["audit"]["enabled"] is True
    assert json.loads((out / "provenance.json").read_text())["torch"] == torch.__version__
    rows = [json.loads(line) for line in (out / "per_item.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 3 * LIMIT and {r["model"] for r in rows} == {"target", "rmu", "ga"}
    report = (out / "report.md").read_text()
    assert "bio acc" in report and "| rmu | done | 2 |" in report and "MMLU" in report
    assert any(line.startswith("ga: done, 3 steps") for line in logs)


def test_evaluate_only_with_a_baseline(tmp_path):
    a, b = _tiny_dir(tmp_path / "a", seed=0), _tiny_dir(tmp_path / "b", seed=1)
    logs: list[str] = []
    results = wmdp.run(tmp_path / "run", RunConfig(methods=["rmu"]), DATA, str(a), subsets=("chem",), limit=2,
                       baseline=str(b), log=logs.append)
    assert list(results["models"]) == ["target", "baseline"]
    for name in ("target", "baseline"):
        m = results["models"][name]["metrics"]
        assert m["wmdp_chem_n"] == 2 and "wmdp_bio_acc" not in m and "unlearn" not in results["models"][name]
        assert m["wmdp_chem_acc"] in (0.0, 0.5, 1.0)
    assert results["models"]["baseline"]["path"] == str(b)
    assert [c[0] for c in results["columns"]] == ["wmdp_chem_acc", "wmdp_chem_acc_calibrated"]
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["methods"] == []
    assert any("evaluating only" in line for line in logs)


def test_bad_input_is_a_data_error_naming_it(tmp_path):
    cfg = RunConfig(methods=["rmu"])
    with pytest.raises(DataError, match="unknown WMDP subset 'biology'"):
        wmdp.run(tmp_path / "r1", cfg, DATA, "unused", subsets=("bio", "biology"))
    with pytest.raises(DataError, match="nowhere"):
        wmdp.run(tmp_path / "r2", cfg, tmp_path / "nowhere", "unused")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "wmdp-bio.json").write_text((DATA / "wmdp-bio.json").read_text())
    with pytest.raises(DataError, match="wmdp-chem.json: no such file"):
        wmdp.run(tmp_path / "r3", cfg, tmp_path / "partial", "unused", subsets=("bio", "chem"))
    forget = _corpus(tmp_path / "forget.jsonl", FORGET)
    with pytest.raises(DataError, match="missing.jsonl: no such file"):
        wmdp.run(tmp_path / "r4", cfg, DATA, "unused", forget_corpus=forget, retain_corpus=tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="both a forget corpus and a retain corpus"):
        wmdp.run(tmp_path / "r5", cfg, DATA, "unused", forget_corpus=forget)
    with pytest.raises(DataError, match="no such model directory"):
        wmdp.run(tmp_path / "r6", cfg, DATA, str(tmp_path / "no-model"), limit=1)
    retain = _corpus(tmp_path / "retain.jsonl", RETAIN)
    with pytest.raises(DataError, match="'idk_nll' needs questions"):  # before any model is loaded
        wmdp.run(tmp_path / "r7", RunConfig(methods=["idk_nll"]), DATA, "unused", forget_corpus=forget,
                 retain_corpus=retain)
    with pytest.raises(DataError, match="limit must be at least 1"):
        wmdp.run(tmp_path / "r8", cfg, DATA, "unused", limit=0)


def test_published_rmu_settings_and_user_precedence(tmp_path):
    ucfg = method_config(RunConfig(), "rmu", wmdp.METHOD_DEFAULTS)
    assert (ucfg.lr, ucfg.batch_size, ucfg.max_steps, ucfg.warmup_ratio) == (5e-5, 4, 150, 0.0)
    assert ucfg.params == {}  # RMU's own defaults: layer n_layers // 4 - 1, c 6.5, alpha 1200
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump({"unlearn": {"lr": 1e-4},
                                        "method_overrides": {"rmu": {"params": {"alpha": 100.0}}}}))
    ucfg = method_config(load_run_config(run_file), "rmu", wmdp.METHOD_DEFAULTS)
    assert ucfg.lr == 1e-4 and ucfg.max_steps == 150 and ucfg.params == {"alpha": 100.0}
    assert method_config(RunConfig(), "ga", wmdp.METHOD_DEFAULTS).lr == 1e-5  # no WMDP default for ga
