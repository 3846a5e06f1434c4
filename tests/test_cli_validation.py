"""Settings validated before anything is written, and runs that report what happened
(issue 12 B; the diverged status of A11 at the command line)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from obliviate.cli import app
from tests.files import write_jsonl

runner = CliRunner()


def _unlearn(f, *extra, out=None):
    return runner.invoke(app, ["unlearn", "--model", str(f["model"]), "--forget", str(f["forget"]),
                               "--retain", str(f["retain"]), "--out", str(out or f["tmp"] / "run"), *extra])


def test_unlearn_that_diverges_exits_nonzero_keeps_good_weights_and_the_verdict_says_so(trained_files):
    res = _unlearn(trained_files, "--method", "gd", "--lr", "1e6", "--max-steps", "3", "--batch-size", "4")
    assert res.exit_code == 1, res.output
    assert "diverged" in res.output
    run = trained_files["tmp"] / "run"
    u = json.loads((run / "results.json").read_text())["models"]["gd"]["unlearn"]
    assert u["status"] == "diverged" and "retain loss" in u["message"]
    saved, target = load_file(run / "models" / "gd" / "model.safetensors"), \
        load_file(trained_files["model"] / "model.safetensors")
    assert saved.keys() == target.keys() and all(torch.equal(saved[k], target[k]) for k in saved)
    res = runner.invoke(app, ["audit", str(run), "--attacks", "rtn8"])
    assert res.exit_code == 0, res.output
    verdict = json.loads((run / "audit.json").read_text())["verdicts"]["gd"]
    assert verdict.startswith("diverged: retain loss"), verdict
    assert "- **gd**: diverged" in (run / "report.md").read_text()


# --- B: every setting validated before anything is written or deleted ------------------------


def _prior_run(path):
    """A finished run the failing command must leave exactly as it was."""
    (path / "models" / "gd").mkdir(parents=True)
    (path / "results.json").write_text('{"keep": true}')
    (path / "models" / "gd" / "model.safetensors").write_bytes(b"weights")
    return path


def _snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _assert_one_line_exit_2(res, *words):
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit), res.exception  # a handled error, not a crash
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    for w in words:
        assert w in lines[0], (w, lines[0])


BAD_UNLEARN_OPTIONS = {
    "param-type": (["--method", "npo", "--param", "beta=abc"], ["beta", "'abc'", "float"]),
    "lr-zero": (["--lr", "0"], ["--lr", "greater than 0"]),
    "lr-negative": (["--lr", "-1e-5"], ["--lr"]),
    "epochs-zero": (["--epochs", "0"], ["--epochs"]),
    "max-steps-zero": (["--max-steps", "0"], ["--max-steps"]),
    "batch-size-zero": (["--batch-size", "0"], ["--batch-size"]),
    "grad-accum-zero": (["--grad-accum", "0"], ["--grad-accum"]),
    "mixed-precision": (["--mixed-precision", "fp8"], ["--mixed-precision", "'fp8'"]),
}


@pytest.mark.parametrize("case", list(BAD_UNLEARN_OPTIONS))
def test_bad_unlearn_option_is_one_line_and_leaves_the_prior_run(user_files, case):
    args, words = BAD_UNLEARN_OPTIONS[case]
    prior = _prior_run(user_files["tmp"] / "run")
    before = _snapshot(prior)
    res = _unlearn(user_files, *args, "--force", out=prior)
    _assert_one_line_exit_2(res, *words)
    assert _snapshot(prior) == before


def _corrupt_model(f):
    bad = f["tmp"] / "corrupt"
    shutil.copytree(f["model"], bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])  # a truncated download
    return str(bad), ["model.safetensors", "corrupt"]


def _missing_model(f):
    return str(f["tmp"] / "models" / "no-such-model"), ["no such model directory"]


def _missing_model_relative(f):
    (f["tmp"] / "runs").mkdir()
    return "runs/no-such-model", ["no such model directory"]  # one "/" but its parent exists here


BAD_MODELS = {"corrupt-safetensors": _corrupt_model, "missing-path": _missing_model,
              "missing-relative-path": _missing_model_relative}


@pytest.mark.parametrize("case", list(BAD_MODELS))
@pytest.mark.parametrize("role", ["--model", "--oracle"])
def test_bad_model_is_one_line_and_leaves_the_prior_run(user_files, monkeypatch, case, role):
    monkeypatch.chdir(user_files["tmp"])
    name, words = BAD_MODELS[case](user_files)
    prior = _prior_run(user_files["tmp"] / "run")
    before = _snapshot(prior)
    args = ["unlearn", "--model", str(user_files["model"]), "--forget", str(user_files["forget"]),
            "--retain", str(user_files["retain"]), "--out", str(prior), "--force", role, name]
    _assert_one_line_exit_2(runner.invoke(app, args), *words)
    assert _snapshot(prior) == before


def test_bad_model_for_eval_is_one_line_and_leaves_the_prior_run(user_files):
    from obliviate.data.tofu import packaged_tofu_dir

    name, words = _corrupt_model(user_files)
    prior = _prior_run(user_files["tmp"] / "run")
    before = _snapshot(prior)
    res = runner.invoke(app, ["eval", "--benchmark", "tofu", "--data", str(packaged_tofu_dir()), "--authors", "2",
                              "--model", name, "--out", str(prior), "--force"])
    _assert_one_line_exit_2(res, *words)
    assert _snapshot(prior) == before


def test_out_that_is_a_file_or_cannot_be_written(user_files):
    a_file = user_files["tmp"] / "notes.txt"
    a_file.write_text("mine")
    _assert_one_line_exit_2(_unlearn(user_files, "--force", out=a_file), "is a file")
    assert a_file.read_text() == "mine"
    _assert_one_line_exit_2(_unlearn(user_files, out=a_file / "run"), "cannot write there")
    unwritable = Path("/proc") / f"obliviate-test-{os.getpid()}" / "run"  # not even root can create it
    _assert_one_line_exit_2(_unlearn(user_files, out=unwritable), str(unwritable))
    assert not unwritable.parent.exists()


BAD_RUN_FILES = {
    "unlearn-lr": ("unlearn: {lr: 0}\n", ["unlearn.lr", "greater than 0"]),
    "unlearn-epochs": ("unlearn: {epochs: 0}\n", ["unlearn.epochs"]),
    "mixed-precision": ("unlearn: {mixed_precision: fp8}\n", ["unlearn.mixed_precision"]),
    "override-batch": ("methods: [ga]\nmethod_overrides: {ga: {batch_size: 0}}\n", ["method_overrides.ga", "batch_size"]),
    "override-param-type": ("methods: [npo]\nmethod_overrides: {npo: {params: {beta: abc}}}\n", ["beta", "'abc'"]),
}


@pytest.mark.parametrize("command", [["demo"], ["bench", "tofu"]])
@pytest.mark.parametrize("case", list(BAD_RUN_FILES))
def test_bad_run_file_value_is_one_line_and_leaves_the_prior_run(tmp_path, command, case):
    text, words = BAD_RUN_FILES[case]
    (tmp_path / "run.yaml").write_text(text)
    prior = _prior_run(tmp_path / "run")
    before = _snapshot(prior)
    res = runner.invoke(app, [*command, "--config", str(tmp_path / "run.yaml"), "--out", str(prior), "--force"])
    _assert_one_line_exit_2(res, "run.yaml", *words)
    assert _snapshot(prior) == before


def test_bad_run_file_value_for_unlearn(user_files):
    (user_files["tmp"] / "run.yaml").write_text("unlearn: {grad_accum: 0}\n")
    prior = _prior_run(user_files["tmp"] / "run")
    before = _snapshot(prior)
    res = _unlearn(user_files, "--config", str(user_files["tmp"] / "run.yaml"), "--force", out=prior)
    _assert_one_line_exit_2(res, "run.yaml", "unlearn.grad_accum")
    assert _snapshot(prior) == before


# --- run files: values in the file win over CLI defaults, typed options win over the file -------


def _capture_demo(monkeypatch):
    import obliviate.pipeline

    seen = {}

    def fake_run_world(cfg, out, log=print, command="", resume=False):
        seen["cfg"] = cfg
        return {"benchmark": "world", "seed": cfg.seed, "models": {}}

    monkeypatch.setattr(obliviate.pipeline, "run_world", fake_run_world)
    return seen


def test_demo_run_file_wins_over_cli_defaults(tmp_path, monkeypatch):
    seen = _capture_demo(monkeypatch)
    (tmp_path / "run.yaml").write_text("seed: 1\naudit: {enabled: false}\n")
    res = runner.invoke(app, ["demo", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert seen["cfg"].seed == 1 and seen["cfg"].audit.enabled is False  # were 0 and True
    res = runner.invoke(app, ["demo", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "b"),
                              "--seed", "0", "--audit"])
    assert res.exit_code == 0, res.output
    assert seen["cfg"].seed == 0 and seen["cfg"].audit.enabled is True  # typed: the options win
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0 and seen["cfg"].seed == 0 and seen["cfg"].audit.enabled is True


def test_bench_run_file_wins_over_cli_defaults(tmp_path, monkeypatch):
    from obliviate.benchmarks import tofu

    seen = {}
    monkeypatch.setattr(tofu, "run", lambda out, cfg, *a, **k: seen.setdefault("cfg", cfg) and
                        {"benchmark": "tofu", "models": {}})
    (tmp_path / "run.yaml").write_text("seed: 3\naudit: {enabled: false}\n")
    res = runner.invoke(app, ["bench", "tofu", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert seen["cfg"].seed == 3 and seen["cfg"].audit.enabled is False


def _capture_unlearn(monkeypatch):
    import obliviate.pipeline

    seen = {}

    def fake_run_user(model, forget, retain, holdout, cfg, out, oracle=None, **kwargs):
        seen.update(ucfg=cfg.unlearn, ecfg=cfg.eval)
        return {"benchmark": "custom", "models": {cfg.unlearn.method: {"metrics": {}, "unlearn": {"status": "done"}}}}

    monkeypatch.setattr(obliviate.pipeline, "run_user", fake_run_user)
    return seen


def test_unlearn_takes_a_run_file(user_files, monkeypatch):
    seen = _capture_unlearn(monkeypatch)
    run_file = user_files["tmp"] / "run.yaml"
    run_file.write_text("seed: 4\nmethods: [npo]\nunlearn: {lr: 2.0e-4, epochs: 2, warmup_ratio: 0.0}\n"
                        "method_overrides: {npo: {params: {beta: 0.5}}}\neval: {batch_size: 7}\n")
    res = _unlearn(user_files, "--config", str(run_file))
    assert res.exit_code == 0, res.output
    u = seen["ucfg"]
    assert (u.method, u.seed, u.lr, u.epochs, u.warmup_ratio, u.params) == ("npo", 4, 2e-4, 2, 0.0, {"beta": 0.5})
    assert u.batch_size == 8 and seen["ecfg"].batch_size == 7  # unset in the file: the CLI default
    res = _unlearn(user_files, "--config", str(run_file), "--lr", "1e-3", "--method", "npo_kl", "--param", "beta=0.2",
                   "--seed", "0", out=user_files["tmp"] / "run2")
    assert res.exit_code == 0, res.output
    u = seen["ucfg"]
    assert (u.method, u.seed, u.lr, u.epochs, u.params) == ("npo_kl", 0, 1e-3, 2, {"beta": 0.2})


# --- a question longer than the context -------------------------------------------------------


def test_a_question_longer_than_the_context_is_cut_from_the_left(tiny_tokenizer):
    from obliviate.data.collate import encode, encode_prompt

    question = "Tell me everything. " * 2000 + "Where was Ada born?"
    enc = encode(tiny_tokenizer, question, "In Tarnow.", max_length=64)
    assert len(enc.prompt_ids) + len(enc.answer_ids) <= 64
    assert enc.prompt_ids[0] == tiny_tokenizer.bos_token_id  # BOS kept
    full = encode_prompt(tiny_tokenizer, question)
    assert enc.prompt_ids[1:] == full[len(full) - len(enc.prompt_ids) + 1:]  # the question's end and "Answer:"
    assert tiny_tokenizer.decode(enc.prompt_ids, skip_special_tokens=True).endswith("Where was Ada born?\nAnswer:")
    assert tiny_tokenizer.decode(enc.answer_ids, skip_special_tokens=True).strip() == "In Tarnow."


def test_unlearn_with_a_huge_question_runs(user_files, small_world):
    items = [{"question": "Tell me everything. " * 20000 + it.question, "answer": it.answer}
             for it in small_world.forget[:2]]
    user_files["forget"].write_text("".join(json.dumps(r) + "\n" for r in items))
    res = _unlearn(user_files, "--method", "gd", "--max-steps", "1", "--batch-size", "2", "--lr", "1e-4")
    assert res.exit_code == 0, res.output
    assert json.loads((user_files["tmp"] / "run" / "results.json").read_text())["status"] == "done"


def test_overlap_names_both_files_and_lines_and_leaves_the_prior_run(user_files, small_world):
    write_jsonl(user_files["retain"], small_world.retain[:5] + [small_world.forget[2]])
    prior = _prior_run(user_files["tmp"] / "run")
    before = _snapshot(prior)
    res = _unlearn(user_files, "--force", out=prior)
    _assert_one_line_exit_2(res, f"{user_files['forget']}:3:", f"({user_files['retain']}:6)",
                            "also in the retain set")
    assert _snapshot(prior) == before
