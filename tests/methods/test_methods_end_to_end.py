"""Every method at its world defaults on the reduced demo world, end to end: forget accuracy
drops clearly while retain accuracy stays within a few points of the target's.

The target is trained once per session (the same reduced world and model as
tests/test_demo_pipeline.py, so the isolated test cache serves both).
"""

from __future__ import annotations

import pytest

from obliviate.config import RunConfig
from obliviate.data.world import generate_world, world_corpus
from obliviate.evaluate import greedy_accuracy
from obliviate.methods import available, get_method
from obliviate.models.load import load_model
from obliviate.models.prepare import prepare_tiny_models
from obliviate.unlearn import unlearn

REDUCED = {
    "world": {"n_people": 16, "n_attributes": 4, "forget_fraction": 0.25, "n_holdout_people": 2,
              "n_countries": 4, "retain_eval_size": 40},
    "model": {"vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2},
    "train": {"max_epochs": 60, "target_acc": 0.95, "check_every": 5},
}
# Per-method changes for this 2-layer model (the world defaults are tuned on the demo's 4 layers),
# each with its reason.
REDUCED_OVERRIDES: dict[str, dict] = {
    # the default layers [1, 2] do not exist in a 2-layer model
    "mrp": {"params": {"layers": [0, 1]}},
    # at layer 0 RMU's steering wrecks every later state (retain 0.97 -> 0.20); the last layer
    # with a smaller step forgets (0.0) and keeps retain (0.93)
    "rmu": {"lr": 3e-3, "params": {"layer": 1}},
    # the two-pass update is larger on this small model: lr 1e-3 took retain to 0.07, 2e-4 keeps 0.95
    "blur": {"lr": 2e-4},
    # 2 layers x 256 neurons: 2% a step for 5 steps leaves forget at 0.94; 7% forgets (0.38), retain 0.88
    "prune": {"params": {"frac": 0.07}},
}
# ga and npo have no retain term and stop at forget acc 0.4 by design (see WORLD_METHOD_DEFAULTS);
# the refusal methods are judged by the refusal, covered in test_registry_every_method.py.
METHODS = sorted(m for m in available() if not get_method(m).refusals)


@pytest.fixture(scope="module")
def reduced():
    cfg = RunConfig(**REDUCED)
    task = generate_world(cfg.world)
    dirs = prepare_tiny_models(task, world_corpus(task), cfg.model, cfg.train, cfg.seed)
    model, tok = load_model(dirs["target"])
    acc = {"forget": greedy_accuracy(model, tok, task.forget_eval),
           "retain": greedy_accuracy(model, tok, task.retain_eval)}
    return cfg, task, dirs, acc


@pytest.mark.parametrize("name", METHODS)
def test_method_forgets_and_keeps_at_its_defaults(name, reduced):
    cfg, task, dirs, target = reduced
    assert target["forget"] >= 0.9
    ucfg = cfg.unlearn_config(name)
    extra = REDUCED_OVERRIDES.get(name, {})
    ucfg = ucfg.model_copy(update={k: v for k, v in extra.items() if k != "params"}
                           | {"params": {**ucfg.params, **extra.get("params", {})}})
    model, tok = load_model(dirs["target"])
    log = unlearn(model, tok, task, ucfg)
    assert log.status in ("done", "stopped_target"), log.message
    forget = greedy_accuracy(model, tok, task.forget_eval)
    retain = greedy_accuracy(model, tok, task.retain_eval)
    assert forget <= target["forget"] - 0.4, f"{name}: forget acc {target['forget']:.2f} -> {forget:.2f}"
    assert retain >= target["retain"] - 0.15, f"{name}: retain acc {target['retain']:.2f} -> {retain:.2f}"
