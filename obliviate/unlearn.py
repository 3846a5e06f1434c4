"""The one unlearning loop, for every method, built on `accelerate.Accelerator`.

Forget batches are paired with retain batches (the retain set is cycled); AdamW with a
linear warm-up/decay schedule; epochs or max steps; gradient accumulation and clipping;
seeded. Accelerate does device placement, mixed precision and multi-process (DDP, FSDP,
DeepSpeed through `accelerate launch`) — no hand-rolled device layer.

What a method needs is prepared once, here: the reference log-probs of the forget set (and
of its refusals) are computed before the first step and cached, so NPO/DPO-style losses run
no reference forward during training; a frozen reference copy exists only for KL methods.
A non-finite loss or gradient stops the run before the update, so the weights kept are the
last good ones; a finite collapse (the retain loss far above its start, `_DivergenceGuard`)
stops it with status "diverged" and restores the last checked good weights; Ctrl-C stops it
cleanly and the caller saves what was reached.

Batch order is a pure function of (seed, pass, position): every pass over the forget set and
over the retain set draws a fresh permutation seeded by the pass number (`_EpochShuffle`). With a
`checkpoint_dir`, the loop saves accelerate's full state (model, optimizer, scheduler, RNG states
and the data position) every `checkpoint_every` optimizer steps, and `resume=True` continues from
the last one: the resumed run sees exactly the batches, learning rates and random numbers the
uninterrupted run would have, so its final weights are bit-identical (tested with a kill -9).
"""

from __future__ import annotations

import copy
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from accelerate.utils import GradientAccumulationPlugin, TorchDynamoPlugin, set_seed
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import DataLoader
from transformers.trainer_pt_utils import get_length_grouped_indices

from obliviate.data.collate import (
    DEFAULT_PROMPT,
    Encoded,
    PromptFormat,
    collate,
    encode,
    encode_items,
    pad_id_of,
)
from obliviate.data.refusals import refusals
from obliviate.data.task import DataError, ForgetTask
from obliviate.methods import Method, check_task, get_method, make_params
from obliviate.methods._losses import joint_forward, sequence_logp
from obliviate.progress import progress


class UnlearnConfig(BaseModel):
    """Optimisation settings shared by every method (method hyper-parameters go in `params`)."""

    model_config = ConfigDict(extra="forbid")
    method: str = "gd"
    params: dict[str, Any] = Field(default_factory=dict, description="method hyper-parameters")
    lr: float = Field(1e-5, gt=0)
    epochs: int = Field(5, ge=1)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    batch_size: int = Field(8, ge=1, description="forget items per step per process")
    retain_batch_size: int | None = Field(None, ge=1, description="retain items per step (default: batch_size)")
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    mixed_precision: Literal["no", "bf16", "fp16"] = Field("no", description="no | bf16 | fp16 (accelerate)")
    seed: int = 0
    stop_forget_acc: float | None = Field(None, description="stop once forget accuracy is at or below this")
    check_every: int = Field(10, ge=1, description="steps between checks of stop_forget_acc and of divergence")
    diverge_at: float | None = Field(
        0.5, gt=0, description="stop with status 'diverged' when the retain loss has gone this fraction of the way "
                               "from its value before unlearning to ln(vocab), the loss of a uniform guess "
                               "(checked every check_every steps; None: off)")
    max_length: int = Field(512, ge=2)
    group_by_length: bool = Field(True, description="batches of items of similar length (less padding); "
                                  "False: uniformly shuffled batches")
    joint_forward: bool = Field(True, description="one forward pass over the forget and retain batches together, "
                                "for methods that declare it (bench/vs_trainer.py measures the gain)")
    compile: bool = Field(False, description="torch.compile the model (inductor, dynamic shapes) through accelerate; "
                          "off by default: on the tiny TOFU model on a 2-core CPU it saved 5% a step after a "
                          "42 s compile (bench/vs_trainer.py --compile)")
    checkpoint_every: int = Field(50, ge=0, description="optimizer steps between resumable checkpoints "
                                  "(when the run has a checkpoint directory; 0: never)")
    prompt: PromptFormat = Field(DEFAULT_PROMPT, description="prompt format (set it once, under `prompt:`)")


@dataclass
class UnlearnContext:
    """What a method's loss may use besides the model and the two batches."""

    params: Any
    step: int = 0
    task: ForgetTask | None = None
    config: Any = None  # the UnlearnConfig
    tokenizer: Any = None  # for methods that encode their own items in `setup` (surgery's update set)
    state: dict[str, Any] = field(default_factory=dict)  # a method's own state (masks, adapters, ...)
    ref_model: Any = None
    ref_forget_logp: torch.Tensor | None = None
    ref_refusal_logp_cache: torch.Tensor | None = None

    def ref_logp(self, batch: dict) -> torch.Tensor:
        return self.ref_forget_logp[batch["index"]]

    def ref_refusal_logp(self, batch: dict) -> torch.Tensor:
        return self.ref_refusal_logp_cache[batch["index"]]


@dataclass
class UnlearnLog:
    method: str
    steps: int = 0
    status: str = "done"  # done | stopped_target | nonfinite | diverged | interrupted
    message: str = ""
    seconds: float = 0.0
    tokens: int = 0
    losses: list[float] = field(default_factory=list)


class _EpochShuffle(torch.utils.data.Sampler):
    """A new permutation every pass, seeded by (seed, pass): `itertools.cycle` over a shuffled
    DataLoader replays its first order forever, and a resumed run must know every batch from its
    position alone. accelerate calls `set_epoch` with the pass number before each pass.

    With `lengths`, the permutation is length-grouped (transformers' `get_length_grouped_indices`,
    the Trainer's `group_by_length`): shuffled, cut into mega-batches of 50 batches, each sorted by
    length, so a batch holds items of similar length and little compute goes to padding (on TOFU,
    random batches of 32 are 39% padding; grouped ones about 1%)."""

    def __init__(self, n: int, seed: int, lengths: list[int] | None = None, batch_size: int = 1):
        self.n, self.seed, self.epoch = n, seed, 0
        self.lengths, self.batch_size = lengths, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.lengths is not None:
            return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=g))
        return iter(torch.randperm(self.n, generator=g).tolist())


class _Position:
    """Where the loop is (micro-batches of each set consumed, steps, the log so far): saved with the
    checkpoint through `accelerator.register_for_checkpointing`."""

    def __init__(self, log: UnlearnLog):
        self.log, self.forget_micro, self.retain_micro = log, 0, 0

    def state_dict(self) -> dict[str, Any]:
        return {"forget_micro": self.forget_micro, "retain_micro": self.retain_micro, "steps": self.log.steps,
                "tokens": self.log.tokens, "losses": list(self.log.losses), "seconds": self.log.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.forget_micro, self.retain_micro = int(state["forget_micro"]), int(state["retain_micro"])
        self.log.steps, self.log.tokens = int(state["steps"]), int(state["tokens"])
        self.log.losses, self.log.seconds = list(state["losses"]), float(state["seconds"])


def _endless(accelerator: Accelerator, dl, start: int):
    """The batches of `dl` pass after pass, starting `start` micro-batches in (a resumed run)."""
    n = len(dl)
    epoch, skip = divmod(start, n)
    while True:
        dl.set_epoch(epoch)
        yield from (accelerator.skip_first_batches(dl, skip) if skip else dl)
        epoch, skip = epoch + 1, 0


CHECKPOINT = "latest"


def _save_checkpoint(accelerator: Accelerator, ckpt_dir: Path) -> None:
    """accelerate's `save_state` into a fresh folder, then swapped in: a kill during the save leaves
    the previous checkpoint intact."""
    tmp, final = ckpt_dir / "saving", ckpt_dir / CHECKPOINT
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        old = ckpt_dir / "previous"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        if old.exists():
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def checkpoint_path(ckpt_dir: Path | None) -> Path | None:
    """The last complete checkpoint under `ckpt_dir`, if any."""
    if ckpt_dir is None:
        return None
    for name in (CHECKPOINT, "previous"):  # "previous" survives a kill between the two renames
        if (ckpt_dir / name).is_dir():  # only complete saves are renamed to these names
            return ckpt_dir / name
    return None


class _Items(torch.utils.data.Dataset):
    def __init__(self, encoded: list[Encoded], refusal: list[Encoded] | None = None):
        self.encoded, self.refusal = encoded, refusal

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> int:
        return i


def _collate_fn(ds: _Items, pad: int):
    def fn(index: list[int]) -> dict:
        batch = collate([ds.encoded[i] for i in index], pad, index)
        if ds.refusal is not None:
            batch["refusal"] = collate([ds.refusal[i] for i in index], pad, index)
        return batch
    return fn


@torch.no_grad()
def _cached_logp(model, encoded: list[Encoded], pad: int, batch_size: int, device) -> torch.Tensor:
    out = torch.empty(len(encoded), dtype=torch.float32)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].prompt_ids) + len(encoded[i].answer_ids))
    for start in range(0, len(encoded), batch_size):
        idx = order[start:start + batch_size]  # batches of similar length: little padding
        batch = {k: v.to(device) for k, v in collate([encoded[i] for i in idx], pad, idx).items()}
        out[idx] = sequence_logp(model, batch).float().cpu()
    return out.to(device)


def _tokens(batch: dict) -> int:
    return int(batch["attention_mask"].sum())


# The batches a method's `joint` names: one forward pass serves them all (`joint_forward`).
_PARTS: dict[str, Callable[[dict, dict], dict]] = {
    "forget": lambda forget, retain: forget,
    "refusal": lambda forget, retain: forget["refusal"],
    "retain": lambda forget, retain: retain,
}


def _joint_pays(parts: list[dict], slack: float = 1.1) -> bool:
    """Stacking batches pads them all to the widest: worth one call only when that computes at most
    `slack` x the positions of separate calls (length-grouped forget and retain batches can be of
    very different widths; on TOFU, joining them regardless gave back most of the grouping's gain)."""
    shapes = [b["input_ids"].shape for b in parts]
    width = max(w for _, w in shapes)
    return width * sum(n for n, _ in shapes) <= slack * sum(n * w for n, w in shapes)


DIVERGENCE_ITEMS = 32  # retain items whose loss the divergence guard watches


class _DivergenceGuard:
    """Divergence is not success: the NaN guard only catches non-finite values, while a too
    large lr can wreck the model in one finite step (retain accuracy 0, forget accuracy 0, which
    reads like perfect forgetting). At every check the mean answer NLL L of a fixed retain
    sample is compared with L0 + fraction x (ln(vocab) - L0), L0 its value before unlearning:
    a model that has lost that share of the way to knowing nothing of the retain set (a uniform
    guess over the vocabulary scores ln(vocab)) has diverged.
    Deviation from "L > k x L0": a memorised tiny model starts at L0 ~ 0.005 and stays sound at
    6 x L0 (measured on the demo), while a 7B model (L0 ~ 2) that collapses to a uniform guess
    (ln 32000 = 10.4) is only 5 x L0; the distance to ln(vocab) fits both. (A model already at or
    above ln(vocab) gets L0 x (1 + fraction).)
    A state that passes is kept (on the CPU: trainable weights only) and restored when a later
    one fails."""

    def __init__(self, model, tokenizer, items: list, fraction: float, max_length: int, batch_size: int,
                 fmt: PromptFormat = DEFAULT_PROMPT):
        from obliviate.evaluate import mean_answer_nll

        self.model, self.tokenizer, self.items, self.max_length = model, tokenizer, items, max_length
        self.batch_size = batch_size  # the training batch: what fits in memory beside the model
        self.fmt = fmt
        self.mean_nll = mean_answer_nll
        self.start = self._loss()
        uniform = math.log(model.get_output_embeddings().weight.shape[0])
        self.limit = self.start + fraction * max(uniform - self.start, self.start)
        self.good_step = 0
        self._save()

    def _loss(self) -> float:
        training = self.model.training
        self.model.eval()
        loss = self.mean_nll(self.model, self.tokenizer, self.items, self.batch_size, self.max_length, self.fmt)
        self.model.train(training)
        return loss

    def _save(self) -> None:
        self.good = {n: p.detach().to("cpu", copy=True) for n, p in self.model.named_parameters() if p.requires_grad}

    def check(self, step: int) -> str | None:
        """None when the model is sound (its state becomes the last good one); else restore the
        last good state and return the message."""
        loss = self._loss()
        if math.isfinite(loss) and loss <= self.limit:
            self.good_step = step
            self._save()
            return None
        with torch.no_grad():
            for n, p in self.model.named_parameters():
                if n in self.good:
                    p.copy_(self.good[n].to(p.device))
        return (f"diverged: retain loss {loss:.3g} at step {step} > {self.limit:.3g} (it was {self.start:.3g} "
                f"before unlearning); the weights of step {self.good_step}, the last good check, are kept "
                "(try a lower lr)")


def unlearn(model, tokenizer, task: ForgetTask, cfg: UnlearnConfig, accelerator: Accelerator | None = None,
            desc: str | None = None, stop_when: Callable[[Any], str | None] | None = None,
            checkpoint_dir: Path | None = None, resume: bool = False) -> UnlearnLog:
    """Unlearn `task.forget` from `model` in place with `cfg.method`; returns the run's log.

    `stop_when(model)`: a benchmark's own stopping rule, called every `cfg.check_every` optimizer
    steps with the unwrapped model in eval mode; a returned message stops the run there with
    status "stopped_target" and that message (None: go on).
    `checkpoint_dir`: save a resumable checkpoint there every `cfg.checkpoint_every` steps;
    with `resume`, `model` must be the same starting model, and the loop continues from the last
    checkpoint found there (from the start when there is none)."""
    method: Method = get_method(cfg.method)
    params = make_params(method, cfg.params)
    task.validate()
    check_task(method, task)
    if any(it.is_text for it in task.forget) and method.refusals:
        raise DataError(f"method {method.name!r} needs questions to refuse; the forget set is raw text")
    set_seed(cfg.seed)
    # sync_with_dataloader=False: the forget and retain loaders are interleaved and run pass after
    # pass, so "the end of a dataloader" says nothing about where an accumulation window ends.
    accelerator = accelerator or Accelerator(
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=cfg.grad_accum, sync_with_dataloader=False),
        mixed_precision=cfg.mixed_precision,
        dynamo_plugin=TorchDynamoPlugin(backend="inductor", dynamic=True) if cfg.compile else None)
    pad = pad_id_of(tokenizer)
    forget_enc = encode_items(tokenizer, task.forget, cfg.max_length, cfg.prompt)
    retain_enc = encode_items(tokenizer, task.retain if method.uses_retain else [], cfg.max_length, cfg.prompt)
    refusal_enc = None
    if method.refusals:
        pool, rng = refusals(), random.Random(cfg.seed)
        refusal_enc = [encode(tokenizer, it.question, rng.choice(pool), cfg.max_length, cfg.prompt)
                       for it in task.forget]

    device = accelerator.device
    model.to(device)
    ctx = UnlearnContext(params=params, task=task, config=cfg, tokenizer=tokenizer)
    if method.ref_logp:
        model.eval()
        ctx.ref_forget_logp = _cached_logp(model, forget_enc, pad, cfg.batch_size * 4, device)
        if refusal_enc is not None:
            ctx.ref_refusal_logp_cache = _cached_logp(model, refusal_enc, pad, cfg.batch_size * 4, device)
    if method.ref_model:
        ctx.ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    if method.setup is not None:
        method.setup(model, task, ctx)
    log = UnlearnLog(method=method.name)
    if not method.trains:
        if method.finalize is not None:
            method.finalize(model, ctx)
        model.eval()
        return log

    forget_ds, retain_ds = _Items(forget_enc, refusal_enc), _Items(retain_enc)
    retain_bs = cfg.retain_batch_size or cfg.batch_size

    def sampler(encoded: list[Encoded], seed: int, batch_size: int) -> _EpochShuffle:
        lengths = [len(e.prompt_ids) + len(e.answer_ids) for e in encoded] if cfg.group_by_length else None
        return _EpochShuffle(len(encoded), seed, lengths, batch_size)

    forget_dl = DataLoader(forget_ds, batch_size=cfg.batch_size, sampler=sampler(forget_enc, cfg.seed, cfg.batch_size),
                           collate_fn=_collate_fn(forget_ds, pad))
    retain_dl = DataLoader(retain_ds, batch_size=retain_bs, sampler=sampler(retain_enc, cfg.seed + 1, retain_bs),
                           collate_fn=_collate_fn(retain_ds, pad))
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, opt_acc, forget_dl, retain_dl = accelerator.prepare(model, opt, forget_dl, retain_dl)
    # After prepare: len(forget_dl) is this process's share of the batches.
    steps_per_epoch = math.ceil(len(forget_dl) / cfg.grad_accum)
    total = cfg.max_steps or max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_ratio * total)
    # Not accelerate-prepared (a prepared scheduler steps num_processes times per optimizer
    # step): stepped by hand, once per optimizer step.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    opt = opt_acc
    guard = None
    if cfg.diverge_at is not None and task.retain:
        # built before a checkpoint is loaded: its baseline is the model before unlearning, as in
        # an uninterrupted run (it uses no random numbers, so resuming stays bit-identical)
        sample = (task.retain_eval or task.retain)[:DIVERGENCE_ITEMS]
        guard = _DivergenceGuard(accelerator.unwrap_model(model), tokenizer, sample, cfg.diverge_at, cfg.max_length,
                                 cfg.retain_batch_size or cfg.batch_size, cfg.prompt)
    position = _Position(log)
    if checkpoint_dir is not None:
        accelerator.register_for_checkpointing(sched)
        accelerator.register_for_checkpointing(position)
        found = checkpoint_path(Path(checkpoint_dir)) if resume else None
        if found is not None:
            accelerator.load_state(str(found))
            if guard is not None:
                guard.good_step = log.steps
                guard._save()  # the checkpoint's weights are the last good ones
    forget_iter = _endless(accelerator, forget_dl, position.forget_micro)
    retain_iter = _endless(accelerator, retain_dl, position.retain_micro) if method.uses_retain else None

    joint = [_PARTS[name] for name in method.joint] if cfg.joint_forward else []
    t0 = time.perf_counter() - log.seconds
    model.train()
    try:
        with progress() as bar:
            ptask = bar.add_task(desc or f"unlearning ({method.name})", total=total, completed=log.steps)
            while log.steps < total and log.status == "done":
                for forget_batch in forget_iter:
                    position.forget_micro += 1
                    retain_batch = next(retain_iter) if retain_iter is not None else None
                    position.retain_micro += retain_batch is not None
                    with accelerator.accumulate(model):
                        if joint and retain_batch is not None:
                            parts = [part(forget_batch, retain_batch) for part in joint]
                            if _joint_pays(parts):
                                joint_forward(model, parts)
                        if method.backward is not None:
                            loss = method.backward(model, forget_batch, retain_batch, ctx, accelerator)
                        else:
                            loss = method.loss(model, forget_batch, retain_batch, ctx)
                        if not torch.isfinite(loss):
                            log.status = "nonfinite"
                            log.message = (f"{method.name}: the loss became {float(loss.detach())} at step {log.steps}; "
                                           "stopped before the update, keeping the last good weights "
                                           "(try a lower lr or a larger beta)")
                            break
                        if method.backward is None:
                            accelerator.backward(loss)
                        if accelerator.sync_gradients:
                            norm = accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
                            if norm is not None and not torch.isfinite(torch.as_tensor(norm)):
                                opt.zero_grad(set_to_none=True)
                                log.status = "nonfinite"
                                log.message = (f"{method.name}: non-finite gradient at step {log.steps}; "
                                               "stopped before the update, keeping the last good weights")
                                break
                        opt.step()
                        if accelerator.sync_gradients:
                            sched.step()
                            if method.after_step is not None:
                                method.after_step(model, ctx)
                        opt.zero_grad(set_to_none=True)
                    log.tokens += _tokens(forget_batch) + (_tokens(retain_batch) if retain_batch else 0)
                    if not accelerator.sync_gradients:
                        continue
                    log.steps += 1
                    ctx.step = log.steps
                    log.losses.append(float(loss.detach()))
                    bar.update(ptask, advance=1, description=f"{desc or method.name} loss {log.losses[-1]:.3f}")
                    if guard is not None and (log.steps % cfg.check_every == 0 or log.steps >= total):
                        message = guard.check(log.steps)
                        if message:
                            log.status, log.message = "diverged", message
                            break
                    if cfg.stop_forget_acc is not None and log.steps % cfg.check_every == 0:
                        from obliviate.evaluate import greedy_accuracy

                        model.eval()
                        acc = greedy_accuracy(accelerator.unwrap_model(model), tokenizer, task.forget_eval)
                        model.train()
                        if acc <= cfg.stop_forget_acc:
                            log.status = "stopped_target"
                            log.message = f"forget accuracy {acc:.3f} <= {cfg.stop_forget_acc} at step {log.steps}"
                            break
                    if stop_when is not None and log.steps % cfg.check_every == 0:
                        model.eval()
                        message = stop_when(accelerator.unwrap_model(model))
                        model.train()
                        if message:
                            log.status, log.message = "stopped_target", message
                            break
                    if checkpoint_dir is not None and cfg.checkpoint_every and log.steps % cfg.checkpoint_every == 0 \
                            and log.steps < total:
                        log.seconds = time.perf_counter() - t0
                        _save_checkpoint(accelerator, Path(checkpoint_dir))
                    if log.steps >= total:
                        break
    except KeyboardInterrupt:
        log.status = "interrupted"
        log.message = f"interrupted at step {log.steps}; the weights reached so far are kept"
    if guard is not None and log.status == "nonfinite":
        # the weights before the non-finite step may already be wrecked by a finite one
        message = guard.check(log.steps)
        if message:
            log.status, log.message = "diverged", f"{message}; then {log.message}"
    log.seconds = time.perf_counter() - t0
    if method.finalize is not None:
        method.finalize(accelerator.unwrap_model(model), ctx)
    model.eval()
    accelerator.free_memory()
    ctx.ref_model = None
    return log
