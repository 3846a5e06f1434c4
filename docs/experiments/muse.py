"""Regenerate docs/experiments/muse.md: the audit on MUSE-News (Shi et al. 2024) with MUSE's own
knowledge measures, on the tiny target/oracle trained from the real files.

    python docs/experiments/muse.py [--data ../shared/data/muse-news] [--articles 12] [--seed 0] \
        [--out-run runs/muse-doc]

It is `obliviate bench muse --data DATA --articles N --probed-articles --methods ga,gd,npo,npo_kl
--attacks rtn4,bnb_fp4,gptq4,rtt` (the tiny MUSE model and its per-method settings) plus the
tables below, built from results.json and audit.json. The question it asks is the quantization
paper's (Zhang et al. 2025, MUSE-News): does 4-bit quantization bring back what unlearning
removed, measured by KnowMem and VerbMem on the forget set, and does relearning (RTT)?
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path

os.environ.setdefault("OBLIVIATE_NO_PROGRESS", "1")

from obliviate.benchmarks import muse  # noqa: E402
from obliviate.config import AuditConfig, RunConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
METHODS = ["ga", "gd", "npo", "npo_kl"]
# Smaller than the MUSE default tiny model (hidden 256, 4 layers: `muse.MUSE_MODEL`), so that the
# run fits a shared 2-core CPU: it still memorises the articles (see the target's VerbMem), and
# its linears stay multiples of 64/128 for bitsandbytes FP4 and GPTQ's group 128.
MODEL = {"vocab_size": 2048, "hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2,
         "num_attention_heads": 2, "max_position_embeddings": 512}
TRAIN = {"lr": 3e-3, "batch_size": 16, "max_epochs": 20, "min_epochs": 20, "check_every": 20,
         "stop_metric": "rouge", "check_items": 1}
ATTACKS = ["rtn4", "bnb_fp4", "gptq4", "rtt"]


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"


def _cell(row: dict | None, control: bool) -> str:
    """K under the attack (and, for a method, the recovered share beyond the oracle's gain), or n/a."""
    if not row:
        return "-"
    if "unavailable" in row:
        return "n/a"
    rec = None if control else row.get("recovered_net")
    return _fmt(row["forget_acc"]) + ("" if rec is None or math.isnan(rec) else f" ({rec:.0%})")


def tables(results: dict, audit: dict) -> tuple[list[str], list[str]]:
    """(the benchmark's own table, one audit table per K measure)."""
    cols = results["columns"]
    lines = ["| model | " + " | ".join(f"{label} {better}" for _, label, better in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for name, e in results["models"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(e["metrics"].get(k)) for k, _, _ in cols) + " |")
    own, lines = lines, []
    for m in audit["measures"].values():
        lines += ["", f"### K = {m['label']}", "",
                  "Each cell: K of the attacked model on the forget probes (rtt: the probes of the held-out "
                  "windows) and, for methods, the share of the forgetting the attack undoes beyond what it "
                  "gives the oracle (`recovered_net`; `-` when nothing was forgotten).", "",
                  "| model | before | " + " | ".join(audit["attacks"]) + " | verdict |",
                  "|---|---|" + "---|" * len(audit["attacks"]) + "---|"]
        for name, rows in m["models"].items():
            before = m["baseline"][name]["forget_acc"]
            lines.append(f"| {name} | {_fmt(before)} | " + " | ".join(_cell(rows.get(a), name in ("target", "oracle"))
                                                             for a in audit["attacks"])
                         + f" | {m['verdicts'].get(name, 'control')} |")
        reasons = {a: r["unavailable"] for rows in m["models"].values() for a, r in rows.items()
                   if "unavailable" in r}
        lines += [f"- n/a `{a}`: {why}" for a, why in reasons.items()]
    return own, lines


def quantization_lines(audit: dict) -> list[str]:
    out = []
    for method in audit["verdicts"]:
        parts = []
        for m in audit["measures"].values():
            before = m["baseline"][method]["forget_acc"]
            q = [f"{a} {_fmt(m['models'][method][a].get('forget_acc'))}"
                 for a in audit["attacks"] if a != "rtt" and "unavailable" not in m["models"][method][a]]
            parts.append(f"{m['label'].split(' (')[0]}-forget {_fmt(before)} → " + (", ".join(q) or "n/a"))
        out.append(f"- **{method}**: " + "; ".join(parts))
    return out


def findings(results: dict, audit: dict) -> list[str]:
    """This run's VerbMem numbers in words (KnowMem: see below)."""
    m = audit["measures"]["verbmem"]
    t = m["baseline"]["target"]["forget_acc"]
    o = m["baseline"]["oracle"]["forget_acc"]
    out = [f"- VerbMem-forget: target {t:.3f}, oracle {o:.3f}."]
    for method in audit["verdicts"]:
        rows, before = m["models"][method], m["baseline"][method]["forget_acc"]
        quant = [(a, r["forget_acc"]) for a, r in rows.items() if a != "rtt" and "unavailable" not in r]
        delta = max((abs(k - before), a, k) for a, k in quant) if quant else None
        rtt = rows.get("rtt", {})
        rtt_t = m["models"]["target"].get("rtt", {})
        out.append(f"- **{method}**: VerbMem-forget {before:.3f} ({m['verdicts'][method]})"
                   + (f"; the largest 4-bit change is {delta[1]} → {delta[2]:.3f}" if delta else "")
                   + (f"; after rtt its held-out probes score {rtt['forget_acc']:.3f} (the target's after the same "
                      f"attack: {rtt_t.get('forget_acc', float('nan')):.3f}, n = {rtt.get('n_probed')})"
                      if "forget_acc" in rtt else "") + ".")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "muse-news")
    ap.add_argument("--articles", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-run", type=Path, default=ROOT / "runs" / "muse-doc")
    ap.add_argument("--from-run", action="store_true", help="rewrite the page from --out-run's files, no run")
    args = ap.parse_args()
    if args.from_run:
        results = json.loads((args.out_run / "results.json").read_text())
        audit = json.loads((args.out_run / "audit.json").read_text())
        (ROOT / "docs" / "experiments" / "muse.md").write_text("\n".join(page(args, results, audit, None)))
        return
    if args.out_run.exists():
        shutil.rmtree(args.out_run)
    cfg = RunConfig(seed=args.seed, methods=METHODS, save_models=False, audit=AuditConfig(attacks=ATTACKS),
                    model=MODEL, train=TRAIN)
    load = os.getloadavg()
    t0 = time.perf_counter()
    results = muse.run(args.out_run, cfg, args.data, articles=args.articles, probed=True,
                       command=f"python docs/experiments/muse.py --articles {args.articles} --seed {args.seed}")
    run = {"node": platform.node() or "unknown", "platform": platform.platform(), "cpus": os.cpu_count(),
           "load_start": load[0], "load_end": os.getloadavg()[0], "minutes": (time.perf_counter() - t0) / 60}
    (args.out_run / "doc_run.json").write_text(json.dumps(run))
    audit = json.loads((args.out_run / "audit.json").read_text())
    (ROOT / "docs" / "experiments" / "muse.md").write_text("\n".join(page(args, results, audit, run)))
    print("wrote docs/experiments/muse.md")


def page(args, results: dict, audit: dict, run: dict | None) -> list[str]:
    """The page's lines from a run directory's results.json / audit.json and the run's machine record."""
    run = run or json.loads((args.out_run / "doc_run.json").read_text())
    p = results["probes"]
    own, audit_tables = tables(results, audit)
    return [
        "# MUSE-News: is it forgotten, or hidden? (tiny models)", "",
        "Generated by `python docs/experiments/muse.py --articles "
        f"{args.articles} --seed {args.seed}` (= `obliviate bench muse --data muse-news --articles {args.articles} "
        "--probed-articles --methods ga,gd,npo,npo_kl --attacks rtn4,bnb_fp4,gptq4,rtt` with a run file "
        f"setting `model: {MODEL}` and `train: {TRAIN}`: a smaller tiny model than MUSE's default, so the run "
        "fits a shared CPU).", "",
        f"Machine: {run['node']} ({run['platform']}, {run['cpus']} CPU cores shared with other engineers' jobs, no "
        f"GPU); load average {run['load_start']:.1f} at the start, {run['load_end']:.1f} at the end; "
        f"{run['minutes']:.1f} minutes in all (the tiny target and oracle came from the cache: trained before, "
        "18 and under 4 minutes under a load of about 10).", "",
        f"Data: the first {p['articles']} forget articles that hold a VerbMem probe → {p['forget_windows']} forget "
        f"windows of {p['window_tokens']} tokens, {p['retain_windows']} retain windows; {p['verbmem']} VerbMem "
        f"probes, {p['knowmem_forget']} KnowMem forget / {p['knowmem_retain']} retain questions (the audit's "
        f"retain control: the first {muse.AUDIT_RETAIN}); PrivLeak members: {p['privleak_member_source']}.", "",
        "## The benchmark's own metrics", "", *own, "",
        "## The audit", "", *audit_tables, "",
        "## 4-bit quantization, per method", "",
        "K of the unlearned model on the forget probes, then under each 4-bit attack:", "",
        *quantization_lines(audit), "",
        "## What this run shows", "", *findings(results, audit), "",
        "## What this shows, and what it does not", "",
        "- The tiny model memorises the articles but has never seen a question, so KnowMem is near 0 for the "
        "target too: nothing can be forgotten or recovered on it, and the quantization paper's KnowMem "
        "result (NPO_KLR 36.6 → 53.7 at 4-bit on Llama-2-7B) can only be checked with the real MUSE models "
        "on a GPU (`--model muse-bench/MUSE-news_target --oracle muse-bench/MUSE-news_retrain`; not run here).",
        "- VerbMem is the tiny model's signal: the target continues its articles more verbatim than the oracle.",
        "- With `MUSE_METHOD_DEFAULTS` (tuned on the default tiny model, not on this smaller one) no method halves "
        "VerbMem-forget, so the verdicts say \"did not forget\" and the recovery percentages are shares of a "
        "small gap: read the K values, not the percentages.",
        "- `rtt` relearns half of the forget windows and scores the VerbMem/KnowMem probes tied to the other "
        "half; with few probes per half its numbers are noisy (`n_probed` in audit.json).",
        "- One seed; npo_kl's per-method setting was not swept.", "",
    ]


if __name__ == "__main__":
    main()
