"""Train (or fetch from the cache) a tiny target model and its retain-only oracle for a task.

The target learns forget + retain (+ the task's extra facts); the oracle learns the same
minus the forget set, with the same tokenizer, recipe and seed: the model one would have
had if the forget data had never been seen — the reference that forget quality needs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from obliviate.data.task import ForgetTask
from obliviate.models.cache import cache_key, cache_root, commit_dir
from obliviate.models.load import save_model
from obliviate.models.tiny import TinyModelConfig, TrainConfig, build_model, train_lm, train_tokenizer


def prepare_tiny_models(task: ForgetTask, corpus: list[str], model_cfg: TinyModelConfig,
                        train_cfg: TrainConfig, seed: int = 0, use_cache: bool = True,
                        log=print) -> dict[str, Path]:
    """Return {"target": dir, "oracle": dir}, training both unless a matching cache exists."""
    key = cache_key("tiny-pair", task.fingerprint(), hashlib.sha256("\n".join(corpus).encode()).hexdigest(),
                    model_cfg, train_cfg, seed)
    root = cache_root() / "models" / key
    dirs = {"target": root / "target", "oracle": root / "oracle"}
    if use_cache and all((d / "config.json").is_file() for d in dirs.values()):
        log(f"using cached target and oracle from {root}")
        return dirs
    tokenizer = train_tokenizer(corpus, model_cfg.vocab_size)
    recipes = {"target": task.forget + task.retain + task.extra_train,
               "oracle": task.retain + task.extra_train}
    for name, items in recipes.items():
        t0 = time.perf_counter()
        model = build_model(model_cfg, tokenizer, seed)
        train_log = train_lm(model, tokenizer, items, train_cfg, seed, desc=f"training {name}")
        train_log.update(seconds=round(time.perf_counter() - t0, 1), items=len(items),
                         parameters=sum(p.numel() for p in model.parameters()))
        log(f"trained {name}: {train_log['epochs']} epochs, accuracy on its facts "
            f"{train_log['acc']:.3f}, {train_log['seconds']} s")
        tmp = root.parent / f".{key}-{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_model(model, tokenizer, tmp)
        (tmp / "train_log.json").write_text(json.dumps(train_log, indent=2))
        commit_dir(tmp, dirs[name])
    return dirs
