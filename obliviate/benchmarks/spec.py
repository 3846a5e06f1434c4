"""A benchmark is a declaration, not a loop.

Each benchmark module (`world`, `tofu`, `muse`, `semeval`, `tdec`, `wmdp`, `rwku`, and `user`
for `obliviate unlearn` on the user's files) has a `declare(cfg, log, **options) -> Benchmark`
that loads its data, gets its models (training the tiny ones, cached) and says:

- `evaluate(model, tokenizer, name, oracle_eval) -> (metrics, per_item, rows)`: its metric suite
  (`oracle_eval` is the oracle's own triple, or None);
- `knowledge`: the audit's K measures (`obliviate.audit.Knowledge`, first one primary), each the
  same per-item function its metric suite uses;
- `rtt_split`: which forget items the `rtt` attack relearns on and which it probes;
- `columns` and `notes`: its summary table and the reading guide of its report.

`obliviate.pipeline.run_benchmark` runs every declaration through the one loop (evaluate target
and oracle -> unlearn -> evaluate -> save -> audit -> report). `options` are recorded in
results.json (`rebuild`) so that `obliviate audit RUN_DIR` rebuilds the declaration.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obliviate.audit import Knowledge
from obliviate.data.task import DataError, ForgetTask, QAItem
from obliviate.unlearn import UnlearnConfig

Evaluation = tuple[dict[str, float], dict[str, Any], list[dict[str, Any]]]
EvalFn = Callable[[Any, Any, str, Evaluation | None], Evaluation]
SplitFn = Callable[[list[QAItem], int, float], tuple[list[QAItem], list[QAItem]]]

# name -> the module holding its `declare` (the registry `obliviate audit RUN_DIR` and the tests use)
REGISTRY = {name: f"obliviate.benchmarks.{name}" for name in
            ("world", "user", "tofu", "muse", "semeval", "tdec", "wmdp", "rwku")}


@dataclass
class Benchmark:
    """What one benchmark brings to the shared run loop (see the module docstring)."""

    key: str  # the registry name ("muse")
    name: str  # results.json "benchmark" (may carry the reduction: "muse_news_a9")
    task: ForgetTask  # forget/retain: what unlearning trains on; forget_eval: the audit's units
    models: dict[str, str | Path | None]  # "target" (required) and "oracle"
    evaluate: EvalFn
    knowledge: dict[str, Knowledge]
    rtt_split: SplitFn | None = None  # None: split forget_eval by subject (relearn.split_forget_by_subject)
    columns: list[list[str]] | None = None  # None: the QA suite's summary columns
    notes: list[str] | None = None  # None: the QA suite's reading guide
    # Per-method settings under the run file's method_overrides; None: WORLD_METHOD_DEFAULTS on
    # tiny models (the QA benchmarks).
    method_defaults: dict[str, dict[str, Any]] | None = None
    tiny: bool = True  # obliviate's tiny models (copied into the run directory), not a user's model
    sources: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # more top-level results.json keys
    fingerprint: Any = None  # what `evaluate` depends on besides the weights (the eval cache key)
    options: dict[str, Any] = field(default_factory=dict)  # declare(cfg, **options) rebuilds it
    # TDEC: a stopping rule per method from the target's metrics; a hook on a method's metrics and
    # log after unlearning (with the target's metrics); top-level keys derived from the results
    stop_when: Callable[[UnlearnConfig, dict[str, float]], Callable | None] | None = None
    after_unlearn: Callable[[dict[str, float], Any, UnlearnConfig, dict[str, float]], None] | None = None
    summary: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def declare(key: str, cfg, log=print, **options: Any) -> Benchmark:
    """The declaration of the registered benchmark `key`."""
    if key not in REGISTRY:
        raise DataError(f"unknown benchmark {key!r}; known: {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[key]).declare(cfg, log=log, **options)


def check_methods(methods: list[str], text: bool) -> None:
    """Fail on an unknown method, or (raw-text forget set) one that needs questions, before any training."""
    from obliviate.methods import get_method

    for m in methods:
        if get_method(m).refusals and text:
            raise DataError(f"method {m!r} needs questions to refuse, and this benchmark unlearns raw text; "
                            f"pick another method (e.g. ga, gd, npo, npo_gd)")


def precheck(cfg, text: bool) -> None:
    """Everything about the run's settings that can be checked before a benchmark loads data or
    trains its tiny models: method names (and, on raw text, methods that need questions) and
    attack names. Each benchmark's `run` calls it first; the loop checks again."""
    check_methods(cfg.methods, text)
    if cfg.audit.enabled and cfg.audit.attacks:
        from obliviate.attacks import get_attack

        for a in cfg.audit.attacks:
            get_attack(a)


def with_method_defaults(cfg, defaults: dict[str, dict[str, Any]]):
    """`cfg` with a benchmark's per-method settings under what the user set: a field of the run
    file's `unlearn:` block or of `method_overrides.METHOD` wins (config.yaml records the result)."""
    user_shared = cfg.unlearn.model_fields_set if "unlearn" in cfg.model_fields_set else set()
    merged: dict[str, dict[str, Any]] = {}
    for method in set(defaults) | set(cfg.method_overrides):
        base = {k: v for k, v in defaults.get(method, {}).items() if k == "params" or k not in user_shared}
        user = cfg.method_overrides.get(method, {})
        entry = {**{k: v for k, v in base.items() if k != "params"}, **{k: v for k, v in user.items() if k != "params"}}
        params = {**base.get("params", {}), **user.get("params", {})}
        if params:
            entry["params"] = params
        merged[method] = entry
    return cfg.model_copy(update={"method_overrides": merged})


def method_config(cfg, method: str, defaults: dict[str, dict[str, Any]]) -> UnlearnConfig:
    """The unlearning settings of `method` on a benchmark with its own per-method `defaults`
    (the user's `unlearn:` fields and `method_overrides` win)."""
    return with_method_defaults(cfg, defaults).unlearn_config(method, tiny=False)


def split_items(items: list[QAItem], seed: int, train_fraction: float = 0.5,
                as_train: Callable[[QAItem], QAItem] | None = None) -> tuple[list[QAItem], list[QAItem]]:
    """RTT on items that are independent of each other (texts, questions): a seeded random
    `train_fraction` of them to relearn on (mapped by `as_train`, e.g. a question to its text),
    the rest held out and probed. Deeb & Roger 2024 split by fact; here every item is one."""
    from obliviate.attacks import AttackUnavailable

    if len(items) < 2:
        raise AttackUnavailable(f"cannot split {len(items)} forget item(s) into relearned and held-out halves")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_train = min(len(items) - 1, max(1, round(train_fraction * len(items))))
    train_idx = set(order[:n_train])
    train = [items[i] for i in sorted(train_idx)]
    held_out = [items[i] for i in range(len(items)) if i not in train_idx]
    return [as_train(it) for it in train] if as_train else train, held_out
