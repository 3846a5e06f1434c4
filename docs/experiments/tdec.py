"""Regenerate docs/experiments/tdec.md: the TDEC benchmark (Jang et al. 2022) on the tiny target
trained from the real files, GA vs IHL vs FILA (LoKU's comparison), each unlearned until the
published stopping rule holds, with the 8/4-bit quantization audit.

    python docs/experiments/tdec.py [--data ../shared/data/tdec] [--forget-set 0] [--seed 0] [--out-run runs/tdec-doc]

It is `obliviate bench tdec --data DATA --forget-set K` (default methods ga, ihl, fila; audit
rtn8, rtn4) plus the tables below, built from results.json and the target's training log.
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

from obliviate.benchmarks import tdec  # noqa: E402
from obliviate.config import RunConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
METRICS = [("forget_ma", "forget MA"), ("forget_el10", "forget EL10"), ("unseen_ma", "unseen MA"),
           ("unseen_el10", "unseen EL10"), ("val_nll", "val NLL"), ("val_ma", "val MA"),
           ("forgotten", "rule met"), ("steps", "steps"), ("seconds", "seconds")]


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, int):
        return str(x)
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.3f}"


def findings(models: dict, th: dict, audit: dict | None) -> list[str]:
    """The numbers of this run in words, then what holds for any run of the tiny target."""
    t = models["target"]["metrics"]
    out = [f"- The target memorised its forget set (MA {t['forget_ma']:.3f}, EL10 {t['forget_el10']:.3f}) and "
           f"knows nothing of the unseen set (MA {th['ma']:.3f}, EL10 {th['el10']:.3f}); its validation (retain) "
           f"texts are memorised too (MA {t['val_ma']:.3f}, NLL {t['val_nll']:.3f})."]
    for name, e in models.items():
        if name == "target":
            continue
        m, u = e["metrics"], e["unlearn"]
        met = "met the stopping rule" if m["forgotten"] else "did NOT meet the stopping rule"
        out.append(f"- **{name}** {met} after {u['steps']} steps ({u['seconds']:.0f} s): forget MA "
                   f"{m['forget_ma']:.3f}, EL10 {m['forget_el10']:.3f}; validation NLL {t['val_nll']:.3f} -> "
                   f"{m['val_nll']:.3f}, validation MA {t['val_ma']:.3f} -> {m['val_ma']:.3f}.")
    for name, rows in (audit or {}).items():
        scored = [(a, r) for a, r in rows.items() if "unavailable" not in r]
        if not scored:
            continue
        if name == "target":
            out.append("- Audit control: the target's forget MA is " + ", ".join(
                f"{r['forget_ma']:.3f} under {a}" for a, r in scored) + f" (unquantized "
                f"{models['target']['metrics']['forget_ma']:.3f}).")
            continue
        rec = [(r.get("recovered_ma"), a) for a, r in scored if r.get("recovered_ma") is not None]
        rec = [(x, a) for x, a in rec if not math.isnan(x)]
        if rec:
            best, attack = max(rec)
            out.append(f"- Audit, **{name}**: the most any quantization brings back is {best:.0%} of the MA "
                       f"forgetting ({attack}); forget EL10 after it: "
                       + ", ".join(f"{a} {r['forget_el10']:.3f}" for a, r in scored) + ".")
    out += ["", "Caveats that hold for any run of this tiny setting:", "",
            "- ga has no retain term; ihl and fila train on the retain texts while they forget, so the "
            "validation columns compare a method with a retain loss against one without (as LoKU's table does).",
            "- `seconds` is the unlearning wall time including the stopping-rule checks (an MA pass after "
            "every step, EL10 generations once MA is below its threshold).",
            "- The tiny target has no general language ability: on unseen text it predicts little beyond "
            "frequent tokens, and its greedy continuations share no 10-gram with unseen text, so the EL10 "
            "threshold is (near) 0. The rule then asks for *no* 10-gram of any forget sequence to be "
            "regenerated from any sampled prefix — stricter than on a real LM such as GPT-Neo, which "
            "continues unseen text well enough for its unseen-text thresholds to lie above zero.",
            "- `val NLL` / `val MA` are on the retain texts, which the tiny target was trained on: they measure "
            "collateral forgetting of other memorised text, not held-out perplexity or the downstream "
            "accuracy the papers report.",
            "- One seed, one forget set, EL10 from 16 sampled prefixes per text, shared CPU: the seconds are "
            "indicative only."]
    return out


def tdec_audit(results: dict) -> dict | None:
    """{model: {attack: forget MA / EL10 under the attack and the MA `recovered` share}} from the shared
    audit's two K measures (results.json `audit.measures`)."""
    audit = results.get("audit")
    if not audit:
        return None
    ma, el = audit["measures"]["ma"]["models"], audit["measures"]["el10"]["models"]
    return {name: {a: r if "unavailable" in r else {
        "forget_ma": r["forget_acc"], "forget_el10": el.get(name, {}).get(a, {}).get("forget_acc", float("nan")),
        "recovered_ma": r["recovered"]} for a, r in rows.items()} for name, rows in ma.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "tdec")
    ap.add_argument("--forget-set", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(tdec.DEFAULT_METHODS))
    ap.add_argument("--out-run", type=Path, default=Path("runs/tdec-doc"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("tdec.md"))
    ap.add_argument("--from-run", action="store_true", help="rewrite the page from --out-run's results, no run")
    args = ap.parse_args()
    if args.from_run:
        results = json.loads((args.out_run / "results.json").read_text())
        wall = json.loads((args.out_run / "experiment.json").read_text())
    else:
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        shutil.rmtree(args.out_run, ignore_errors=True)
        cfg = RunConfig(seed=args.seed, methods=args.methods.split(","))
        t0 = time.perf_counter()
        results = tdec.run(args.out_run, cfg, args.data, forget_set=args.forget_set)
        wall = {"seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}
        (args.out_run / "experiment.json").write_text(json.dumps(wall))
    models, th = results["models"], results["thresholds"]
    info = json.loads((Path(models["target"]["path"]) / "train_log.json").read_text())
    m, t = tdec.TINY_MODEL, tdec.TINY_TRAIN
    command = f"python docs/experiments/tdec.py --forget-set {args.forget_set} --seed {args.seed}"
    lines = [f"# TDEC on a tiny target trained from the real files (forget set {args.forget_set})", "",
             f"Command: `{command}` ({wall['threads']} CPU thread(s), shared machine; {wall['seconds'] / 60:.0f} min "
             f"in all, of which the target's training {info['seconds'] / 60:.1f} min when not cached). The same "
             f"run from the CLI: `obliviate bench tdec --data DATA --forget-set {args.forget_set}`.", "",
             "## Setup", "",
             f"- forget: the 32 sequences of `lm_extraction_32_{args.forget_set}.csv`; unseen (the thresholds): "
             f"the 32 of `lm_extraction_32_{results['sources']['unseen']}.csv`, never trained; retain / validation: "
             f"the first {tdec.RETAIN_PER_SET} texts of each of pile, wikitext and lambada validation "
             f"({len(models['target']['per_item']['validation']['nll'])} texts).",
             f"- every text cut to its first {tdec.TINY_MAX_TOKENS} tokens of a {m.vocab_size}-token byte-level BPE "
             "trained on the five TDEC files and the retain texts.",
             f"- target: Llama, hidden {m.hidden_size} x {m.num_hidden_layers} layers, {info['parameters']:,} "
             f"parameters, trained from scratch on forget + retain for {info['epochs']} epochs (lr {t.lr:g}, batch "
             f"{t.batch_size}).",
             f"- EL10 estimated from {tdec.EL_PREFIXES} evenly spaced prefix lengths per text (the same estimator "
             "for the thresholds, the stopping checks and the table).",
             "- unlearning: until forget MA <= unseen MA and forget EL10 <= unseen EL10 of the target (checked "
             f"after every optimizer step), capped at {tdec.TINY_UNLEARN.epochs} epochs; batches of "
             f"{tdec.TINY_UNLEARN.batch_size} forget texts (+ {tdec.TINY_UNLEARN.retain_batch_size} retain texts "
             f"for ihl and fila); per-method settings `TINY_METHOD_DEFAULTS`: "
             + "; ".join(f"{n} lr {models[n]['unlearn']['lr']:g}" + (f" {models[n]['unlearn']['params']}"
                                                                   if models[n]['unlearn']['params'] else "")
                         for n in models if n != "target") + ".", "",
             f"Thresholds (the target on unseen text): MA {th['ma']:.3f}, EL10 {th['el10']:.3f}.", "",
             "## Results", "",
             "| model | " + " | ".join(label for _, label in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, entry in models.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(entry["metrics"].get(k)) for k, _ in METRICS) + " |")
    lines += ["", "Unlearning runs:", ""]
    lines += [f"- **{n}**: {e['unlearn']['status']}, {e['unlearn']['message']}" for n, e in models.items()
              if "unlearn" in e]
    audit = tdec_audit(results)
    if audit:
        attacks = results["audit"]["attacks"]
        lines += ["", "## Audit: forget MA / EL10 after weight quantization", "",
                  "(share of the MA forgetting undone, (MA(A(U)) - MA(U)) / (MA(T) - MA(U)), in brackets)", "",
                  "| model | " + " | ".join(attacks) + " |", "|---|" + "---|" * len(attacks)]
        for name, rows in audit.items():
            cells = []
            for a in attacks:
                r = rows[a]
                if "unavailable" in r:
                    cells.append("n/a")
                    continue
                rec = r.get("recovered_ma", float("nan"))
                extra = "" if name == "target" or rec is None or math.isnan(rec) else f" ({rec:.0%})"
                cells.append(f"{r['forget_ma']:.3f} / {r['forget_el10']:.3f}{extra}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## What it shows", ""] + findings(models, th, audit) + [""]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
