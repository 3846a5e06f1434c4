"""The command line: clear one-line errors on bad input, `list`, and `unlearn` end to end."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from typer.testing import CliRunner

from obliviate.cli import app
from obliviate.methods import available, controls
from tests.files import write_jsonl

runner = CliRunner()


def _unlearn(f, *extra):
    return runner.invoke(app, ["unlearn", "--model", str(f["model"]), "--forget", str(f["forget"]),
                               "--retain", str(f["retain"]), "--out", str(f["tmp"] / "run"), *extra])


def test_list_methods_prints_every_registered_method():
    res = runner.invoke(app, ["list", "methods"])
    assert res.exit_code == 0
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    names = [line.split()[0] for line in lines]
    assert names == list(available()) + list(controls())
    # planted positive controls (hide_q4) come last and say what they are
    assert "hide_q4" in controls() and all("control" in line for line in lines[len(available()):])


def test_list_metrics_and_benchmarks():
    assert "forget_quality" in runner.invoke(app, ["list", "metrics"]).stdout
    assert "tofu" in runner.invoke(app, ["list", "benchmarks"]).stdout


def test_missing_file_is_one_line_error(user_files):
    user_files["forget"].unlink()
    res = _unlearn(user_files)
    assert res.exit_code == 2
    assert "forget.jsonl" in res.output and "no such file" in res.output
    assert "Traceback" not in res.output


def test_malformed_line_names_file_and_line(user_files):
    lines = user_files["forget"].read_text().splitlines()
    lines[1] = '{"question": "broken", "answer": '
    user_files["forget"].write_text("\n".join(lines) + "\n")
    res = _unlearn(user_files)
    assert res.exit_code == 2
    assert "forget.jsonl:2" in res.output


def test_missing_field_names_field(user_files):
    user_files["forget"].write_text('{"question": "q"}\n')
    res = _unlearn(user_files)
    assert res.exit_code == 2
    assert "forget.jsonl:1" in res.output and '"answer"' in res.output


def test_empty_forget_set(user_files):
    user_files["forget"].write_text("")
    res = _unlearn(user_files)
    assert res.exit_code == 2 and "forget.jsonl" in res.output


def test_forget_retain_overlap(user_files, small_world):
    write_jsonl(user_files["retain"], small_world.retain + small_world.forget[:1])
    res = _unlearn(user_files)
    assert res.exit_code == 2
    assert "also in the retain set" in res.output


def test_unknown_method_lists_available(user_files):
    res = _unlearn(user_files, "--method", "forget_everything")
    assert res.exit_code == 2
    assert "forget_everything" in res.output and "npo_kl" in res.output


def test_unknown_method_param(user_files):
    res = _unlearn(user_files, "--method", "npo", "--param", "betta=0.2")
    assert res.exit_code == 2 and "betta" in res.output and "beta" in res.output


def test_not_a_causal_lm(user_files):
    from transformers import BertConfig

    bert = user_files["tmp"] / "bert"
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
               architectures=["BertForSequenceClassification"]).save_pretrained(bert)
    res = runner.invoke(app, ["unlearn", "--model", str(bert), "--forget", str(user_files["forget"]),
                              "--retain", str(user_files["retain"]), "--out", str(user_files["tmp"] / "run")])
    assert res.exit_code == 2
    assert "not a causal language model" in res.output


def test_existing_run_dir_is_not_overwritten(user_files):
    run = user_files["tmp"] / "run"
    run.mkdir()
    (run / "results.json").write_text('{"keep": true}')
    res = _unlearn(user_files)
    assert res.exit_code == 2 and "--force" in res.output
    assert json.loads((run / "results.json").read_text()) == {"keep": True}


def test_bad_run_file_names_the_key(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("seed: 1\nworld:\n  n_peeple: 3\n")
    res = runner.invoke(app, ["demo", "--config", str(cfg), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "world.n_peeple" in res.output and "n_people" in res.output


def test_unlearn_end_to_end(user_files, small_world):
    res = _unlearn(user_files, "--method", "gd", "--max-steps", "3", "--lr", "1e-3", "--batch-size", "4")
    assert res.exit_code == 0, res.output
    run = user_files["tmp"] / "run"
    results = json.loads((run / "results.json").read_text())
    assert set(results["models"]) == {"target", "gd"}
    assert results["models"]["gd"]["unlearn"]["steps"] == 3
    assert (run / "models" / "gd" / "model.safetensors").is_file()
    assert (run / "report.md").is_file() and (run / "config.yaml").is_file()
    html = (run / "report.html").read_text()  # unlearn runs get the page too: trade-off and loss curve, no audit
    assert "<b>gd</b>: not audited." in html and html.count("<svg") == 2 and "could not be rendered" not in html
    # eval RUN_DIR prints the table again
    again = runner.invoke(app, ["eval", str(run)])
    assert again.exit_code == 0 and "gd" in again.stdout
    assert asdict(small_world.forget[0])["question"] in (run / "per_item.jsonl").read_text()


def test_audit_run_dir_and_external_models(user_files):
    res = _unlearn(user_files, "--method", "gd", "--max-steps", "2", "--lr", "1e-3", "--batch-size", "4")
    assert res.exit_code == 0, res.output
    run = user_files["tmp"] / "run"
    res = runner.invoke(app, ["audit", str(run), "--attacks", "rtn4,paraphrase"])
    assert res.exit_code == 0, res.output
    audit = json.loads((run / "audit.json").read_text())
    assert set(audit["models"]) == {"target", "gd"} and audit["attacks"] == ["rtn4", "paraphrase"]
    assert "gd" in audit["verdicts"]
    results = json.loads((run / "results.json").read_text())
    assert set(results["models"]["gd"]["audit"]) == {"rtn4", "paraphrase"}
    # models made elsewhere: the unlearned directory against the original
    out = user_files["tmp"] / "ext"
    res = runner.invoke(app, ["audit", "--model", str(run / "models" / "gd"), "--target", str(user_files["model"]),
                              "--forget", str(user_files["forget"]), "--retain", str(user_files["retain"]),
                              "--out", str(out), "--attacks", "rtn8"])
    assert res.exit_code == 0, res.output
    ext = json.loads((out / "audit.json").read_text())
    assert set(ext["models"]) == {"unlearned", "target"}
    assert ext["models"]["target"]["rtn8"]["forget_acc_before"] == pytest.approx(
        audit["models"]["target"]["rtn4"]["forget_acc_before"])


def test_audit_unknown_attack(user_files):
    res = _unlearn(user_files, "--method", "gd", "--max-steps", "1")
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["audit", str(user_files["tmp"] / "run"), "--attacks", "rtn5"])
    assert res.exit_code == 2 and "rtn5" in res.output and "rtn4" in res.output


def test_list_attacks():
    res = runner.invoke(app, ["list", "attacks"])
    assert res.exit_code == 0
    for name in ("rtn4", "bnb_nf4", "gptq4", "awq4", "rtt", "in_context", "paraphrase", "noise_int4"):
        assert name in res.stdout
