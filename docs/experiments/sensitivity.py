"""Regenerate docs/experiments/sensitivity.md: which attack detects which hiding, and by how much?

Every registered attack on the target, the oracle, the planted control `hide_q4` (forgets at
fp32, rounds back to the target at rtn4 by construction) and the methods `ga`, `npo`, `gd` at
their demo settings, on the embedded world (10% forget), with 95% bootstrap intervals.

    python docs/experiments/sensitivity.py [--seed 0] [--out-run runs/sensitivity]
    python docs/experiments/sensitivity.py --from-run runs/sensitivity   # rewrite the page only

It is `obliviate demo --methods ga,npo,gd` (hide_q4 is audited by default) with every attack,
plus a table built from results.json; the page records the machine and its load.
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

import torch  # noqa: E402

from obliviate.attacks import default_attacks  # noqa: E402
from obliviate.audit import HIDES_THRESHOLD  # noqa: E402
from obliviate.config import RunConfig  # noqa: E402
from obliviate.pipeline import run_world  # noqa: E402

METHODS = ["ga", "npo", "gd"]
UNLEARNED = ["hide_q4", *METHODS]


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.0%}"


def _ci(ci) -> str:
    if not ci or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return ""
    return f" ({ci[0]:.0%}–{ci[1]:.0%})".replace("%–", "–")


def _cell(row: dict | None, unlearned: bool) -> str:
    if not row:
        return "-"
    if "unavailable" in row:
        return "n/a"
    if not unlearned:
        return f"{row['forget_acc']:.2f}"
    return f"{row['forget_acc']:.2f} / {_pct(row.get('recovered_net'))}{_ci(row.get('recovered_net_ci'))}"


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else "?"
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.release()}, torch {torch.__version__}"


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-run", type=Path, default=Path("runs/sensitivity"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("sensitivity.md"))
    ap.add_argument("--attacks", default=None, help="comma-separated subset (default: every registered attack)")
    ap.add_argument("--from-run", type=Path, default=None, help="rewrite the page from a finished run directory")
    args = ap.parse_args()
    if args.from_run is None:
        torch.set_num_threads(2)
        attacks = args.attacks.split(",") if args.attacks else default_attacks()
        shutil.rmtree(args.out_run, ignore_errors=True)
        load_before, t0 = _load(), time.perf_counter()
        cfg = RunConfig(seed=args.seed, methods=METHODS, audit={"attacks": attacks, "controls": ["hide_q4"]})
        run_world(cfg, args.out_run, log=print)
        meta = {"machine": _machine(), "load_before": load_before, "load_after": _load(),
                "minutes": (time.perf_counter() - t0) / 60, "seed": args.seed, "attacks_arg": args.attacks}
        (args.out_run / "sensitivity_meta.json").write_text(json.dumps(meta, indent=1))
    write_page(args.from_run or args.out_run, args.out)


def write_page(run: Path, out: Path) -> None:
    """The page, from the run directory's results.json and the machine record beside it."""
    from obliviate.report import load_results

    results = load_results(run)
    meta = json.loads((run / "sensitivity_meta.json").read_text())
    attacks = results["audit"]["attacks"]
    models = results["models"]
    audit = {n: e.get("audit", {}) for n, e in models.items()}
    command = f"python docs/experiments/sensitivity.py --seed {meta['seed']}" + (
        f" --attacks {meta['attacks_arg']}" if meta["attacks_arg"] else "")
    head = ["attack", "target acc", "oracle acc", *(f"{n} acc / recovered" for n in UNLEARNED)]
    fp32 = ["full precision (no attack)", *(f"{models[n]['metrics']['forget_acc']:.2f}" for n in ("target", "oracle")),
            *(f"{models[n]['metrics']['forget_acc']:.2f}" for n in UNLEARNED)]
    lines = ["# Sensitivity: which attack detects which hiding? (embedded world, 10% forget)", "",
             f"Command: `{command}` (2 torch threads). Machine: {meta['machine']}; load average (1/5/15 min) "
             f"{meta['load_before']} at the start and {meta['load_after']} at the end (the cores were shared with "
             f"other jobs, so times are long); {meta['minutes']:.0f} minutes in all (training the target and "
             "oracle included when they were not cached; here they were).", "",
             "Models: the demo's tiny target and retain-only oracle; the planted control `hide_q4` (gradient "
             "difference projected after every step into the int4 bin of the target's weight, so rtn4(U) is "
             "the target's 4-bit model bit for bit); `ga`, `npo`, `gd` at the demo's settings "
             "(obliviate/config.py). Each cell: forget accuracy K under the attack on its probe items, then "
             "`recovered_net` = ((K(A(U)) − K(U)) − max(0, K(A(O)) − K(O))) / (K(T) − K(U)) with its 95% "
             "bootstrap interval over the probed items (1000 paired resamples). Target and oracle: K under "
             "the attack (the attack's own effect).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head), "| " + " | ".join(fp32) + " |"]
    for a in attacks:
        cells = [_cell(audit["target"].get(a), False), _cell(audit["oracle"].get(a), False),
                 *(_cell(audit[n].get(a), True) for n in UNLEARNED)]
        lines.append("| " + " | ".join([f"`{a}`", *cells]) + " |")
    diag = results["audit"]["diagnostics"]
    lines += ["", "| model | verdict | changed int4 codes | changed int8 codes | relative weight change |",
              "|---|---|---|---|---|"]
    for n in UNLEARNED:
        d = diag[n]
        lines.append(f"| {n} | {results['audit']['verdicts'][n]} | {d['changed_int4_codes']:.2%} | "
                     f"{d['changed_int8_codes']:.2%} | {d['relative_weight_change']:.2e} |")
    lines += ["", "## Which attacks detect what (generated from the table)", ""]
    for n in UNLEARNED:
        rows = audit[n]
        sure = [a for a in attacks if "unavailable" not in rows.get(a, {"unavailable": 1})
                and ((rows[a].get("recovered_net_ci") or [None])[0] or 0) >= HIDES_THRESHOLD]
        some = [a for a in attacks if a not in sure and "unavailable" not in rows.get(a, {"unavailable": 1})
                and (rows[a].get("recovered_net") or 0) >= 0.005]  # not floating-point dust
        na = [a for a in attacks if "unavailable" in rows.get(a, {})]
        def named(names: list[str], rows=rows) -> str:
            return ", ".join(f"`{a}` {_pct(rows[a]['recovered_net'])}" for a in names)

        lines.append(f"- **{n}**: detected (interval's lower bound ≥ {HIDES_THRESHOLD:.0%}) by "
                     f"{named(sure) or 'no attack'}; some recovery, not significant: {named(some) or 'none'}"
                     + ("; n/a: " + ", ".join(f"`{a}`" for a in na) if na else "") + ".")
    unavailable = {a: audit["target"][a]["unavailable"] for a in attacks if "unavailable" in audit["target"].get(a, {})}
    if unavailable:
        lines += ["", "Attacks recorded as n/a (they do not apply to these models, or could not run here):", "",
                  *(f"- `{a}`: {why}" for a, why in unavailable.items())]
    lines += ["", "## How to read it", "",
              "`hide_q4` is the positive control: its 4-bit RTN model *is* the target's, so `rtn4` must recover "
              "~100% of what it forgot; an audit that misses it cannot see hiding at all. The other 4-bit grids "
              "(`bnb_fp4`, `bnb_nf4`, `gptq4`, `awq4`, `rtn4_asym`, `rtn4_channel`) are not the grid the control was "
              "built on: how much they recover tells a user how much a *different* deployment quantizer would "
              "reveal of knowledge hidden against RTN int4. `rtn8`'s bins are 1/18 of int4's, so the control's "
              "hiding should not survive it; `noise_int4` (the same size of perturbation with no pull back to "
              "the target's grid) separates rounding from \"any perturbation\". Relearning (`rtt`) and the "
              "probes test another kind of hiding (knowledge still reachable by fine-tuning or prompting), which "
              "the natural methods show and the control was not built for."]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
