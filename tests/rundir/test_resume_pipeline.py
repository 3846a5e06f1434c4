"""`--resume` of a multi-method run: finished models are kept, not redone; the rest is completed."""

from __future__ import annotations

import json

import pytest

import obliviate.pipeline as P
from obliviate.config import RunConfig
from obliviate.data.task import DataError

REDUCED = {
    "methods": ["gd", "npo_gd"],
    "world": {"n_people": 12, "n_attributes": 4, "forget_fraction": 0.25, "n_holdout_people": 2,
              "n_countries": 4, "retain_eval_size": 24},
    "model": {"vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2},
    "train": {"max_epochs": 60, "target_acc": 0.95, "check_every": 5},
    "unlearn": {"max_steps": 6, "epochs": 1},
    "audit": {"enabled": False},
}


def test_resume_keeps_finished_models_and_completes_the_rest(tmp_path, monkeypatch):
    cfg = RunConfig(**REDUCED)
    out = tmp_path / "run"
    out.mkdir()
    calls: list[str] = []
    real = P.unlearn_measured

    def stop_at_second(model, tokenizer, task, ucfg, **kw):
        calls.append(ucfg.method)
        if ucfg.method == "npo_gd":
            raise KeyboardInterrupt
        return real(model, tokenizer, task, ucfg, **kw)

    monkeypatch.setattr(P, "unlearn_measured", stop_at_second)
    with pytest.raises(KeyboardInterrupt):
        P.run_world(cfg, out, log=lambda m: None)
    first = json.loads((out / "results.json").read_text())
    assert first["status"] == "interrupted" and "gd" in first["models"] and "npo_gd" not in first["models"]
    gd_rows = [json.loads(x) for x in (out / "per_item.jsonl").read_text().splitlines()]
    assert any(r["model"] == "gd" for r in gd_rows)  # rows are written after every model

    calls.clear()
    monkeypatch.setattr(P, "unlearn_measured", lambda *a, **kw: (calls.append(a[3].method), real(*a, **kw))[1])
    results = P.run_world(cfg, out, log=lambda m: None, resume=True)
    assert calls == ["npo_gd"]  # gd was not redone
    assert results["status"] == "done"
    assert results["models"]["gd"]["metrics"] == first["models"]["gd"]["metrics"]
    rows = [json.loads(x) for x in (out / "per_item.jsonl").read_text().splitlines()]
    assert {r["model"] for r in rows} == {"target", "oracle", "gd", "npo_gd"}
    assert len([r for r in rows if r["model"] == "gd"]) == len([r for r in gd_rows if r["model"] == "gd"])


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"status": "interrupted", "config": {"seed": 0}, "models": {}}))
    cfg = RunConfig(**REDUCED)
    from obliviate.rundir import resume_state

    with pytest.raises(DataError, match="cannot resume with different settings"):
        resume_state(out, cfg.model_dump(mode="json"))
