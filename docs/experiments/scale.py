"""Regenerate docs/experiments/scale.md: where does the quantization effect appear as models grow?

Zhang et al. 2025 ("Catastrophic Failure of LLM Unlearning via Quantization") saw 4-bit
quantization restore forgotten knowledge on 7B models unlearned at lr ~1e-5 with a utility term:
many small weight changes, each smaller than half an int4 step, that rounding undoes. Tiny models
unlearned at large lrs move weights across bins and show no such effect
(docs/experiments/quantization.md). This experiment walks a width ladder on the embedded world
(hidden 128 / 256 / 512, intermediate 4x, same depth and data, each trained to the same greedy
accuracy and cached), unlearns with gd, npo_gd and npo_kl at lr 1e-5 / 3e-5 / 1e-4 until fp32
forget accuracy falls below 0.5 (checked every 5 steps, up to an epoch cap per lr), and measures
forget accuracy under rtn4, bnb_fp4, gptq4 and rtn8, the recovered share with its 95% bootstrap
interval over the forget items, the share of changed int4 codes and the mean |dW| in int4 steps.
Then `qau` and `sure` on the (width, lr) where recovery was largest.

    python docs/experiments/scale.py run [--widths 128,256,512] [--seed 0]   # resumable: rows cached
    python docs/experiments/scale.py followup                                   # qau, sure on the worst row
    python docs/experiments/scale.py render                                     # scale.md from the rows

Rows are appended to `scale_rows.jsonl` (beside this file) as they finish, with the per-item
correctness arrays, so `render` recomputes every interval and a killed run loses one row at most.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OBLIVIATE_NO_PROGRESS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
ROWS = HERE / "scale_rows.jsonl"
ATTACKS = ["rtn4", "bnb_fp4", "gptq4", "rtn8"]
METHODS = ["gd", "npo_gd", "npo_kl"]
EPOCH_CAP = {1e-5: 150, 3e-5: 80, 1e-4: 30}  # smaller steps get more of them


def _models(width: int, seed: int):
    from obliviate.config import RunConfig
    from obliviate.data.world import generate_world, world_corpus
    from obliviate.models.prepare import prepare_tiny_models

    cfg = RunConfig(seed=seed)
    model_cfg = cfg.model.model_copy(update={"hidden_size": width, "intermediate_size": 4 * width,
                                             "num_attention_heads": max(4, width // 64)})
    # wider models are trained with a smaller lr (3e-3 diverges at width 512 in a few steps)
    train_cfg = cfg.train.model_copy(update={"lr": 3e-3 * (128 / width) ** 0.5, "max_epochs": 120})
    task = generate_world(cfg.world.model_copy(update={"seed": seed}))
    t0 = time.perf_counter()
    dirs = prepare_tiny_models(task, world_corpus(task), model_cfg, train_cfg, seed, True, print)
    return cfg, task, dirs, time.perf_counter() - t0


def _done() -> set[tuple]:
    if not ROWS.is_file():
        return set()
    return {(r["width"], r["method"], r["lr"]) for r in map(json.loads, ROWS.read_text().splitlines())}


def _append(row: dict) -> None:
    with ROWS.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _audit_row(width, method, lr, ucfg, cfg, task, dirs, base, attacked, target_model, seed):
    from obliviate.attacks.quantize import mean_step_ratio, quantized_change_fraction
    from obliviate.audit import probe, run_attacks
    from obliviate.models.load import load_model
    from obliviate.unlearn import unlearn

    model, tok = load_model(dirs["target"])
    t0 = time.perf_counter()
    log = unlearn(model, tok, task, ucfg)
    secs = time.perf_counter() - t0
    b = probe(model, tok, task, None, cfg.eval)
    att = run_attacks(model, tok, task, ATTACKS, cfg.eval, seed)
    row = {"width": width, "method": method, "lr": lr, "steps": log.steps, "status": log.status,
           "message": log.message, "unlearn_seconds": round(secs, 1),
           "params": sum(p.numel() for p in model.parameters()),
           "forget": b.forget_correct.tolist(), "retain_acc": b.retain_acc,
           "attacked": {a: (r if isinstance(r, str) else {"forget": r.forget_correct.tolist(),
                                                          "index": r.forget_index, "retain_acc": r.retain_acc})
                        for a, r in att.items()},
           "changed_int4": quantized_change_fraction(target_model, model, bits=4),
           "step_ratio_int4": mean_step_ratio(target_model, model, bits=4)}
    print(f"width {width} {method} lr {lr:g}: {log.steps} steps ({log.status}) forget "
          f"{b.forget_correct.mean():.2f} retain {b.retain_acc:.2f} "
          + " ".join(f"{a} {np.mean(r['forget']):.2f}" for a, r in row["attacked"].items() if isinstance(r, dict))
          + f" [{time.perf_counter() - t0:.0f} s]", flush=True)
    return row


def _controls(cfg, task, dirs, seed):
    from obliviate.audit import probe, run_attacks
    from obliviate.models.load import load_model

    base, attacked, models = {}, {}, {}
    for name in ("target", "oracle"):
        model, tok = load_model(dirs[name])
        models[name] = model
        base[name] = probe(model, tok, task, None, cfg.eval)
        attacked[name] = run_attacks(model, tok, task, ATTACKS, cfg.eval, seed, dirs[name])
    return base, attacked, models


def _control_row(width, name, p, att, train_seconds):
    return {"width": width, "method": name, "lr": None, "train_seconds": round(train_seconds, 1),
            "forget": p.forget_correct.tolist(), "retain_acc": p.retain_acc,
            "attacked": {a: (r if isinstance(r, str) else {"forget": r.forget_correct.tolist(),
                                                           "index": r.forget_index, "retain_acc": r.retain_acc})
                         for a, r in att.items()}}


def run(args) -> None:
    torch.set_num_threads(args.threads)
    done = _done()
    for width in (int(w) for w in args.widths.split(",")):
        cfg, task, dirs, train_s = _models(width, args.seed)
        base, attacked, models = _controls(cfg, task, dirs, args.seed)
        for name in ("target", "oracle"):
            if (width, name, None) not in done:
                _append(_control_row(width, name, base[name], attacked[name], train_s))
        for method in args.methods.split(","):
            for lr in (float(x) for x in args.lrs.split(",")):
                if (width, method, lr) in done:
                    continue
                ucfg = cfg.unlearn_config(method).model_copy(update={
                    "lr": lr, "epochs": EPOCH_CAP.get(lr, 30), "stop_forget_acc": 0.45, "check_every": 5,
                    "seed": args.seed})
                _append(_audit_row(width, method, lr, ucfg, cfg, task, dirs, base, attacked, models["target"],
                                   args.seed))


def followup(args) -> None:
    """qau and sure at the (width, lr) whose largest 4-bit recovery was largest."""
    torch.set_num_threads(args.threads)
    rows = [json.loads(x) for x in ROWS.read_text().splitlines()]
    scored = [(max(_recovered(r, rows, a)[0] for a in ("rtn4", "bnb_fp4", "gptq4")), r) for r in rows
              if r["lr"] is not None and r["method"] in METHODS]
    scored = [(s, r) for s, r in scored if np.isfinite(s)]
    if not scored:
        print("no scored row")
        return
    _, worst = max(scored, key=lambda t: t[0])
    width, lr = worst["width"], worst["lr"]
    cfg, task, dirs, _ = _models(width, args.seed)
    base, attacked, models = _controls(cfg, task, dirs, args.seed)
    done = _done()
    for method in ("qau", "sure"):
        if (width, method, lr) in done:
            continue
        ucfg = cfg.unlearn_config(method).model_copy(update={
            "lr": lr, "epochs": EPOCH_CAP.get(lr, 30), "stop_forget_acc": 0.45, "check_every": 5, "seed": args.seed})
        _append(_audit_row(width, method, lr, ucfg, cfg, task, dirs, base, attacked, models["target"], args.seed))


def _control(rows, width, name):
    return next(r for r in rows if r["width"] == width and r["method"] == name)


def _recovered(row, rows, attack, n_boot: int = 1000, seed: int = 0):
    """recovered_net and its 95% paired bootstrap interval over the forget items."""
    from obliviate.audit import recovery_scores

    att, t, o = row["attacked"].get(attack), _control(rows, row["width"], "target"), _control(rows, row["width"], "oracle")
    if not isinstance(att, dict) or not isinstance(o["attacked"].get(attack), dict):
        return float("nan"), (float("nan"), float("nan"))
    u, a = np.array(row["forget"]), np.array(att["forget"])
    kt, ko, ao = np.array(t["forget"]), np.array(o["forget"]), np.array(o["attacked"][attack]["forget"])

    def score(idx):
        return recovery_scores(a[idx].mean(), u[idx].mean(), kt[idx].mean(), ko[idx].mean(),
                               ao[idx].mean())["recovered_net"]

    n = len(u)
    point = score(np.arange(n))
    rng = np.random.default_rng(seed)
    boots = np.array([score(rng.integers(0, n, n)) for _ in range(n_boot)])
    boots = boots[np.isfinite(boots)]
    ci = (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))) if boots.size else (np.nan, np.nan)
    return point, ci


def render(args) -> None:
    rows = [json.loads(x) for x in ROWS.read_text().splitlines()]
    widths = sorted({r["width"] for r in rows})
    lines = ["# Where does the quantization effect appear as models grow? (embedded world)", "",
             "Command: `python docs/experiments/scale.py run && python docs/experiments/scale.py followup && "
             "python docs/experiments/scale.py render`", "",
             f"Machine: {args.machine}.", "",
             "## Models", "", "| hidden | parameters | training time, target + oracle (s) | target forget/retain | "
             "oracle forget/retain |", "|---|---|---|---|---|"]
    for w in widths:
        t, o = _control(rows, w, "target"), _control(rows, w, "oracle")
        params = next((r["params"] for r in rows if r["width"] == w and "params" in r), None)
        lines.append(f"| {w} | {params / 1e6:.1f}M | {t['train_seconds']:.0f} | {np.mean(t['forget']):.2f} / "
                     f"{t['retain_acc']:.2f} | {np.mean(o['forget']):.2f} / {o['retain_acc']:.2f} |"
                     if params else f"| {w} | - | {t['train_seconds']:.0f} | {np.mean(t['forget']):.2f} / "
                     f"{t['retain_acc']:.2f} | {np.mean(o['forget']):.2f} / {o['retain_acc']:.2f} |")
    head = ["hidden", "method", "lr", "steps", "forget fp32", "retain fp32", *(f"forget {a}" for a in ATTACKS),
            *(f"recovered {a} (95% CI)" for a in ATTACKS), "changed int4 codes", "mean abs dW / int4 step"]
    lines += ["", "## Unlearning, then quantization", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["lr"] is None:
            continue
        cells = [str(r["width"]), r["method"], f"{r['lr']:g}", f"{r['steps']}{'' if r['status'] == 'stopped_target' else ' (cap)'}",
                 f"{np.mean(r['forget']):.2f}", f"{r['retain_acc']:.2f}"]
        cells += [f"{np.mean(r['attacked'][a]['forget']):.2f}" if isinstance(r["attacked"].get(a), dict) else "n/a"
                  for a in ATTACKS]
        for a in ATTACKS:
            p, (lo, hi) = _recovered(r, rows, a)
            cells.append(f"{p:.0%} ({lo:.0%}–{hi:.0%})" if np.isfinite(p) else "-")
        cells += [f"{r['changed_int4']:.2%}", f"{r['step_ratio_int4']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "recovered = ((K(A(U)) - K(U)) - max(0, K(A(O)) - K(O))) / (K(T) - K(U)), K = greedy forget "
              "accuracy over the 40 forget facts, clipped to [0, 1]; the interval is a 95% paired bootstrap over "
              "the forget facts (1000 resamples). `(cap)`: the epoch cap was reached before forget accuracy "
              "fell to 0.45.", "", "## Reading", "", args.reading or "(to be written from the rows above)"]
    (HERE / "scale.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {HERE / 'scale.md'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["run", "followup", "render"])
    ap.add_argument("--widths", default="128,256,512")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--lrs", default="1e-5,3e-5,1e-4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--machine", default=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    ap.add_argument("--reading", default=None, help="the page's reading (a paragraph)")
    args = ap.parse_args()
    {"run": run, "followup": followup, "render": render}[args.phase](args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
