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

from obliviate.data.collate import DEFAULT_PROMPT, PromptFormat
from obliviate.data.task import DataError, ForgetTask, QAItem
from obliviate.models.cache import cache_key, cache_root, commit_dir
from obliviate.models.load import save_model
from obliviate.models.tiny import TinyModelConfig, TrainConfig, build_model, train_lm, train_tokenizer


def _format_key(fmt: PromptFormat) -> list:
    """The prompt format's part of a cache key: none for the default, so the models cached before
    prompt formats existed are still found."""
    return [] if fmt == DEFAULT_PROMPT else [fmt]


def prepare_tiny_models(task: ForgetTask, corpus: list[str], model_cfg: TinyModelConfig,
                        train_cfg: TrainConfig, seed: int = 0, use_cache: bool = True,
                        log=print, fmt: PromptFormat = DEFAULT_PROMPT) -> dict[str, Path]:
    """Return {"target": dir, "oracle": dir}, trained in the prompt format `fmt`, training both
    unless a matching cache exists."""
    key = cache_key("tiny-pair", task.fingerprint(), hashlib.sha256("\n".join(corpus).encode()).hexdigest(),
                    model_cfg, train_cfg, seed, *_format_key(fmt))
    root = cache_root() / "models" / key
    dirs = {"target": root / "target", "oracle": root / "oracle"}
    if use_cache and all((d / "config.json").is_file() for d in dirs.values()):
        log(f"using cached target and oracle from {root}")
        return dirs
    tokenizer = train_tokenizer(corpus, model_cfg.vocab_size)
    recipes = {"target": task.forget + task.retain + task.extra_train,
               "oracle": task.retain + task.extra_train}
    for name, items in recipes.items():
        train_and_save(name, items, tokenizer, model_cfg, train_cfg, seed, dirs[name], log, fmt)
    return dirs


def train_and_save(name: str, items: list[QAItem], tokenizer, model_cfg: TinyModelConfig, train_cfg: TrainConfig,
                   seed: int, final: Path, log=print, fmt: PromptFormat = DEFAULT_PROMPT) -> Path:
    """Train one tiny model from scratch on `items` and move it into `final` atomically
    (an interrupt leaves no half-written cache entry); its training log sits beside it."""
    t0 = time.perf_counter()
    model = build_model(model_cfg, tokenizer, seed)
    train_log = train_lm(model, tokenizer, items, train_cfg, seed, desc=f"training {name}", fmt=fmt)
    train_log.update(seconds=round(time.perf_counter() - t0, 1), items=len(items),
                     parameters=sum(p.numel() for p in model.parameters()), stop_metric=train_cfg.stop_metric)
    stopped = f" ({train_log['stopped']})" if train_log.get("stopped") else ""
    log(f"trained {name}: {train_log['epochs']} epochs{stopped}, {train_cfg.stop_metric} on its facts "
        f"{train_log['acc']:.3f}, {train_log['seconds']} s")
    tmp = final.parent / f".{final.parent.name}-{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tokenizer, tmp)
    (tmp / "train_log.json").write_text(json.dumps(train_log, indent=2))
    return commit_dir(tmp, final)


def _items_hash(items: list[QAItem]) -> str:
    return hashlib.sha256(json.dumps([[it.question, it.answer] for it in items]).encode()).hexdigest()[:16]


# TOFU answers are sentences (~50 tokens with question), not short facts: a wider model, a
# TOFU-trained tokenizer, and ROUGE-L recall (TOFU's own measure) as the stopping rule.
# Chosen by the runs recorded in docs/experiments/tofu.md.
TOFU_MODEL = TinyModelConfig(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                             num_attention_heads=4, max_position_embeddings=512)
# Warm-up of 100 steps, not the world's 20. On the first 1000 TOFU QA after 15 epochs (2026-12-02,
# 1 thread each, two at a time): 20 warm-up steps with the lr decaying over 15 epochs reached
# ROUGE 0.29 (batch 16: 0.12); 100 warm-up steps with the decay over 80 epochs 0.85 (lr 1.5e-3:
# 0.83). With only the warm-up changed (bench/tofu_recipe.py --recipes new,warmup20): 0.20 with 20
# steps, 0.90 with 100. The lr decays linearly to 10% over max_epochs = 40, so a model slow to
# reach the target still ends at a low lr.
TOFU_TRAIN = TrainConfig(lr=3e-3, batch_size=32, warmup_steps=100, max_epochs=40, min_epochs=15, check_every=5,
                         target_acc=0.9, stop_metric="rouge", check_items=100, group_by_length=True)


def prepare_tofu_models(data_dir: Path, splits: tuple[str, ...] = ("forget01", "forget05", "forget10"),
                        authors: int | None = None, model_cfg: TinyModelConfig = TOFU_MODEL,
                        train_cfg: TrainConfig = TOFU_TRAIN, seed: int = 0, use_cache: bool = True,
                        log=print, fmt: PromptFormat = DEFAULT_PROMPT) -> dict[str, Path]:
    """`obliviate prepare tofu`: a tiny target trained from scratch on TOFU and one retain-only
    oracle per forget split, as TOFU publishes them (target on full.json; the retain99/95/90
    oracles on full minus forget01/05/10). Returns {"target": dir, split: oracle dir, ...}.

    With `authors=N` (a reduced TOFU, see `load_tofu`) the target learns every author kept by
    any of the three reduced splits, and each oracle the same minus its split's forget authors,
    so one target serves every split. Each model is cached on its own, keyed by its training
    items, the tokenizer's corpus, the configs and the seed: asking for another split later
    trains only that oracle. The models learn the prompt format `fmt`.
    """
    from obliviate.data.tofu import TOFU_SPLITS, load_tofu, tofu_corpus, tofu_full

    for split in splits:
        if split not in TOFU_SPLITS:
            raise DataError(f"unknown TOFU split {split!r}; valid splits: {', '.join(TOFU_SPLITS)}")
    full = tofu_full(data_dir)
    tasks = {s: load_tofu(data_dir, s, authors) for s in TOFU_SPLITS}
    kept = {it.subject for t in tasks.values() for it in t.forget + t.retain}
    target_items = [it for it in full if it.subject in kept]
    recipes = {"target": target_items}
    for split in splits:
        gone = {it.subject for it in tasks[split].forget}
        recipes[split] = [it for it in target_items if it.subject not in gone]
    corpus = tofu_corpus(data_dir)
    corpus_hash = hashlib.sha256("\n".join(corpus).encode()).hexdigest()[:16]
    root = cache_root() / "models"
    dirs = {name: root / cache_key("tofu-model", _items_hash(items), corpus_hash, model_cfg, train_cfg, seed,
                                   *_format_key(fmt))
            for name, items in recipes.items()}
    tokenizer = None
    for name, items in recipes.items():
        if use_cache and (dirs[name] / "config.json").is_file():
            log(f"using cached TOFU {name} model from {dirs[name]}")
            continue
        tokenizer = tokenizer or train_tokenizer(corpus, model_cfg.vocab_size)
        label = "target" if name == "target" else f"oracle for {name} ({len(items)} QA)"
        train_and_save(label, items, tokenizer, model_cfg, train_cfg, seed, dirs[name], log, fmt)
    return dirs
