"""Regenerate docs/experiments/tofu.md: the TOFU protocol on tiny models trained from the real
TOFU files, every TOFU baseline method, the TOFU metric suite and the audit.

    python docs/experiments/tofu.py [--authors N] [--split forget10] [--seed 0] [--out-run runs/tofu-doc]
                                    [--other-splits forget01,forget05] [--resume]

It is `obliviate bench tofu --authors N --split S --attacks <these>` plus tables built from
results.json and the models' training logs; `--other-splits` adds the same methods on other
splits, each against its own oracle and without the audit (`--no-audit`; run directories
`<out-run>-<split>`), in one table. `--resume` continues interrupted runs and reads finished
ones as they are (nothing is rerun). The hand-written section of tofu.md, from its
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
SPLIT_METRICS = ["forget_quality", "forget_rouge", "forget_truth_ratio", "retain_rouge", "model_utility", "privleak"]
METRICS = ["forget_rouge", "forget_prob", "forget_truth_ratio", "forget_quality", "retain_rouge", "retain_prob",
           "model_utility", "privleak"]


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3g}" if abs(x) < 0.01 and x != 0 else f"{x:.3f}"


LEDGER = "doc_seconds.json"  # wall seconds of each process that worked on a run (--resume adds one)


def _run(out: Path, cfg: RunConfig, split: str, authors: int | None, resume: bool) -> tuple[dict, list[float]]:
    """A run's results and the wall seconds of every process that worked on it (none for a run
    this process only read)."""
    from obliviate.report.results import load_results

    ledger = out / LEDGER
    if not resume:
        shutil.rmtree(out, ignore_errors=True)
    before = json.loads(ledger.read_text()) if ledger.is_file() else []
    if resume and (out / "results.json").is_file():
        done = load_results(out)
        if done.get("status") == "done":
            return done, before
    t0 = time.perf_counter()
    try:
        results = tofu.run(out, cfg, split, authors, resume=resume)
    finally:  # an interrupted process's time counts too
        spent = before + [round(time.perf_counter() - t0)]
        if out.is_dir():
            ledger.write_text(json.dumps(spent))
    return results, spent


def _timing(spent: list[float]) -> str:
    if not spent:
        return "time not recorded"
    return (f"{sum(spent) / 60:.0f} min" + (f" over {len(spent)} processes (--resume)" if len(spent) > 1 else ""))


def _split_rows(split: str, results: dict) -> list[str]:
    rows = []
    for name, entry in results["models"].items():
        m = entry["metrics"]
        secs = (entry.get("unlearn") or {}).get("seconds")
        rows.append(f"| {split} | {name} | " + " | ".join(_fmt(m.get(k)) for k in SPLIT_METRICS)
                    + f" | {_fmt(secs) if secs is not None else '-'} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--authors", type=int, default=None, help="a reduced TOFU (default: all 200 authors)")
    ap.add_argument("--split", default="forget10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(tofu.DEFAULT_METHODS))
    ap.add_argument("--out-run", type=Path, default=Path("runs/tofu-doc"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("tofu.md"))
    ap.add_argument("--other-splits", default="", help="e.g. forget01,forget05: the methods there too, no audit")
    ap.add_argument("--resume", action="store_true", help="continue interrupted runs; read finished ones")
    args = ap.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS") or 2)
    torch.set_num_threads(threads)
    cfg = RunConfig(seed=args.seed, methods=args.methods.split(","), audit={"attacks": ATTACKS})
    results, spent = _run(args.out_run, cfg, args.split, args.authors, args.resume)
    others = [s for s in args.other_splits.split(",") if s]
    split_runs, split_spent = {}, {}
    for split in others:
        no_audit = cfg.model_copy(update={"audit": cfg.audit.model_copy(update={"enabled": False})})
        split_runs[split], split_spent[split] = _run(args.out_run.with_name(f"{args.out_run.name}-{split}"),
                                                     no_audit, split, args.authors, args.resume)
    models = results["models"]
    reduced = f" --authors {args.authors}" if args.authors else ""
    other = f" --other-splits {','.join(others)}" if others else ""
    command = f"python docs/experiments/tofu.py{reduced} --split {args.split}{other} --seed {args.seed}"
    timing = _timing(spent) + ", training any model not yet cached included" + "".join(
        f"; {split}: {_timing(t)}" for split, t in split_spent.items())
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
    if split_runs:
        lines += ["## Every split against its own oracle (no audit)", "",
                  f"The same methods and settings on {', '.join(split_runs)} (`obliviate bench tofu --split S "
                  "--no-audit`), beside the audited split. Forget quality is the KS test against that split's "
                  "oracle (retain99 / retain95 / retain90).", "",
                  "| split | model | " + " | ".join(SPLIT_METRICS) + " | unlearn seconds |",
                  "|---|---|" + "---|" * (len(SPLIT_METRICS) + 1)]
        for split, res in [*split_runs.items(), (args.split, results)]:
            lines += _split_rows(split, res)
        lines.append("")
    old = args.out.read_text() if args.out.is_file() else ""
    notes = old[old.index(NOTES):] if NOTES in old else ""
    args.out.write_text("\n".join(lines) + "\n" + (f"\n{notes}" if notes else ""))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
