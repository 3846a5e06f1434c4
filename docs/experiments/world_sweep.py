"""Regenerate docs/experiments/world_defaults.md: each method on the embedded world over a small
learning-rate grid, with the per-method settings the demo uses marked.

    python docs/experiments/world_sweep.py [--seed 0] [--methods ga,gd,...]

Uses the cached default target and oracle (trains them on first use), the demo's unlearning
settings (10 epochs, forget batch 8, retain batch 32) and WORLD_METHOD_DEFAULTS' params.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OBLIVIATE_NO_PROGRESS", "1")

import torch  # noqa: E402

from obliviate.config import WORLD_METHOD_DEFAULTS, RunConfig  # noqa: E402
from obliviate.data.world import generate_world, world_corpus  # noqa: E402
from obliviate.evaluate import evaluate  # noqa: E402
from obliviate.methods import available, get_method  # noqa: E402
from obliviate.models.load import load_model  # noqa: E402
from obliviate.models.prepare import prepare_tiny_models  # noqa: E402
from obliviate.pipeline import evaluate_cached  # noqa: E402
from obliviate.unlearn import unlearn  # noqa: E402

LRS = (1e-4, 2e-4, 3e-4, 1e-3)
COLS = ("forget_acc", "retain_acc", "utility_world_facts_acc", "forget_quality", "model_utility")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(available()))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("world_defaults.md"))
    ap.add_argument("--lrs", default=",".join(f"{lr:g}" for lr in LRS), help="the learning-rate grid")
    args = ap.parse_args()
    lrs = [float(x) for x in args.lrs.split(",")]
    torch.set_num_threads(2)
    cfg = RunConfig(seed=args.seed)
    task = generate_world(cfg.world.model_copy(update={"seed": args.seed}))
    dirs = prepare_tiny_models(task, world_corpus(task), cfg.model, cfg.train, args.seed)
    oracle = evaluate_cached(dirs["oracle"], task, cfg.eval, None)
    target = evaluate_cached(dirs["target"], task, cfg.eval, oracle)
    lines = ["# Per-method settings for the embedded world", "",
             f"Command: `python docs/experiments/world_sweep.py --seed {args.seed}` "
             f"(2 CPU threads; the row marked * is the demo's default).", "",
             "| method | lr | " + " | ".join(COLS) + " | seconds |", "|---|---|" + "---|" * (len(COLS) + 1)]
    for name, res in (("target", target), ("oracle", oracle)):
        lines.append(f"| {name} | - | " + " | ".join(f"{res.metrics[c]:.3f}" for c in COLS) + " | - |")
    for method in args.methods.split(","):
        default_lr = WORLD_METHOD_DEFAULTS.get(method, {}).get("lr")
        grid = sorted(set(lrs) | ({default_lr} if default_lr else set()))
        if not get_method(method).trains:  # no optimizer steps: the lr does not matter
            grid = [default_lr or lrs[0]]
        for lr in grid:
            ucfg = cfg.unlearn_config(method).model_copy(update={"lr": lr})
            model, tok = load_model(dirs["target"])
            t0 = time.perf_counter()
            log = unlearn(model, tok, task, ucfg)
            secs = time.perf_counter() - t0
            res = evaluate(model, tok, task, cfg.eval, oracle=oracle)
            mark = "*" if lr == default_lr else ""
            row = (f"| {method}{mark} | {lr:g} | " + " | ".join(f"{res.metrics[c]:.3f}" for c in COLS)
                   + f" | {secs:.1f} |")
            print(row, log.status, file=sys.stderr, flush=True)
            lines.append(row)
    lines += ["", "Params besides lr (alpha etc.) are those of `WORLD_METHOD_DEFAULTS` in obliviate/config.py."]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
