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


def test_an_interrupted_audit_resumes_from_the_attacks_it_finished(tmp_path, monkeypatch):
    import obliviate.audit as A

    cfg = RunConfig(**{**REDUCED, "methods": ["gd"], "audit": {"attacks": ["rtn8", "rtn4"], "controls": []}})
    out = tmp_path / "run"
    out.mkdir()
    real = A._probe_all
    probed: list[str] = []

    def probe_all(knowledge, tok, attacked, model=None):
        if attacked is not None:  # an attacked model (the unattacked baseline passes None)
            probed.append("x")
            if len(probed) == 4:  # target rtn8, target rtn4, oracle rtn8, then stop at oracle rtn4
                raise KeyboardInterrupt
        return real(knowledge, tok, attacked, model)

    monkeypatch.setattr(A, "_probe_all", probe_all)
    with pytest.raises(KeyboardInterrupt):
        P.run_world(cfg, out, log=lambda m: None)
    assert json.loads((out / "results.json").read_text())["status"] == "interrupted"
    partial = out / P.AUDIT_PARTIAL
    kept = {p.stem: json.loads(p.read_text()) for p in partial.glob("*.json")}
    assert {n: sorted(d["attacks"]) for n, d in kept.items()} == {"target": ["rtn4", "rtn8"], "oracle": ["rtn8"]}

    probed.clear()
    logs: list[str] = []
    results = P.run_world(cfg, out, log=logs.append, resume=True)
    # left to do: oracle rtn4, gd rtn8, gd rtn4 (each probe call is one attacked model)
    assert len(probed) == 3
    assert any("oracle: 1 of 2 attacks kept" in m for m in logs)
    assert results["status"] == "done" and not partial.exists()
    audit = json.loads((out / "audit.json").read_text())
    for name, attack in [("target", "rtn8"), ("target", "rtn4"), ("oracle", "rtn8")]:
        before = kept[name]["attacks"][attack]["measures"]
        k = audit["knowledge"]
        mean = sum(before[k]["forget_correct"]) / len(before[k]["forget_correct"])
        assert audit["models"][name][attack]["forget_acc"] == pytest.approx(mean)


def test_a_partial_audit_of_other_weights_is_not_reused(tmp_path, trained_model, tiny_tokenizer, small_world):
    from obliviate.audit import _partial_key, qa_knowledge
    from obliviate.evaluate import EvalConfig
    from obliviate.models.load import save_model

    d = save_model(trained_model, tiny_tokenizer, tmp_path / "m")
    task = small_world
    knowledge = {"accuracy": qa_knowledge(task, EvalConfig())}
    key = _partial_key(d, task, knowledge, 0, {}, None, EvalConfig())
    assert key == _partial_key(d, task, knowledge, 0, {}, None, EvalConfig())
    assert key != _partial_key(d, task, knowledge, 1, {}, None, EvalConfig())  # another seed
    assert key != _partial_key(d, task, knowledge, 0, {"rtt": {"lr": [1e-4]}}, None, EvalConfig())
    trained_model.lm_head.weight.data.add_(1.0)
    save_model(trained_model, tiny_tokenizer, d)
    assert key != _partial_key(d, task, knowledge, 0, {}, None, EvalConfig())  # rewritten weights
    assert _partial_key(None, task, knowledge, 0, {}, None, EvalConfig()) is None
