"""How fast the tiny TOFU model learns its QA under a training recipe: ROUGE-L recall of its
greedy answers on 100 trained QA every 5 epochs, for each recipe, on the first N TOFU QA.

    python bench/tofu_recipe.py [--items 1000] [--epochs 15] [--recipes old,new,lr1.5e-3]

Recipes (all: batch 32, length-grouped, lr decaying linearly to 10% over `max_epochs`):
- old: the TOFU_TRAIN of 2026-12-01: lr 3e-3, 20 warm-up steps, max_epochs 80;
- new: TOFU_TRAIN now (obliviate/models/prepare.py): lr 3e-3, 100 warm-up steps, max_epochs 40;
- lr1.5e-3: the new recipe at half the lr;
- warmup20: the new recipe with 20 warm-up steps (the warm-up alone).
Each recipe trains for `--epochs` epochs whatever its max_epochs (its lr schedule is the one it
would follow in a full training). Run recipes in parallel with `--parallel` (one thread each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("OBLIVIATE_NO_PROGRESS", "1")

RECIPES = {
    "old": {"lr": 3e-3, "warmup_steps": 20, "max_epochs": 80},
    "new": {},
    "lr1.5e-3": {"lr": 1.5e-3},
    "warmup20": {"warmup_steps": 20},
}


def run_one(name: str, items_n: int, epochs: int) -> dict:
    import torch

    import obliviate.evaluate as evaluate
    from obliviate.data.tofu import tofu_corpus, tofu_full
    from obliviate.models.prepare import TOFU_MODEL, TOFU_TRAIN
    from obliviate.models.tiny import build_model, train_lm, train_tokenizer

    items = tofu_full()[:items_n]
    tok = train_tokenizer(tofu_corpus(), TOFU_MODEL.vocab_size)
    model = build_model(TOFU_MODEL, tok, seed=0)
    cfg = TOFU_TRAIN.model_copy(update={"min_epochs": 5, "check_every": 5, "target_acc": 1.0, **RECIPES[name]})
    # train_lm checks its stop metric every check_every epochs; this wrapper records each check
    # and ends the training after `epochs` epochs without changing the recipe's lr schedule.
    measure, checks, t0 = evaluate.greedy_rouge, [], time.perf_counter()

    def checked(*args, **kwargs):
        value = measure(*args, **kwargs)
        checks.append({"epoch": 5 * (len(checks) + 1), "rouge": round(value, 3),
                       "seconds": round(time.perf_counter() - t0, 1)})
        return 1.0 if 5 * len(checks) >= epochs else value

    evaluate.greedy_rouge = checked
    log = train_lm(model, tok, items, cfg)
    return {"recipe": name, "threads": torch.get_num_threads(), "items": items_n, "checks": checks,
            "last_epoch_loss": round(log["epoch_loss"], 4), "tokens_per_s": round(log["tokens"] / log["train_seconds"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--recipes", default="old,new")
    ap.add_argument("--parallel", action="store_true", help="one process per recipe, one thread each")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.items, args.epochs)), flush=True)
        return
    names = args.recipes.split(",")
    for n in names:
        if n not in RECIPES:
            sys.exit(f"unknown recipe {n!r}; known: {', '.join(RECIPES)}")
    print(f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}; "
          f"{args.items} TOFU QA, {args.epochs} epochs")
    cmd = [sys.executable, __file__, "--items", str(args.items), "--epochs", str(args.epochs), "--one"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if args.parallel else dict(os.environ)
    if args.parallel:
        procs = [subprocess.Popen(cmd + [n], env=env, stdout=subprocess.PIPE, text=True) for n in names]
        outs = [p.communicate()[0] for p in procs]
    else:
        outs = [subprocess.run(cmd + [n], env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
                for n in names]
    for out in outs:
        r = json.loads(out.strip().splitlines()[-1])
        curve = ", ".join(f"epoch {c['epoch']}: {c['rouge']:.2f}" for c in r["checks"])
        print(f"{r['recipe']:>9}: {curve}; last epoch's loss {r['last_epoch_loss']}; "
              f"{r['tokens_per_s']} tokens/s ({r['threads']} thread(s))")


if __name__ == "__main__":
    main()
