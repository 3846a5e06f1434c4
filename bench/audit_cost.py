"""What the audit costs: wall time per attack on the embedded default, and its ratio to one
plain evaluation of the same model (both measured here, in the same process). Goal: the
default audit of one model within 6 evaluations.

    python bench/audit_cost.py [--method gd] [--attacks rtn4,rtt,...]

Uses the cached default target (trains it and the oracle on first use), unlearns it once with
`--method`, then times `obliviate.evaluate.evaluate` on the unlearned model and each attack
(attack + the probe of forget and retain accuracy under it).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OBLIVIATE_NO_PROGRESS", "1")

import torch  # noqa: E402

from obliviate.attacks import default_attacks  # noqa: E402
from obliviate.audit import run_attacks  # noqa: E402
from obliviate.config import RunConfig  # noqa: E402
from obliviate.data.world import generate_world, world_corpus  # noqa: E402
from obliviate.evaluate import evaluate  # noqa: E402
from obliviate.models.load import load_model  # noqa: E402
from obliviate.models.prepare import prepare_tiny_models  # noqa: E402
from obliviate.unlearn import unlearn  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="gd")
    ap.add_argument("--attacks", default=None, help="comma-separated (default: the audit's default, every attack)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = RunConfig()
    task = generate_world(cfg.world)
    dirs = prepare_tiny_models(task, world_corpus(task), cfg.model, cfg.train, cfg.seed, log=lambda m: None)
    model, tok = load_model(dirs["target"])
    unlearn(model, tok, task, cfg.unlearn_config(args.method))
    evaluate(model, tok, task, cfg.eval)  # warm-up
    t0 = time.perf_counter()
    evaluate(model, tok, task, cfg.eval)
    eval_s = time.perf_counter() - t0
    attacks = args.attacks.split(",") if args.attacks else default_attacks()
    t0 = time.perf_counter()
    results = run_attacks(model, tok, task, attacks, cfg.eval, cfg.seed)
    total = time.perf_counter() - t0
    print(f"one plain evaluation (every metric, all probe sets): {eval_s:.2f} s")
    print(f"{'attack':>16} {'seconds':>8} {'x eval':>7}")
    for name, res in results.items():
        secs = getattr(res, "seconds", float("nan"))
        print(f"{name:>16} {secs:8.2f} {secs / eval_s:7.1f}" + ("" if hasattr(res, "seconds") else f"  {res}"))
    print(f"{'all attacks':>16} {total:8.2f} {total / eval_s:7.1f}   goal <= 6.0: "
          f"{'met' if total / eval_s <= 6 else 'missed'} (one model; the demo audits each method plus the target, "
          f"the oracle and the hide_q4 control)")


if __name__ == "__main__":
    main()
