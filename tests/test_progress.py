"""Long phases print plain progress lines (elapsed, ETA) when stderr is not a terminal."""

import io
import re
import time

from obliviate.progress import PlainProgress, duration, progress


def test_duration():
    assert (duration(3.2), duration(125), duration(3723)) == ("3s", "2m05s", "1h02m03s")


def test_plain_lines_from_the_timer_even_without_updates():
    out = io.StringIO()
    with PlainProgress(every=0.05, stream=out) as bar:
        t = bar.add_task("training target", total=4)
        bar.advance(t)
        time.sleep(0.3)  # a long step: the timer thread still prints
        bar.update(t, advance=3, description="training target epoch 2")
    lines = out.getvalue().splitlines()
    assert lines[0] == "training target: started (4 steps)"
    ticks = [line for line in lines if line.startswith("training target: 1/4 (25%)")]
    assert len(ticks) >= 3
    eta = re.search(r"elapsed (\d+)s, ETA (\d+)s", ticks[-1])
    assert eta and int(eta.group(2)) >= int(eta.group(1))  # 3 steps left at the rate of 1 done
    assert lines[-1].startswith("training target epoch 2: 4/4 (100%)") and lines[-1].endswith(", done")


def test_a_task_stopped_early_says_so():
    out = io.StringIO()
    with PlainProgress(every=60, stream=out) as bar:
        bar.add_task("unlearning (gd)", total=50, completed=10)
    assert out.getvalue().splitlines()[-1] == "unlearning (gd): 10/50 (20%), elapsed 0s, stopped"


def test_not_a_terminal_means_plain_lines(monkeypatch):
    monkeypatch.delenv("OBLIVIATE_NO_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(progress(), PlainProgress)
    monkeypatch.setenv("OBLIVIATE_NO_PROGRESS", "1")
    assert not isinstance(progress(), PlainProgress)


def _plain_lines(monkeypatch, every: str) -> io.StringIO:
    """Progress on, stderr not a terminal (captured), a line every `every` seconds."""
    monkeypatch.delenv("OBLIVIATE_NO_PROGRESS", raising=False)
    monkeypatch.setenv("OBLIVIATE_PROGRESS_EVERY", every)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    return err


def test_training_prints_progress_lines(monkeypatch, small_world, tiny_tokenizer, tiny_model):
    from obliviate.models.tiny import TrainConfig, train_lm

    err = _plain_lines(monkeypatch, "0.01")
    log = train_lm(tiny_model, tiny_tokenizer, small_world.forget + small_world.retain,
                   TrainConfig(max_epochs=3, min_epochs=4, batch_size=8))
    lines = err.getvalue().splitlines()
    assert lines[0] == "training: started (18 steps)"
    assert any(" ETA " in line for line in lines[1:])
    assert re.fullmatch(r"training epoch 3 loss [\d.]+: 18/18 \(100%\), elapsed \d+s, done", lines[-1])
    assert 0 < log["tokens"] <= log["padded_tokens"] and log["train_seconds"] > 0


def test_training_stops_once_the_epoch_loss_is_low(small_world, tiny_tokenizer, tiny_model):
    from obliviate.models.tiny import TrainConfig, train_lm

    items = small_world.forget + small_world.retain
    log = train_lm(tiny_model, tiny_tokenizer, items, TrainConfig(max_epochs=80, min_epochs=81, batch_size=8,
                                                                  stop_loss=0.5, lr=3e-3))
    assert log["epochs"] < 80 and log["epoch_loss"] <= 0.5 and log["acc"] > 0  # measured at the stop
    assert log["stopped"] == f"mean training loss {log['epoch_loss']:.3g} <= 0.5 at epoch {log['epochs']}"


def test_progress_lines_show_the_last_check(monkeypatch, small_world, tiny_tokenizer, tiny_model):
    from obliviate.models.tiny import TrainConfig, train_lm

    err = _plain_lines(monkeypatch, "30")
    log = train_lm(tiny_model, tiny_tokenizer, small_world.forget + small_world.retain,
                   TrainConfig(max_epochs=3, min_epochs=1, check_every=1, target_acc=1.1, batch_size=16))
    assert [e for e, _ in log["checks"]] == [1, 2, 3]
    acc = log["checks"][-1][1]
    assert "epoch 3 loss" in err.getvalue() and f"acc {log['checks'][1][1]:.3f} at the last check" in err.getvalue()
    assert log["acc"] == acc
