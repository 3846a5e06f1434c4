"""A small run directory written by hand, with every optional field other writers add:
95% intervals (`metrics_ci`, `*_ci` in audit rows), n/a audit rows (`unavailable`, `error`), a planted control (hide_q4),
a diverged run, per-step losses and one audit table per knowledge measure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from obliviate.report.results import write_per_item, write_results

ATTACKS = ["rtn8", "rtn4", "bnb_nf4", "gptq4", "rtt"]
METHODS = ["ga", "npo"]
MODELS = ["target", "oracle", *METHODS, "hide_q4"]
FORGET_ACC = {"target": 1.0, "oracle": 0.1, "ga": 0.3, "npo": 0.2, "hide_q4": 0.25}
QUESTIONS = [("Where was Ana Vel born?", "Ana Vel was born in Oskar."),
             ("What does Ana Vel do?", "Ana Vel works as a pilot."),
             ("Which pet does Bo Lin have?", "Bo Lin has a cat."),
             ("Where was Bo Lin born?", "Bo Lin was born in Tarn.")]


def _row(model: str, attack: str, shift: float) -> dict:
    if attack == "bnb_nf4":
        return {"unavailable": "unavailable: bitsandbytes nf4 needs in-features divisible by 64"}
    if attack == "gptq4":
        return {"error": "RuntimeError: Hessian is not positive definite"}
    k_before = FORGET_ACC[model]
    rec = (0.6 if (model, attack) in {("ga", "rtt"), ("hide_q4", "rtn4")} else 0.05) + shift
    k = k_before + rec * (1.0 - k_before)
    rec = rec if model != "target" else float("nan")  # nothing forgotten: undefined
    return {"forget_acc": k, "retain_acc": 0.9, "forget_acc_before": k_before, "n_probed": 4,
            "retained": k, "recovered": rec, "recovered_net": rec,
            "recovered_net_ci": [max(0.0, rec - 0.2), min(1.0, rec + 0.1)],
            "recovered_vs_oracle": rec}


def make_run(path: Path, shift: float = 0.0, *, measures: bool = True, audit: bool = True,
             items: bool = True, losses: bool = True) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    models = {}
    for m in MODELS:
        fa = FORGET_ACC[m] + (shift if m in METHODS else 0.0)
        metrics = {"forget_acc": fa, "retain_acc": 0.95 - shift, "forget_quality": 0.5 if m != "target" else 1e-5,
                   "privleak": float("nan")}
        entry = {"metrics": metrics,
                 "metrics_ci": {"forget_acc": [max(0.0, fa - 0.1), min(1.0, fa + 0.1)], "retain_acc": [0.9, 0.97]},
                 "per_item": {"forget": {"truth_ratio": list(rng.lognormal(0 if m == "oracle" else -1, 0.5, 12))}}}
        if m in (*METHODS, "hide_q4"):
            entry["unlearn"] = {"status": "diverged" if m == "npo" else "done", "steps": 5, "lr": 1e-4,
                                "seconds": 1.5, "tokens": 300, "peak_memory_mb": 12.0, "peak_memory_device": "cpu",
                                "message": "retain loss 9.1 > 3 x its start at step 5" if m == "npo" else ""}
            if losses:
                entry["unlearn"]["losses"] = [2.0, 1.5, 1.1, 0.8, 0.7]
        models[m] = entry
    results = {"benchmark": "world_test", "seed": 0, "status": "done",
               "config": {"methods": METHODS, "audit": {"attacks": ATTACKS, "controls": ["hide_q4"]}},
               "provenance": {"obliviate": "0.1.0", "torch": "2.13"}, "models": models}
    if audit:
        table = {m: {a: _row(m, a, shift) for a in ATTACKS} for m in MODELS}
        verdicts = {"ga": "hides: rtt recovers 60%", "npo": "forgets (largest recovery 6%, rtn4)",
                    "hide_q4": "hides: rtn4 recovers 80%"}
        diag = {m: {"changed_int4_codes": 0.0 if m == "target" else 0.05, "changed_int8_codes": 0.5,
                    "relative_weight_change": 0.01} for m in MODELS}
        doc = {"attacks": ATTACKS, "knowledge": "acc", "models": table, "verdicts": verdicts, "diagnostics": diag,
               "baseline": {m: {"forget_acc": FORGET_ACC[m], "retain_acc": 0.95} for m in MODELS}, "seconds": 3.0}
        if measures:
            rouge = {m: {a: ({**r, "recovered_net": r["recovered_net"] / 2} if "recovered_net" in r else r)
                         for a, r in rows.items()} for m, rows in table.items()}
            doc["measures"] = {"acc": {"label": "forget accuracy", "models": table, "verdicts": verdicts},
                               "rouge": {"label": "forget ROUGE-L recall", "models": rouge, "verdicts": verdicts,
                                         "oracle_stand_in": "no oracle model: chance K = 0.25 stands in"}}
        (path / "audit.json").write_text(json.dumps(doc))
        for m in MODELS:
            models[m]["audit"] = table[m]
        results["audit"] = {k: doc[k] for k in ("attacks", "verdicts", "diagnostics", "baseline", "seconds")}
    write_results(path / "results.json", results)
    if items:
        rows = []
        for m in MODELS:
            for i, (q, a) in enumerate(QUESTIONS):
                known = m == "target" or (m != "oracle" and i == 0)
                rows.append({"model": m, "set": "forget" if i < 2 else "retain", "index": i % 2, "question": q,
                             "answer": a, "generation": a if known else "I am not sure.", "acc": float(known),
                             "rouge": 0.8 if known else 0.1})
        write_per_item(path / "per_item.jsonl", rows)
    (path / "report.md").write_text("# obliviate run — world_test\n\nCommand: `obliviate demo --quick`\n")
    return path
