"""`--seeds 0,1,2`: repeat the unlearning and the audit with several seeds, and say how much of a
result is signal.

The task and the target/oracle stay those of the run's `seed` (cached, so they are trained once);
each seed `s` reruns every method's unlearning (batch order, initialisations) and the audit (its
relearning sweeps, noise) with `unlearn_seed = s`, as an ordinary run directory `OUT/seed-s/`.
`OUT/results.json` then holds, per model, the mean of every metric over the seeds with its
standard deviation (`metrics_std`, ddof 1), each seed's values (`per_seed`), and per method the
verdict agreement ("hides in 3/3 seeds (rtt)"). Same seed on another CPU gives other numbers:
the spread over seeds is how a user tells a finding from that noise.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.report.results import provenance, write_results


def parse_seeds(text: str | None) -> list[int] | None:
    """"0,1,2" -> [0, 1, 2]; a one-line error on anything else."""
    from obliviate.data.task import DataError

    if not text:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as e:
        raise DataError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from e
    if len(set(seeds)) != len(seeds) or not seeds:
        raise DataError(f"--seeds {text!r}: give distinct seeds")
    return seeds


def _verdict_kind(v: str) -> str:
    """The verdict without its figures: "hides: rtt", "forgets", "inconclusive", "did not forget", ..."""
    if v.startswith("hides:"):
        return "hides: " + v.split(":", 1)[1].split()[0]
    return v.split("(")[0].split(":")[0].strip()


def agreement(verdicts: list[str]) -> str:
    """"hides in 2/3 seeds (rtt); forgets in 1/3" from the per-seed verdicts."""
    n = len(verdicts)
    kinds = Counter(_verdict_kind(v) for v in verdicts)
    parts = []
    for kind, count in kinds.most_common():
        if kind.startswith("hides: "):
            parts.append(f"hides in {count}/{n} seeds ({kind[7:]})")
        else:
            parts.append(f"{kind} in {count}/{n} seeds")
    return "; ".join(parts)


def aggregate(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """One results.json from the runs of every seed: mean, std and the per-seed values."""
    seeds = list(per_seed)
    first = per_seed[seeds[0]]
    models: dict[str, Any] = {}
    for name in first["models"]:
        runs = [per_seed[s]["models"].get(name) for s in seeds]
        runs = [r for r in runs if r]
        keys = sorted({k for r in runs for k in r["metrics"]})
        values = {k: np.array([_num(r["metrics"].get(k)) for r in runs]) for k in keys}
        models[name] = {
            "metrics": {k: _mean(v) for k, v in values.items()},
            "metrics_std": {k: _std(v) for k, v in values.items()},
            "per_seed": {str(s): per_seed[s]["models"][name]["metrics"] for s in seeds
                         if name in per_seed[s]["models"]},
        }
    results: dict[str, Any] = {"benchmark": first["benchmark"], "seed": seeds, "seeds": seeds,
                               "config": first.get("config"), "provenance": provenance(), "models": models,
                               "runs": {str(s): f"seed-{s}" for s in seeds},
                               "status": "done" if all(r.get("status") == "done" for r in per_seed.values())
                               else "interrupted"}
    if first.get("columns"):
        results["columns"] = first["columns"]
    verdicts = {}
    for name in models:
        per = [per_seed[s].get("audit", {}).get("verdicts", {}).get(name) for s in seeds]
        per = [v for v in per if v]
        if per:
            verdicts[name] = agreement(per)
    if verdicts:
        results["verdict_agreement"] = verdicts
    return results


def _num(x: Any) -> float:
    return float(x) if isinstance(x, int | float) and x is not None else float("nan")


def _mean(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _std(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1)) if v.size > 1 else float("nan")


def run_seeds(cfg, out: Path, seeds: list[int], run_one: Callable[[Any, Path], dict[str, Any]],
              log=print) -> dict[str, Any]:
    """Run `run_one(cfg_for_seed, OUT/seed-s)` for every seed (resumable: a finished seed's run
    directory is read back, not redone), then write the aggregate `OUT/results.json` and report."""
    from obliviate.report.results import load_results

    per_seed: dict[int, dict[str, Any]] = {}
    for s in seeds:
        sub = out / f"seed-{s}"
        if (sub / "results.json").is_file() and json.loads((sub / "results.json").read_text()).get("status") == "done":
            log(f"seed {s}: finished in the run being resumed")
            per_seed[s] = load_results(sub)
            continue
        log(f"seed {s}: unlearning and audit")
        resume = sub.is_dir() and any(sub.iterdir())
        per_seed[s] = run_one(cfg.model_copy(update={"unlearn_seed": s}), sub, resume)
    results = aggregate(per_seed)
    write_results(out / "results.json", results)
    write_seed_report(out, results)
    for name, v in results.get("verdict_agreement", {}).items():
        log(f"{name}: {v}")
    return results


def write_seed_report(out: Path, results: dict[str, Any]) -> Path:
    from obliviate.report.tables import markdown_table

    seeds = results["seeds"]
    lines = [f"# obliviate run — {results['benchmark']}, seeds {', '.join(map(str, seeds))}", "",
             f"Each metric is the mean ± standard deviation over {len(seeds)} seeds of unlearning and audit "
             "(same task, target and oracle); each seed's own run directory is `seed-N/`.", "",
             markdown_table(results), ""]
    if results.get("verdict_agreement"):
        lines += ["## Verdicts across seeds", "", "| method | verdicts |", "|---|---|"]
        lines += [f"| {n} | {v} |" for n, v in results["verdict_agreement"].items()]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    from obliviate.report.html import write_comparison

    # one page comparing the seeds' runs (each seed-N/ has its own report.html)
    write_comparison([out / f"seed-{s}" for s in seeds], out)
    return path


def format_mean_std(mean: float, std: float | None) -> str:
    """"0.125 ± 0.030" (the table's cells for multi-seed runs)."""
    if std is None or not math.isfinite(std):
        return f"{mean:.3f}" if math.isfinite(mean) else "-"
    return f"{mean:.3f} ± {std:.3f}"
