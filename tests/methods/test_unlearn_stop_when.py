"""`unlearn(..., stop_when=...)`: a benchmark's own stopping rule inside the one loop."""

from obliviate.unlearn import UnlearnConfig, unlearn


def test_stop_when_is_called_every_check_every_steps_in_eval_mode(small_world, tiny_model, tiny_tokenizer):
    calls: list[tuple[int, bool, bool]] = []

    def stop(model):
        calls.append((len(calls) + 1, model.training, model is tiny_model))
        return "rule met" if len(calls) == 2 else None

    log = unlearn(tiny_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="ga", lr=1e-3, max_steps=20, batch_size=2, check_every=3), stop_when=stop)
    assert (log.status, log.message, log.steps) == ("stopped_target", "rule met", 6)
    # the unwrapped model (the caller's own object, on CPU), in eval mode while it is checked
    assert calls == [(1, False, True), (2, False, True)]
    assert not tiny_model.training


def test_stop_when_returning_none_runs_to_the_cap(small_world, tiny_model, tiny_tokenizer):
    seen: list[int] = []
    log = unlearn(tiny_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="gd", lr=1e-3, max_steps=8, batch_size=2, check_every=2),
                  stop_when=lambda m: seen.append(1) or None)
    assert (log.status, log.message, log.steps) == ("done", "", 8)
    assert len(seen) == 4


def test_the_accuracy_stop_still_comes_first(small_world, tiny_model, tiny_tokenizer):
    # stop_forget_acc = 1.0 always holds: the existing rule stops at the first check, stop_when is not asked
    seen: list[int] = []
    log = unlearn(tiny_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="ga", lr=1e-3, max_steps=8, batch_size=2, check_every=2, stop_forget_acc=1.0),
                  stop_when=lambda m: seen.append(1) or "never")
    assert log.status == "stopped_target" and log.message.startswith("forget accuracy") and log.steps == 2
    assert seen == []
