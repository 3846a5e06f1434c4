"""Regenerate docs/experiments/tofu.md: the TOFU protocol on tiny models trained from the real
TOFU files, every TOFU baseline method, the TOFU metric suite and the audit.

    python docs/experiments/tofu.py [--authors N] [--split forget10] [--seed 0] [--out-run runs/tofu-doc]

It is `obliviate bench tofu --authors N --split S --attacks <these>` plus tables built from
results.json and the models' training logs. `--resume` continues an interrupted run in
`--out-run` (finished models are kept). The hand-written section of tofu.md, from its
"## What it shows" heading on, is kept as it is: rewrite it when the figures change.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OBLIVIATE_NO_PROGRESS", "1")

import torch  # noqa: E402

from obliviate.benchmarks import tofu  # noqa: E402
from obliviate.config import RunConfig  # noqa: E402
from obliviate.report.tables import audit_markdown  # noqa: E402

ATTACKS = ["rtn8", "rtn4", "bnb_fp4", "gptq4", "noise_int4", "rtt", "in_context", "paraphrase"]
NOTES = "## What it shows"  # the hand-written part of tofu.md, kept on regeneration
METRICS = ["forget_rouge", "forget_prob", "forget_truth_ratio", "forget_quality", "retain_rouge", "retain_prob",
           "model_utility", "privleak"]


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3g}" if abs(x) < 0.01 and x != 0 else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--authors", type=int, default=None, help="a reduced TOFU (default: all 200 authors)")
    ap.add_argument("--split", default="forget10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(tofu.DEFAULT_METHODS))
    ap.add_argument("--out-run", type=Path, default=Path("runs/tofu-doc"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("tofu.md"))
    ap.add_argument("--resume", action="store_true", help="continue the interrupted run in --out-run")
    args = ap.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS") or 2)
    torch.set_num_threads(threads)
    if not args.resume:
        shutil.rmtree(args.out_run, ignore_errors=True)
    cfg = RunConfig(seed=args.seed, methods=args.methods.split(","), audit={"attacks": ATTACKS})
    t0 = time.perf_counter()
    results = tofu.run(args.out_run, cfg, args.split, args.authors, resume=args.resume)
    total = time.perf_counter() - t0
    models = results["models"]
    reduced = f" --authors {args.authors}" if args.authors else ""
    command = f"python docs/experiments/tofu.py{reduced} --split {args.split} --seed {args.seed}"
    timing = (f"{total / 60:.0f} min in the process that finished it, after --resume" if args.resume
              else f"{total / 60:.0f} min including training")
    scope = f"{args.authors} retain authors" if args.authors else "all 200 authors, 4000 QA"
    lines = [f"# TOFU on tiny models trained from the real data ({args.split}, {scope})", "",
             f"Command: `{command}` ({threads} CPU thread(s), {timing}). "
             f"The same run from the CLI: `obliviate bench tofu --split {args.split}{reduced} "
             f"--attacks {','.join(ATTACKS)}`.", "",
             "## The models", "",
             "| model | QA trained on | parameters | epochs | ROUGE-L recall on its training QA | seconds |",
             "|---|---|---|---|---|---|"]
    for name in ("target", "oracle"):
        info = json.loads((Path(models[name]["path"]) / "train_log.json").read_text())
        lines.append(f"| {name} | {info['items']} | {info['parameters']:,} | {info['epochs']} | {info['acc']:.3f} | "
                     f"{info['seconds']} |")
    lines += ["", "## The TOFU suite", "",
              "| model | " + " | ".join(METRICS) + " | seconds |", "|---|" + "---|" * (len(METRICS) + 1)]
    for name, entry in models.items():
        secs = entry.get("unlearn", {}).get("seconds")
        lines.append(f"| {name} | " + " | ".join(_fmt(entry["metrics"].get(k)) for k in METRICS)
                     + f" | {_fmt(secs) if secs is not None else '-'} |")
    audit = json.loads((args.out_run / "audit.json").read_text())
    lines += ["", "## The audit (knowledge measure: ROUGE-L recall of the greedy answer)", "",
              audit_markdown(audit), ""]
    old = args.out.read_text() if args.out.is_file() else ""
    notes = old[old.index(NOTES):] if NOTES in old else ""
    args.out.write_text("\n".join(lines) + "\n" + (f"\n{notes}" if notes else ""))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
