"""Regenerate docs/experiments/quantization_table.md: does quantization bring forgotten facts back?

The experiment of Zhang et al. 2025 ("Catastrophic Failure of LLM Unlearning via Quantization")
on the embedded world: each method at a sweep of learning rates (smaller lr, more epochs), then
forget/retain accuracy at full precision and after 8-bit and 4-bit weight quantization, the
share of the forgetting each quantization undoes (net of the oracle), and the mechanism: the
fraction of int4 codes that differ between the target and the unlearned model, and the mean
weight change in units of the int4 step.

    python docs/experiments/quantization.py [--seed 0] [--methods ga,gd,npo,npo_gd,npo_kl]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OBLIVIATE_NO_PROGRESS", "1")

import torch  # noqa: E402

from obliviate.attacks.quantize import mean_step_ratio, quantized_change_fraction  # noqa: E402
from obliviate.audit import probe, run_attacks, score_audit  # noqa: E402
from obliviate.config import RunConfig  # noqa: E402
from obliviate.data.world import generate_world, world_corpus  # noqa: E402
from obliviate.models.load import load_model  # noqa: E402
from obliviate.models.prepare import prepare_tiny_models  # noqa: E402
from obliviate.unlearn import unlearn  # noqa: E402

# lr -> epochs: smaller steps get more of them ("steps to match")
SCHEDULE = {1e-5: 40, 3e-5: 20, 1e-4: 10, 3e-4: 10, 1e-3: 5}
ATTACKS = ["rtn8", "bnb_int8", "rtn4", "bnb_fp4", "gptq4"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="ga,gd,npo,npo_gd,npo_kl")
    ap.add_argument("--lrs", default=",".join(f"{lr:g}" for lr in SCHEDULE))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("quantization_table.md"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = RunConfig(seed=args.seed)
    task = generate_world(cfg.world.model_copy(update={"seed": args.seed}))
    dirs = prepare_tiny_models(task, world_corpus(task), cfg.model, cfg.train, args.seed)
    tok = None
    base, attacked, models = {}, {}, {}
    for name in ("target", "oracle"):
        model, tok = load_model(dirs[name])
        models[name] = model
        base[name] = probe(model, tok, task, None, cfg.eval)
        attacked[name] = run_attacks(model, tok, task, ATTACKS, cfg.eval, args.seed, dirs[name])
    head = ["method", "lr", "epochs", "forget fp32", "retain fp32"]
    head += [f"forget {a}" for a in ATTACKS] + [f"recovered {a}" for a in ATTACKS]
    head += ["changed int4 codes", "mean |ΔW| / int4 step"]
    lines = ["# Quantization recovers forgotten facts? (embedded world, tiny Llama)", "",
             f"Command: `python docs/experiments/quantization.py --seed {args.seed} --methods {args.methods}`", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in ("target", "oracle"):
        acc = [f"{attacked[name][a].forget_correct.mean():.2f}" if not isinstance(attacked[name][a], str) else "n/a"
               for a in ATTACKS]
        lines.append(f"| {name} | - | - | {base[name].forget_correct.mean():.2f} | {base[name].retain_acc:.2f} | "
                     + " | ".join(acc) + " |" + " - |" * len(ATTACKS) + " - | - |")
    for method in args.methods.split(","):
        for lr in (float(x) for x in args.lrs.split(",")):
            epochs = SCHEDULE.get(lr, 10)
            ucfg = cfg.unlearn_config(method).model_copy(update={"lr": lr, "epochs": epochs,
                                                                 "stop_forget_acc": None})
            model, tok = load_model(dirs["target"])
            t0 = time.perf_counter()
            unlearn(model, tok, task, ucfg)
            b = probe(model, tok, task, None, cfg.eval)
            att = run_attacks(model, tok, task, ATTACKS, cfg.eval, args.seed)
            table = score_audit(task, {**base, "u": b}, {**attacked, "u": att})["u"]

            def cell(a: str, key: str, fmt: str, table=table) -> str:
                r = table[a]
                return "n/a" if "unavailable" in r else format(r[key], fmt)

            row = [method, f"{lr:g}", str(epochs), f"{b.forget_correct.mean():.2f}", f"{b.retain_acc:.2f}"]
            row += [cell(a, "forget_acc", ".2f") for a in ATTACKS] + [cell(a, "recovered_net", ".0%") for a in ATTACKS]
            row += [f"{quantized_change_fraction(models['target'], model, bits=4):.2%}",
                    f"{mean_step_ratio(models['target'], model, bits=4):.3f}"]
            lines.append("| " + " | ".join(row) + " |")
            print(lines[-1], f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    lines += ["", "recovered = ((K(A(U)) - K(U)) - max(0, K(A(O)) - K(O))) / (K(T) - K(U)): the share of the "
              "forgetting that quantizing undoes, beyond what quantizing does to the oracle; K = forget "
              "accuracy, clipped to [0, 1]; n/a = the attack cannot run here (see audit.json for why)."]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
