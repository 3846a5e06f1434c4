"""Run directories that are never lost or mixed: lock, safe --force, statuses, signals, kill -9 + --resume."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from obliviate.cli import app
from obliviate.rundir import lock_holder, open_run_dir

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def files(trained_files):
    return trained_files


def _args(f, out, *extra):
    return ["unlearn", "--model", str(f["model"]), "--forget", str(f["forget"]), "--retain", str(f["retain"]),
            "--out", str(out), "--method", "gd", "--lr", "1e-4", "--batch-size", "2", *extra]


def _old_run(path: Path) -> Path:
    path.mkdir()
    (path / "results.json").write_text('{"status": "done", "models": {"target": {"metrics": {}}}}')
    (path / "marker.txt").write_text("the user's earlier run")
    return path


def test_a_second_process_on_the_same_out_is_refused_naming_the_holder(files):
    out = files["tmp"] / "run"
    with open_run_dir(out):
        assert lock_holder(out) == os.getpid()
        res = runner.invoke(app, _args(files, out, "--max-steps", "2"))
        assert res.exit_code == 2
        assert f"PID {os.getpid()}" in res.output and "Traceback" not in res.output
        forced = runner.invoke(app, _args(files, out, "--max-steps", "2", "--force"))
        assert forced.exit_code == 2 and f"PID {os.getpid()}" in forced.output
        assert out.is_dir() and (out / ".obliviate.lock").is_file()  # --force deleted nothing
    assert lock_holder(out) is None


def test_force_restores_the_old_run_when_the_new_one_fails_before_any_result(files):
    out = _old_run(files["tmp"] / "run")
    bad = dict(files, model=files["tmp"] / "no-such-model")
    res = runner.invoke(app, _args(bad, out, "--max-steps", "2", "--force"))
    assert res.exit_code == 2
    assert (out / "marker.txt").read_text() == "the user's earlier run"
    assert not list(files["tmp"].glob(".run.replaced-*"))


def test_force_replaces_the_old_run_once_the_new_one_is_done(files):
    out = _old_run(files["tmp"] / "run")
    res = runner.invoke(app, _args(files, out, "--max-steps", "2", "--force"))
    assert res.exit_code == 0, res.output
    assert not (out / "marker.txt").exists()
    assert json.loads((out / "results.json").read_text())["status"] == "done"
    assert not list(files["tmp"].glob(".run.replaced-*")) and not (out / ".obliviate.lock").exists()


def test_an_existing_run_without_force_or_resume_is_refused(files):
    out = _old_run(files["tmp"] / "run")
    res = runner.invoke(app, _args(files, out, "--max-steps", "2"))
    assert res.exit_code == 2 and "--resume" in res.output and "--force" in res.output


def test_saved_files_are_readable_by_others(files):
    out = files["tmp"] / "run"
    old = os.umask(0o022)
    try:
        assert runner.invoke(app, _args(files, out, "--max-steps", "2")).exit_code == 0
    finally:
        os.umask(old)
    weights = out / "models" / "gd" / "model.safetensors"
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "results.json").stat().st_mode) == 0o644


@pytest.mark.parametrize("status", ["running", "interrupted", "crashed"])
def test_eval_and_audit_refuse_an_incomplete_run(files, status):
    out = files["tmp"] / "run"
    assert runner.invoke(app, _args(files, out, "--max-steps", "2")).exit_code == 0
    results = json.loads((out / "results.json").read_text())
    results["status"] = status
    (out / "results.json").write_text(json.dumps(results))
    for cmd in (["eval", str(out)], ["audit", str(out), "--attacks", "rtn8"]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 1, res.output
        first = res.output.strip().splitlines()[0]
        assert "incomplete run" in first and ("crashed" if status == "running" else status) in first
    allowed = runner.invoke(app, ["eval", str(out), "--allow-incomplete"])
    assert allowed.exit_code == 0 and "incomplete run" in allowed.output.splitlines()[0]


# --- real processes: signals, kill -9, --resume ------------------------------------------------

def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "OBLIVIATE_NO_PROGRESS": "1"}


def _cli(args):
    return [sys.executable, "-m", "obliviate.cli", *args]


def _default_sigint() -> None:
    # A job started in the background by a non-interactive shell (`cmd &`, nohup, some CI
    # runners) inherits SIGINT ignored, and Python then keeps it ignored (no KeyboardInterrupt):
    # the child must get the default disposition for the test to send it a Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(pred, proc, timeout=120.0):
    t0 = time.time()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before the point to stop it: "
                                 f"{proc.stderr.read().decode()[-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.02)


LONG = ("--max-steps", "150", "--checkpoint-every", "10")


def test_kill_9_then_resume_gives_bit_identical_weights(files):
    full, killed = files["tmp"] / "full", files["tmp"] / "killed"
    done = subprocess.run(_cli(_args(files, full, *LONG)), env=_env(), capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    proc = subprocess.Popen(_cli(_args(files, killed, *LONG)), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    _wait_for(lambda: (killed / "checkpoints" / "gd" / "latest").is_dir(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    results = json.loads((killed / "results.json").read_text())
    assert results["status"] == "running" and "gd" not in results["models"]
    assert lock_holder(killed) is None  # the kernel released the dead process's lock

    read = runner.invoke(app, ["eval", str(killed)])
    assert read.exit_code == 1 and "crashed" in read.output.splitlines()[0]

    resumed = subprocess.run(_cli(_args(files, killed, *LONG, "--resume")), env=_env(), capture_output=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    a = load_file(full / "models" / "gd" / "model.safetensors")
    b = load_file(killed / "models" / "gd" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), f"{k} differs after resume"
    info = json.loads((killed / "results.json").read_text())
    assert info["status"] == "done" and info["models"]["gd"]["unlearn"]["steps"] == 150
    assert not (killed / "checkpoints").exists()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_save_what_was_reached_and_exit_non_zero(files, sig, code):
    out = files["tmp"] / "run"
    proc = subprocess.Popen(_cli(_args(files, out, *LONG)), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=_default_sigint)
    _wait_for(lambda: (out / "checkpoints" / "gd" / "latest").is_dir(), proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err.decode()[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "interrupted"
    assert results["models"]["gd"]["unlearn"]["status"] == "interrupted"
    assert "--resume" in err.decode()
