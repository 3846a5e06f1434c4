"""Regenerate docs/experiments/methods.md: every registered method on the embedded world
(10% forget) at its documented defaults, with the audit's recovery under 4-bit quantization,
relearning and in-context hints, and each method's wall time.

    python docs/experiments/methods.py [--seed 0] [--out-run runs/methods]

It is `obliviate demo --methods <all> --attacks <these>` plus a table built from results.json.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
from pathlib import Path

os.environ.setdefault("OBLIVIATE_NO_PROGRESS", "1")

import torch  # noqa: E402

from obliviate.config import RunConfig  # noqa: E402
from obliviate.methods import available  # noqa: E402
from obliviate.pipeline import run_world  # noqa: E402

ATTACKS = ["bnb_fp4", "rtn4", "gptq4", "rtt", "in_context"]
METRICS = ["forget_acc", "retain_acc", "forget_quality", "model_utility"]


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) < 1e-12:  # floating-point dust from differences of equal accuracies
        return "0.000"
    return f"{x:.3g}" if abs(x) < 0.01 and x != 0 else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-run", type=Path, default=Path("runs/methods"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("methods.md"))
    ap.add_argument("--methods", default=None, help="comma-separated subset (default: every registered method)")
    ap.add_argument("--append", action="store_true",
                    help="add the rows as a section of the existing page instead of rewriting it")
    args = ap.parse_args()
    torch.set_num_threads(2)
    methods = args.methods.split(",") if args.methods else list(available())
    shutil.rmtree(args.out_run, ignore_errors=True)
    cfg = RunConfig(seed=args.seed, methods=methods, audit={"attacks": ATTACKS})
    results = run_world(cfg, args.out_run, log=print)
    head = ["method", *METRICS, *(f"recovered {a}" for a in ATTACKS), "steps", "seconds", "peak MiB", "verdict"]
    command = f"python docs/experiments/methods.py --seed {args.seed}" + (
        f" --methods {args.methods} --append" if args.append else "")
    title = (f"## Added later: {', '.join(methods)}" if args.append
             else "# Methods compared on the embedded world (10% forget)")
    lines = [title, "",
             f"Command: `{command}` (2 CPU threads). "
             "Each method runs at its defaults (obliviate/config.py WORLD_METHOD_DEFAULTS); "
             "`recovered` = the share of the forgetting the attack undoes beyond what it gives the oracle.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdicts = results["audit"]["verdicts"]
    for name, entry in results["models"].items():
        m, audit, u = entry["metrics"], entry.get("audit", {}), entry.get("unlearn") or {}
        rec = [("n/a" if "unavailable" in audit.get(a, {}) else _fmt(audit.get(a, {}).get("recovered_net")))
               if name not in ("target", "oracle") else "-" for a in ATTACKS]
        lines.append("| " + " | ".join([name, *(_fmt(m.get(k)) for k in METRICS), *rec, str(u.get("steps", "-")),
                                        str(u.get("seconds", "-")), str(u.get("peak_memory_mb", "-")),
                                        verdicts.get(name, "control")]) + " |")
    lines += ["", "Peak MiB: the extra resident memory of the unlearning run above the process's level before it "
              "(obliviate/memory.py: sampled every 5 ms on CPU; on a GPU the allocator's exact peak). Methods that "
              "keep a reference model (KL terms), an optimizer state for every weight, or a second backward pass "
              "need more; the tiny model makes the differences small in absolute terms."]
    text = "\n".join(lines) + "\n"
    if args.append:
        text = args.out.read_text().rstrip("\n") + "\n\n" + text
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
