"""One failing attack does not stop the audit: it is recorded as `error: ...`, and `--strict` fails at the end."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import obliviate.attacks as attacks_registry
from obliviate.attacks import register
from obliviate.audit import Probe, attack_errors, audit_models, run_attacks
from obliviate.cli import app
from obliviate.evaluate import EvalConfig
from obliviate.models.load import save_model
from obliviate.report.tables import audit_markdown

BOOM = "_test_boom"


@pytest.fixture
def boom_attack():
    def boom(model, ctx):
        raise RuntimeError("kernel exploded\nsecond line of a long trace")

    register(BOOM, "always raises (test-only)", family="noise")(boom)
    yield BOOM
    attacks_registry._REGISTRY.pop(BOOM, None)


def test_error_is_recorded_and_the_other_attacks_run(boom_attack, tiny_model, tiny_tokenizer, small_world):
    out = run_attacks(tiny_model, tiny_tokenizer, small_world, [boom_attack, "rtn8"], EvalConfig(batch_size=16))
    assert out[boom_attack] == "error: RuntimeError: kernel exploded"
    assert isinstance(out["rtn8"], Probe) and len(out["rtn8"].forget_correct) == len(small_world.forget_eval)


def test_error_reaches_the_table_and_the_error_list(boom_attack, tiny_model, tiny_tokenizer, small_world):
    audit = audit_models({"target": (tiny_model, tiny_tokenizer, None)}, small_world, [boom_attack, "rtn8"],
                         EvalConfig(batch_size=16), log=lambda m: None)
    assert audit["models"]["target"][boom_attack] == {"unavailable": "error: RuntimeError: kernel exploded"}
    assert attack_errors(audit["models"]) == [f"target/{boom_attack}: error: RuntimeError: kernel exploded"]
    table = audit_markdown(audit)
    assert f"| {boom_attack} | error |" in table and "| rtn8 | " in table and "| rtn8 | error" not in table
    assert "attack failed: target/_test_boom" in table


def test_strict_exits_nonzero_after_writing_the_audit(boom_attack, tmp_path, tiny_model, tiny_tokenizer, small_world):
    model = save_model(tiny_model, tiny_tokenizer, tmp_path / "model")
    files = {}
    for name, items in (("forget", small_world.forget), ("retain", small_world.retain)):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps({"question": it.question, "answer": it.answer}) + "\n"
                                       for it in items))
    runner = CliRunner()

    def audit(out, *extra):
        return runner.invoke(app, ["audit", "--model", str(model), "--target", str(model), "--forget",
                                   str(files["forget"]), "--retain", str(files["retain"]), "--out", str(tmp_path / out),
                                   "--attacks", f"{boom_attack},rtn8", *extra])

    relaxed = audit("relaxed")
    assert relaxed.exit_code == 0, relaxed.output
    strict = audit("strict", "--strict")
    assert strict.exit_code == 1
    assert "2 attack(s) failed" in strict.output and "kernel exploded" in strict.output
    written = json.loads((tmp_path / "strict" / "audit.json").read_text())
    assert "forget_acc" in written["models"]["unlearned"]["rtn8"]  # the other attack's result was kept
