"""The whole job as one readable recipe: task -> target/oracle -> unlearn -> evaluate -> report.

Results are written after every model (atomically), so an interrupt loses at most the model
in progress; the run directory records the resolved config and provenance.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.config import RunConfig, dump_run_config
from obliviate.data.task import DataError, ForgetTask
from obliviate.evaluate import (
    EvalConfig,
    EvalResult,
    evaluate,
    evaluate_with_reference,
    metric_intervals,
    without_reference,
)
from obliviate.memory import peak_memory
from obliviate.models.cache import cache_key, cache_root
from obliviate.models.load import load_model, model_location, save_model, weights_identity, weights_sha256
from obliviate.report.html import write_html_report
from obliviate.report.results import provenance, write_json, write_per_item, write_results
from obliviate.report.tables import markdown_table
from obliviate.unlearn import UnlearnConfig, unlearn


def _identity(model: str | Path) -> str | None:
    """A cache identity for a local model directory (None for a Hub id: never cached)."""
    path = Path(model)
    return weights_identity(path) if (path / "config.json").is_file() else None


def cached_eval(kind: str, model: str | Path, fingerprint: Any, use_cache: bool, compute):
    """Evaluate an immutable model (target, oracle) once per (weights, data, settings): later
    runs read the stored `compute()` result (JSON: NaN survives as null -> NaN)."""
    ident = _identity(model)
    if ident is None or not use_cache or fingerprint is None:
        return compute()
    path = cache_root() / "evals" / f"{cache_key(kind, ident, fingerprint)}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return _nan(data["metrics"]), data["per_item"], data["rows"]
    metrics, per_item, rows = compute()
    write_json(path, {"metrics": metrics, "per_item": per_item, "rows": rows})
    return metrics, per_item, rows


def _nan(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: float("nan") if v is None else v for k, v in metrics.items()}


def qa_evaluate(task: ForgetTask, cfg: EvalConfig):
    """The QA metric suite (world, TOFU, user files) as a benchmark's `evaluate`: SPEC section 3;
    forget quality and privleak against the oracle's result (the oracle against itself)."""

    def evaluate_model(model, tokenizer, name: str, oracle_eval):
        res = evaluate(model, tokenizer, task, cfg, desc=f"evaluating {name}")
        if name == "oracle":
            res = evaluate_with_reference(res, res)
        elif oracle_eval is not None:
            res = evaluate_with_reference(res, EvalResult(oracle_eval[0], oracle_eval[1]))
        else:  # no oracle, no score: forget quality / privleak stay NaN (never the model against itself)
            res = without_reference(res)
        return res.metrics, res.per_item, per_item_rows(name, task, res)

    return evaluate_model


def per_item_rows(name: str, task: ForgetTask, res: EvalResult) -> list[dict[str, Any]]:
    rows = []
    for set_name, items in task.eval_sets().items():
        values = res.per_item.get(set_name, {})
        gens = res.generations.get(set_name, [])
        for i, it in enumerate(items):
            row = {"model": name, "set": set_name, "index": i, "question": it.question, "answer": it.answer}
            if gens:
                row["generation"] = gens[i]
            row.update({k: v[i] for k, v in values.items()})
            rows.append(row)
    return rows


def not_measured(metrics: dict[str, float], has_oracle: bool) -> dict[str, Any]:
    """`{"not_measured": {metric: reason}}` for the oracle-relative metrics a model without an
    oracle to compare with has as NaN (empty when there is an oracle): no reference, no score."""
    from obliviate.evaluate import NO_ORACLE, ORACLE_METRICS

    if has_oracle:
        return {}
    missing = {k: NO_ORACLE for k in ORACLE_METRICS if k in metrics and not np.isfinite(metrics[k])}
    return {"not_measured": missing} if missing else {}


def _intervals(metrics: dict[str, float], per_item: Any) -> dict[str, Any]:
    """`{"metrics_ci": {metric: [lo, hi]}}`: 95% bootstrap intervals of the metrics that are means
    over items (obliviate.evaluate.metric_intervals), for any benchmark whose per-item values are
    {set: {metric: [values]}}; empty when there is none."""
    if not isinstance(per_item, dict) or not all(isinstance(v, dict) for v in per_item.values()):
        return {}
    ci = metric_intervals(EvalResult(metrics, per_item))
    return {"metrics_ci": ci} if ci else {}


def _entry(res: EvalResult, **extra: Any) -> dict[str, Any]:
    """A model's results; a `path` is stored absolute, with the sha256 of the weights it holds;
    metrics it could not measure (no oracle) are named with the reason in `not_measured`."""
    if extra.get("path"):
        extra["weights_sha256"] = weights_sha256(extra["path"])
        extra["path"] = model_location(extra["path"])
    missing = {"not_measured": dict(res.not_measured)} if res.not_measured else {}
    return {"metrics": res.metrics, "metrics_ci": metric_intervals(res), "per_item": res.per_item, **missing,
            **extra}


def unlearn_measured(model, tokenizer, task: ForgetTask, ucfg: UnlearnConfig, **kwargs: Any):
    """`unlearn` with its peak memory measured; returns (log, the record results.json keeps)."""
    with peak_memory() as peak:
        ulog = unlearn(model, tokenizer, task, ucfg, **kwargs)
    return ulog, {"status": ulog.status, "message": ulog.message, "steps": ulog.steps,
                  "seconds": round(ulog.seconds, 2), "tokens": ulog.tokens, "lr": ucfg.lr, "epochs": ucfg.epochs,
                  "max_steps": ucfg.max_steps, "batch_size": ucfg.batch_size, "params": ucfg.params,
                  "peak_memory_mb": round(peak.mb, 1), "peak_memory_device": peak.device,
                  "final_loss": ulog.losses[-1] if ulog.losses else None, "losses": ulog.losses}


def resolve_controls(cfg: RunConfig, tiny: bool) -> list[str]:
    """The planted positive controls a run audits: `audit.controls`, or by default `hide_q4` in
    the demo (the embedded world's tiny models, where it costs about 30 s); elsewhere it is one
    more unlearning run and audit, so a user opts in."""
    from obliviate.methods import controls

    audit_cfg = cfg.audit
    default = ["hide_q4"] if tiny and cfg.benchmark == "world" else []
    names = audit_cfg.controls if audit_cfg.controls is not None else default
    known = controls()
    for name in names:
        if name not in known:
            raise DataError(f"audit.controls: {name!r} is not a planted control; controls: {', '.join(known)}")
    return list(names) if audit_cfg.enabled else []


QA_NOTES = [
    "- **forget acc / prob / ROUGE**: how much of the forget set the model still produces "
    "(lower is better; the oracle's value is the floor that never-seen data reaches).",
    "- **retain acc**, **model utility** (TOFU's harmonic mean over retain and world facts): "
    "what unlearning must keep (compare with the target).",
    "- **forget quality** (TOFU): KS-test p-value between the model's and the oracle's "
    "truth ratios on the forget set; higher = indistinguishable from never having seen it.",
    "- **privleak** (MUSE): Min-K% membership AUC relative to the oracle, in %; "
    "-100 = the forget set is as exposed as in the target, 0 = like the oracle.",
    "- **MinK AUC**: how well Min-K% (k = 0.4) tells forget items from never-seen holdout items "
    "(0.5 = not at all).",
]


def quantization_lines(audit: dict[str, Any]) -> list[str]:
    """One line per method: each K before and under every 4-bit quantization attack audited
    (the quantization paper's question: does 4-bit bring the forgotten knowledge back?)."""
    from obliviate.attacks import available

    registry = available()
    four = [a for a in audit["attacks"] if a in registry and registry[a].family == "quantization" and "4" in a]
    measures = audit.get("measures") or {}
    lines = []
    for method in audit.get("verdicts", {}):
        parts = []
        for k, m in measures.items():
            rows = m["models"].get(method, {})
            before = m.get("baseline", {}).get(method, {}).get("forget_acc", float("nan"))
            cells = [f"{a} {rows[a]['forget_acc']:.3f}" if a in rows and "unavailable" not in rows[a] else f"{a} n/a"
                     for a in four]
            parts.append(f"{m.get('label', k)} forget {before:.3f} → " + ", ".join(cells))
        if four and parts:
            lines.append(f"- **{method}**: " + "; ".join(parts))
    return lines


def write_report(out: Path, results: dict[str, Any], command: str, notes: list[str] | None = None) -> Path:
    """report.md: the benchmark's own table, each unlearning run, the audit (one table per K
    measure, 4-bit quantization per method, the weight-change mechanism) and the benchmark's
    reading guide (`notes`; default: the QA suite's)."""
    from obliviate.report.tables import audit_markdown

    lines = [f"# obliviate run — {results['benchmark']}", "", f"Command: `{command}`", "",
             markdown_table(results), ""]
    lines += ["## Unlearning runs", "", "| method | status | steps | lr | seconds | tokens/s | peak memory (MiB) |",
              "|---|---|---|---|---|---|---|"]
    for name, entry in results["models"].items():
        u = entry.get("unlearn")
        if u:
            tps = u["tokens"] / u["seconds"] if u["seconds"] else float("nan")
            mem = u.get("peak_memory_mb")
            mem_cell = "-" if mem is None else f"{mem:.0f} ({u.get('peak_memory_device', 'cpu')})"
            lines.append(f"| {name} | {u['status']} | {u['steps']} | {u['lr']:g} | {u['seconds']:.1f} | {tps:.0f} | "
                         f"{mem_cell} |")
            if u.get("message"):
                lines.append(f"|  | {u['message']} | | | | | |")
    audit = results.get("audit")
    if audit:
        lines += ["", "## Audit: does the knowledge come back?", "",
                  "Share of the forgetting each attack undoes, beyond what the same attack gives the "
                  "oracle: ((K(A(U)) - K(U)) - max(0, K(A(O)) - K(O))) / (K(T) - K(U)), clipped to [0, 1] "
                  "(audit.json also has SPEC's `retained`, `recovered` and `recovered_vs_oracle`). The target "
                  "and oracle columns are controls: their K under each attack (an attack must not destroy or "
                  "create knowledge). n/a: the attack cannot run here or does not apply (reason in audit.json).", ""]
        measures = audit.get("measures") or {audit.get("knowledge", "K"): {
            "label": audit.get("knowledge", "K"), "verdicts": audit.get("verdicts", {}),
            "models": {n: e["audit"] for n, e in results["models"].items() if "audit" in e}}}
        for k, m in measures.items():
            lines += [f"### K = {m.get('label', k)} (`{k}`)", ""]
            if m.get("oracle_stand_in"):
                lines += [f"{m['oracle_stand_in']}.", ""]
            lines += [audit_markdown({"attacks": audit["attacks"], "knowledge": k, "models": m["models"],
                                      "verdicts": m["verdicts"], "controls": audit.get("controls")}), ""]
        if "noise_int4" in audit.get("attacks", []):
            lines += ["`noise_int4` adds Gaussian noise with the std of RTN int4's rounding error, step/√12 "
                      "(step = the int4 group-128 scale): a perturbation as large as rtn4's, without its pull "
                      "back to the target's grid.", ""]
        quant = quantization_lines(audit)
        if quant:
            lines += ["4-bit quantization, per method (K of the unlearned model, then under each attack):", "",
                      *quant, ""]
        if audit.get("controls"):
            lines += [f"Planted positive controls ({', '.join(audit['controls'])}): unlearned so that their 4-bit "
                      "RTN weights are exactly the target's while they forget at full precision; an audit that "
                      "can see hidden knowledge must say \"hides: rtn4 recovers ~100%\" for them. Intervals are "
                      "95% bootstrap intervals over the probed items (1000 paired resamples).", ""]
        diag = audit.get("diagnostics", {})
        if diag:
            lines += ["Weight change against the target (the mechanism: a small update that moves no "
                      "weight across a quantization boundary is undone by quantizing):", "",
                      "| model | changed int4 codes | changed int8 codes | relative weight change |",
                      "|---|---|---|---|"]
            lines += [f"| {n} | {d['changed_int4_codes']:.2%} | {d['changed_int8_codes']:.2%} | "
                      f"{d['relative_weight_change']:.2e} |" for n, d in diag.items() if n != "target"]
    lines += ["", "## Reading the table", "", *(notes if notes is not None else QA_NOTES), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    write_html_report(out, results, command)
    return path


def run_world(cfg: RunConfig, out: Path, log=print, command: str = "obliviate demo",
              resume: bool = False) -> dict[str, Any]:
    """`obliviate demo`: the embedded world end to end, written to `out`."""
    from obliviate.benchmarks.spec import declare, precheck

    resolve_controls(cfg, tiny=True)  # a bad control or attack name fails before any training
    precheck(cfg, text=False)
    return run_benchmark(declare("world", cfg, log), cfg, out, log, command, resume=resume)


def _release() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _absolute(options: dict[str, Any]) -> dict[str, Any]:
    """Options naming local files or directories, made absolute: `obliviate audit RUN_DIR` may run elsewhere."""
    return {k: str(Path(v).resolve()) if isinstance(v, str) and v and Path(v).exists() else v
            for k, v in options.items()}


def run_benchmark(bench, cfg: RunConfig, out: Path, log=print, command: str = "",
                  resume: bool = False) -> dict[str, Any]:
    """The one run loop of every benchmark (`obliviate.benchmarks.spec.Benchmark`): write the
    config and provenance; evaluate the oracle and the target (cached for immutable local models)
    and any other declared model; for each of `cfg.methods`: unlearn a fresh copy of the target,
    evaluate it, save it, write results.json and per_item.jsonl; then audit every model with the
    benchmark's K measures and write report.md. Results are written after every model
    (atomically), so an interrupt loses at most the model in progress, and unlearning saves a
    checkpoint every `unlearn.checkpoint_every` steps in `out/checkpoints/METHOD`: `resume`
    continues the run in `out` (finished models are kept, an interrupted method goes on from its
    last checkpoint; see obliviate/rundir.py). A crash leaves status "crashed" and the error."""
    from obliviate.benchmarks.spec import check_methods, with_method_defaults
    from obliviate.methods import check_task, get_method
    from obliviate.rundir import finished, resume_state

    text = any(it.is_text for it in bench.task.forget)
    check_methods(cfg.methods, text)
    for m in cfg.methods:
        check_task(get_method(m), bench.task)  # a missing field is one line, before any model loads
    if cfg.audit.enabled and cfg.audit.attacks:
        from obliviate.attacks import get_attack

        for a in cfg.audit.attacks:
            get_attack(a)  # an unknown name fails now, not after training
    if bench.method_defaults is not None:
        cfg = with_method_defaults(cfg, bench.method_defaults)
    control_names = resolve_controls(cfg, bench.tiny)
    out.mkdir(parents=True, exist_ok=True)
    prior, prior_rows = resume_state(out, cfg.model_dump(mode="json")) if resume else (None, [])
    dump_run_config(cfg, out / "config.yaml")
    prov = provenance()
    (out / "provenance.json").write_text(json.dumps(prov, indent=1))
    results: dict[str, Any] = {"benchmark": bench.name, "seed": cfg.seed, "config": cfg.model_dump(mode="json"),
                               "provenance": prov, "status": "running",
                               "rebuild": {"benchmark": bench.key, "options": _absolute(bench.options)}, "models": {}}
    if bench.columns:
        results["columns"] = bench.columns
    if bench.sources:
        results["sources"] = bench.sources
    if cfg.unlearn_seed is not None:
        results["unlearn_seed"] = cfg.unlearn_seed
    results.update(bench.extra)
    rows: list[dict[str, Any]] = []

    def save(status: str = "running") -> None:
        results["status"] = status
        if bench.summary and "target" in results["models"]:
            results.update(bench.summary(results))
        write_results(out / "results.json", results)
        write_per_item(out / "per_item.jsonl", rows)

    def finish(status: str) -> None:
        save(status)
        write_per_item(out / "per_item.jsonl", rows)
        write_report(out, results, command, bench.notes)

    def evaluate_dir(name: str, oracle_eval):
        def compute():
            t0 = time.perf_counter()
            model, tok = load_model(bench.models[name])
            res = bench.evaluate(model, tok, name, oracle_eval)
            log(f"{name} evaluated ({time.perf_counter() - t0:.1f} s)")
            del model
            _release()
            return res
        oracle_key = None if oracle_eval is None else hashlib.sha256(
            json.dumps([oracle_eval[0], oracle_eval[1]], default=float, sort_keys=True).encode()).hexdigest()[:16]
        return cached_eval(f"{bench.key}-eval", bench.models[name], [bench.fingerprint, name, oracle_key],
                           cfg.cache, compute)

    oracle_eval = None
    names = ["oracle", "target"] + [n for n in bench.models if n not in ("target", "oracle")]
    for name in names:
        if not bench.models.get(name):
            continue
        ev = evaluate_dir(name, oracle_eval if name != "oracle" else None)
        if name == "oracle":
            oracle_eval = ev
        has_oracle = name == "oracle" or oracle_eval is not None
        results["models"][name] = {"metrics": ev[0], **_intervals(ev[0], ev[1]), "per_item": ev[1],
                                   **not_measured(ev[0], has_oracle),
                                   "path": model_location(bench.models[name])}
        if Path(str(bench.models[name])).is_dir():
            results["models"][name]["weights_sha256"] = weights_sha256(bench.models[name])
        rows += ev[2]
        if cfg.save_models and bench.tiny:  # a real model is referenced by its path, not copied
            shutil.copytree(bench.models[name], out / "models" / name, dirs_exist_ok=True)
    order = ["target", "oracle"] + [n for n in results["models"] if n not in ("target", "oracle")]
    results["models"] = {n: results["models"][n] for n in order if n in results["models"]}
    save()
    target_metrics = results["models"]["target"]["metrics"]
    scratch: Path | None = None
    try:
        # planted positive controls (hide_q4) run through the same loop, marked "control": true
        for method in [*cfg.methods, *control_names]:
            if finished(prior, method):
                results["models"][method] = prior["models"][method]
                rows += [r for r in prior_rows if r.get("model") == method]
                log(f"{method}: finished in the run being resumed")
                save()
                continue
            ucfg: UnlearnConfig = cfg.unlearn_config(method, tiny=bench.tiny and bench.method_defaults is None)
            if text:
                # greedy QA accuracy means nothing on raw text; and the divergence guard is off: the
                # raw-text protocols (MUSE, SemEval, TDEC) run a fixed schedule or their own rule, and
                # their tables show any collapse (GA on their tiny models takes the retain NLL past
                # ln(vocab), as GA does in MUSE's paper)
                ucfg = ucfg.model_copy(update={"stop_forget_acc": None, "diverge_at": None})
            model, tokenizer = load_model(bench.models["target"])
            stop = bench.stop_when(ucfg, target_metrics) if bench.stop_when else None
            ckpt = out / "checkpoints" / method
            ulog, info = unlearn_measured(model, tokenizer, bench.task, ucfg, desc=f"unlearning {method}",
                                          stop_when=stop, checkpoint_dir=ckpt, resume=resume)
            metrics, per_item, model_rows = bench.evaluate(model, tokenizer, method, oracle_eval)
            if bench.after_unlearn:
                bench.after_unlearn(metrics, ulog, ucfg, target_metrics)
                info["message"] = ulog.message
            log(f"{method}: {ulog.status}, {ulog.steps} steps in {ulog.seconds:.1f} s"
                + (f" ({ulog.message})" if ulog.message else ""))
            results["models"][method] = {"metrics": metrics, **_intervals(metrics, per_item), "per_item": per_item,
                                         "unlearn": info,
                                         **not_measured(metrics, oracle_eval is not None),
                                         **({"control": True} if method in control_names else {})}
            rows += model_rows
            if cfg.save_models:
                save_model(model, tokenizer, out / "models" / method)
            elif cfg.audit.enabled:  # the audit reloads every model: keep it until then
                scratch = scratch or Path(tempfile.mkdtemp(prefix="obliviate-audit-"))
                results["models"][method]["path"] = str(save_model(model, tokenizer, scratch / method))
            del model
            _release()
            save()
            if ulog.status == "interrupted":
                raise KeyboardInterrupt
            shutil.rmtree(ckpt, ignore_errors=True)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        if cfg.audit.enabled:  # what the audit reaches is kept in out/audit-partial for --resume
            audit_run(out, results, bench, cfg.audit, cfg.run_seed, log, cfg.eval)
    except KeyboardInterrupt:
        finish("interrupted")
        raise
    except Exception as e:
        results["error"] = f"{type(e).__name__}: {e}"
        save("crashed")
        raise
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
        for entry in results["models"].values():
            if entry.get("path", "").startswith(str(scratch)):
                del entry["path"]
    finish("done")
    return results


AUDIT_PARTIAL = "audit-partial"


def audit_run(out: Path, results: dict[str, Any], bench, audit_cfg, seed: int, log=print,
              eval_cfg: EvalConfig | None = None) -> dict[str, Any]:
    """Audit every model of `results` (saved in `out/models`, or at its recorded path) with the
    benchmark's K measures (attacks use `eval_cfg`'s prompt format); write audit.json and add the
    audit to `results`. A method whose unlearning diverged gets a verdict that leads with it.
    Results reached by an interrupted audit of the same models and settings (`out/audit-partial`)
    are reused, not rerun; `audit["seconds"]` is then this call's time."""
    from obliviate.audit import audit_benchmark

    models, weights = {}, {}
    for name in results["models"]:
        mdir = out / "models" / name
        if not mdir.is_dir():
            mdir = Path(results["models"][name].get("path", ""))
        path = results["models"][name].get("path") if not (mdir / "config.json").is_file() else mdir
        if not path:
            raise DataError(f"{out}: no saved model for {name!r} (run with save_models: true to audit)")
        if Path(str(path)).is_absolute() and not (Path(str(path)) / "config.json").is_file():
            raise DataError(f"{out}: the {name} model recorded at {path} is not a model directory (moved "
                            f"or deleted?)")
        model, tok = load_model(path)
        models[name] = (model, tok, mdir if (mdir / "config.json").is_file() else None)
        if (Path(str(path)) / "config.json").is_file():
            weights[name] = Path(str(path))
    t0 = time.perf_counter()
    partial = out / AUDIT_PARTIAL  # each (model, attack) result as it comes: an interrupt loses one attack
    audit = audit_benchmark(models, bench.task, bench.knowledge, audit_cfg.attacks, seed, audit_cfg.params,
                            bench.rtt_split, log=log, eval_cfg=eval_cfg, checkpoint=partial,
                            weights=weights)
    audit["seconds"] = round(time.perf_counter() - t0, 1)
    for name, entry in results["models"].items():  # divergence is not success: the verdict leads with it
        u = entry.get("unlearn") or {}
        if u.get("status") == "diverged":
            for table in [audit["verdicts"], *(m["verdicts"] for m in audit.get("measures", {}).values())]:
                if name in table and not table[name].startswith(u["message"]):
                    table[name] = f"{u['message']}; audited at those weights: {table[name]}"
    del models
    _release()
    _attach_audit(out, results, audit)
    shutil.rmtree(partial, ignore_errors=True)
    for name, v in audit["verdicts"].items():
        log(f"{name}: {v}")
    return audit


def _attach_audit(out: Path, results: dict[str, Any], audit: dict[str, Any]) -> None:
    """audit.json holds the whole audit; results.json gets the primary K's rows per model plus
    the summary (every measure's table under `audit.measures`)."""
    (out / "audit.json").write_text(json.dumps(audit, indent=1, default=float))
    for name, per_attack in audit["models"].items():
        results["models"][name]["audit"] = per_attack
    results["audit"] = {k: audit[k] for k in ("attacks", "knowledge", "knowledge_label", "verdicts", "diagnostics",
                                              "baseline", "measures", "seconds") if k in audit}
    results["audit"]["controls"] = [n for n, e in results["models"].items() if e.get("control")]
    write_results(out / "results.json", results)


def summarise(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {name: {k: float(np.round(v, 4)) for k, v in e["metrics"].items()} for name, e in results["models"].items()}


def qa_cached(model: str | Path, task: ForgetTask, cfg: EvalConfig, name: str, oracle_eval,
              use_cache: bool = True):
    """The QA suite's (metrics, per_item, rows) of an immutable model, through the shared cache."""
    def compute():
        m, tok = load_model(model)
        return qa_evaluate(task, cfg)(m, tok, name, oracle_eval)
    return cached_eval("qa-eval", model, [task.fingerprint(), cfg, name, oracle_eval and oracle_eval[0]], use_cache,
                       compute)


def evaluate_cached(model_dir: Path, task: ForgetTask, cfg: EvalConfig, oracle: EvalResult | None,
                    use_cache: bool = True) -> EvalResult:
    """`qa_cached` as an `EvalResult` (scripts): the oracle's own evaluation when `oracle` is None."""
    metrics, per_item, _ = qa_cached(model_dir, task, cfg, "oracle" if oracle is None else "target",
                                     None if oracle is None else (oracle.metrics, oracle.per_item, []), use_cache)
    return EvalResult(metrics, per_item)


def evaluate_models(task: ForgetTask, model: str, oracle: str | None, out: Path | None,
                    cfg: EvalConfig | None = None, command: str = "", log=print) -> dict[str, Any]:
    """`obliviate eval --benchmark ...`: evaluate a model (and its oracle) on a task, no unlearning."""
    cfg = cfg or EvalConfig()
    results: dict[str, Any] = {"benchmark": task.name, "seed": None, "config": {"eval": cfg.model_dump()},
                               "provenance": provenance(), "status": "done", "models": {}}
    oracle_eval = qa_cached(oracle, task, cfg, "oracle", None) if oracle else None
    metrics, per_item, rows = qa_cached(model, task, cfg, "model", oracle_eval)
    results["models"]["model"] = {"metrics": metrics, "per_item": per_item, "path": model_location(model),
                                  **not_measured(metrics, oracle_eval is not None)}
    if oracle_eval is not None:
        results["models"]["oracle"] = {"metrics": oracle_eval[0], "per_item": oracle_eval[1],
                                       "path": model_location(oracle)}
    if out is not None:
        write_results(out / "results.json", results)
        write_per_item(out / "per_item.jsonl", rows)
        write_report(out, results, command)
    return results


def audit_run_dir(run_dir: Path, audit_cfg, log=print) -> dict[str, Any]:
    """`obliviate audit RUN_DIR`: rebuild the run's benchmark declaration (results.json `rebuild`,
    config.yaml) and audit every model of the run with its K measures."""
    from obliviate.benchmarks.spec import declare
    from obliviate.report.results import load_results

    results = load_results(run_dir)
    cfg = _run_config(run_dir)
    rebuild = results.get("rebuild") or {"benchmark": "world", "options": {}}
    bench = declare(rebuild["benchmark"], cfg, log, **rebuild.get("options", {}))
    audit_run(run_dir, results, bench, audit_cfg, cfg.run_seed, log, cfg.eval)
    write_report(run_dir, results, f"obliviate audit {run_dir}", bench.notes)
    return results


def _run_config(run_dir: Path) -> RunConfig:
    import yaml

    from obliviate.config import parse_run_config

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise DataError(f"{cfg_path}: no such file (not a run directory?)")
    return parse_run_config(yaml.safe_load(cfg_path.read_text()) or {}, str(cfg_path))


def run_user(model_name: str, forget: Path, retain: Path, holdout: Path | None, cfg: RunConfig, out: Path,
             oracle: str | None = None, log=print, command: str = "obliviate unlearn",
             resume: bool = False) -> dict[str, Any]:
    """`obliviate unlearn`: any causal LM, the user's forget/retain files, the methods of `cfg`,
    through the one loop (the audit when `cfg.audit.enabled`)."""
    from obliviate.benchmarks.spec import declare

    bench = declare("user", cfg, log, forget=str(Path(forget).resolve()), retain=str(Path(retain).resolve()),
                    holdout=str(Path(holdout).resolve()) if holdout else None, model=model_location(model_name),
                    oracle=model_location(oracle) if oracle else None)
    return run_benchmark(bench, cfg, out, log, command, resume=resume)


def audit_external(model: str, target: str, oracle: str | None, forget: Path, retain: Path,
                   holdout: Path | None, out: Path, audit_cfg, seed: int = 0, log=print,
                   command: str = "obliviate audit", prompt=None) -> dict[str, Any]:
    """`obliviate audit --model U --target T [--oracle O] --forget F --retain R --out DIR`: the
    one loop with no method to run: T, O and U ("unlearned") evaluated and audited."""
    from obliviate.benchmarks.spec import declare

    cfg = RunConfig(benchmark="user", seed=seed, methods=[], audit=audit_cfg, save_models=False,
                    **({"prompt": prompt} if prompt is not None else {}))
    bench = declare("user", cfg, log, forget=str(Path(forget).resolve()), retain=str(Path(retain).resolve()),
                    holdout=str(Path(holdout).resolve()) if holdout else None, model=model_location(target),
                    oracle=model_location(oracle) if oracle else None, unlearned=model_location(model))
    return run_benchmark(bench, cfg, out, log, command)
