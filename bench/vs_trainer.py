"""obliviate's unlearning loop against the field's way of doing it, in one process.

    python bench/vs_trainer.py [--methods ga,gd,npo_gd,npo_kl] [--steps 20] [--batch-size 16]
                               [--threads 1] [--rounds 2] [--model-dir DIR]

The same unlearning (same model, TOFU forget10 / retain90, batch, steps, lr, AdamW, linear
schedule) run two ways, interleaved `--rounds` times (the best of each is kept, so a burst of
load on the machine does not decide the ratio):
- (a) `obliviate.unlearn.unlearn`: length-grouped batches, one forward over forget + retain
  (`Method.joint`), reference log-probs of the forget set computed once before training
  (`unlearn`'s wall time includes that), a reference model only for the KL term;
- (b) `FieldTrainer`, a minimal `transformers.Trainer` subclass doing the per-step work of the
  field's framework (locuslab/open-unlearning's `trainer/unlearn/*.py`): forget and retain
  batches padded to their batch maximum and forwarded in separate calls, the reference model
  run on the forget batch every step (NPO) and on the retain batch (KL).
Printed: real (non-pad) tokens per second of each, and the ratio (a)/(b). The model is the tiny
TOFU Llama (docs/experiments/tofu.md) at its initialisation unless `--model-dir` names a trained
one: the cost of a step does not depend on what the weights know.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import random
import time

os.environ.setdefault("OBLIVIATE_NO_PROGRESS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

from obliviate.data.collate import collate, encode, pad_id_of  # noqa: E402
from obliviate.data.tofu import load_tofu, tofu_corpus  # noqa: E402
from obliviate.models.load import load_model  # noqa: E402
from obliviate.models.prepare import TOFU_MODEL  # noqa: E402
from obliviate.models.tiny import build_model, train_tokenizer  # noqa: E402
from obliviate.unlearn import UnlearnConfig, unlearn  # noqa: E402

BETA = 0.1


def _seq_nll(model, batch) -> torch.Tensor:
    """Summed answer NLL per item (what open-unlearning's compute_batch_nll returns)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shifted, labels = logits[:, :-1], batch["labels"][:, 1:]
    nll = F.cross_entropy(shifted.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return nll.sum(-1)


def _nll(model, batch) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def _kl(model, ref, batch) -> torch.Tensor:
    """KL(ref || model) on the retain batch, open-unlearning's compute_kl_divergence (all positions)."""
    with torch.no_grad():
        ref_logits = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ref_p = F.log_softmax(ref_logits, -1).view(-1, ref_logits.shape[-1])
    cur = F.log_softmax(logits, -1).view(-1, logits.shape[-1])
    return F.kl_div(cur, ref_p, reduction="batchmean", log_target=True)


class FieldTrainer(Trainer):
    """GradAscent / GradDiff / NPO(+GD) / NPO+KL as the field's framework computes them per step."""

    def __init__(self, *a, method: str, ref_model=None, **kw):
        super().__init__(*a, **kw)
        self.method, self.ref_model, self.tokens = method, ref_model, 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        forget, retain = inputs["forget"], inputs["retain"]
        self.tokens += int(forget["attention_mask"].sum())
        if self.method == "ga":
            return -_nll(model, forget)
        self.tokens += int(retain["attention_mask"].sum())
        if self.method == "gd":
            return -_nll(model, forget) + _nll(model, retain)
        with torch.no_grad():
            ref_nll = _seq_nll(self.ref_model, forget)
        npo = -(2.0 / BETA) * F.logsigmoid(BETA * (_seq_nll(model, forget) - ref_nll)).mean()
        if self.method == "npo_gd":
            return npo + _nll(model, retain)
        return npo + _kl(model, self.ref_model, retain)  # npo_kl


class _Pairs(torch.utils.data.Dataset):
    """open-unlearning's ForgetRetainDataset over QADatasets: each forget item with a random retain
    item, tokenized when fetched."""

    def __init__(self, tok, forget, retain, seed: int):
        self.tok, self.forget, self.retain, self.rng = tok, forget, retain, random.Random(seed)

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, i: int) -> dict:
        r = self.retain[self.rng.randrange(len(self.retain))]
        f = self.forget[i]
        return {"forget": encode(self.tok, f.question, f.answer), "retain": encode(self.tok, r.question, r.answer)}


def _collator(pad: int):
    def fn(rows: list[dict]) -> dict:  # pad to the batch maximum, each part on its own
        return {k: collate([r[k] for r in rows], pad) for k in ("forget", "retain")}
    return fn


def run_trainer(model, tok, task, method: str, steps: int, batch: int, lr: float, seed: int) -> tuple[float, int]:
    pad = pad_id_of(tok)
    ds = _Pairs(tok, task.forget, task.retain, seed)
    args = TrainingArguments(output_dir="/tmp/obliviate-vs-trainer", per_device_train_batch_size=batch,
                             max_steps=steps, learning_rate=lr, weight_decay=0.01, warmup_steps=int(0.1 * steps),
                             lr_scheduler_type="linear", max_grad_norm=1.0, optim="adamw_torch", report_to=[],
                             save_strategy="no", logging_strategy="no", use_cpu=True, seed=seed,
                             dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True)
    ref = copy.deepcopy(model).eval().requires_grad_(False) if method.startswith("npo") else None
    trainer = FieldTrainer(model=model, args=args, train_dataset=ds, data_collator=_collator(pad), method=method,
                           ref_model=ref)
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0, trainer.tokens


def run_obliviate(model, tok, task, method: str, steps: int, batch: int, lr: float, seed: int,
                  compile: bool = False) -> tuple[float, int]:
    cfg = UnlearnConfig(method=method, lr=lr, max_steps=steps, batch_size=batch, seed=seed, compile=compile)
    t0 = time.perf_counter()
    log = unlearn(model, tok, task, cfg)
    return time.perf_counter() - t0, log.tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="ga,gd,npo_gd,npo_kl")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--compile", action="store_true", help="also time obliviate with UnlearnConfig.compile "
                    "(first run, with the compile, and the best later one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = load_tofu(None, "forget10")
    if args.model_dir:
        model0, tok = load_model(args.model_dir)
    else:
        tok = train_tokenizer(tofu_corpus(), TOFU_MODEL.vocab_size)
        model0 = build_model(TOFU_MODEL, tok)
    state = copy.deepcopy(model0.state_dict())
    n = sum(p.numel() for p in model0.parameters())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {args.threads} thread(s), torch "
          f"{torch.__version__}; model {n / 1e6:.2f}M parameters; TOFU forget10 ({len(task.forget)}) / retain90 "
          f"({len(task.retain)}); batch {args.batch_size} + {args.batch_size}, {args.steps} steps, best of "
          f"{args.rounds} interleaved rounds")
    print(f"{'method':>8} {'obliviate tok/s':>16} {'Trainer tok/s':>14} {'ratio':>6}   goal")
    runners = {"obliviate": run_obliviate, "trainer": run_trainer}
    if args.compile:
        runners["compiled"] = lambda *a: run_obliviate(*a, compile=True)
        first: dict[str, float] = {}
    for method in args.methods.split(","):
        best: dict[str, float] = {}
        for r in range(args.rounds + 1):  # round 0 warms both up with a few steps
            for name, fn in runners.items():
                model0.load_state_dict(state)
                secs, tokens = fn(model0, tok, task, method, args.steps if r else 3, args.batch_size, args.lr, 0)
                if r:
                    best[name] = max(best.get(name, 0.0), tokens / secs)
                elif name == "compiled":
                    first[method] = secs
        goal = 2.0 if method.startswith("npo") else 1.3
        ratio = best["obliviate"] / best["trainer"]
        print(f"{method:>8} {best['obliviate']:16.0f} {best['trainer']:14.0f} {ratio:5.2f}x   >= {goal}x "
              f"{'met' if ratio >= goal else 'missed'}", flush=True)
        if args.compile:
            print(f"{'':>8} compiled: {best['compiled']:.0f} tok/s ({best['compiled'] / best['obliviate']:.2f}x "
                  f"eager) after a first 3-step run of {first[method]:.1f} s with the compile", flush=True)


if __name__ == "__main__":
    main()
