"""Settings validated before anything is written, and runs that report what happened
(issue 12 B; the diverged status of A11 at the command line)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from obliviate.cli import app
from obliviate.models.load import save_model

runner = CliRunner()


def _write_jsonl(path, items):
    path.write_text("".join(json.dumps({"question": it.question, "answer": it.answer}) + "\n" for it in items))
    return path


@pytest.fixture
def trained_files(tmp_path, small_world, trained_model, tiny_tokenizer):
    model_dir = save_model(trained_model, tiny_tokenizer, tmp_path / "model")
    forget = _write_jsonl(tmp_path / "forget.jsonl", small_world.forget)
    retain = _write_jsonl(tmp_path / "retain.jsonl", small_world.retain)
    return {"model": model_dir, "forget": forget, "retain": retain, "tmp": tmp_path}


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
