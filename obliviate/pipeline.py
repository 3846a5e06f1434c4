"""The whole job as one readable recipe: task -> target/oracle -> unlearn -> evaluate -> report.

Results are written after every model (atomically), so an interrupt loses at most the model
in progress; the run directory records the resolved config and provenance.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.config import RunConfig, dump_run_config
from obliviate.data.task import DataError, ForgetTask
from obliviate.evaluate import EvalConfig, EvalResult, evaluate, evaluate_with_reference, metric_intervals
from obliviate.memory import peak_memory
from obliviate.models.cache import cache_key, cache_root
from obliviate.models.load import load_model, save_model
from obliviate.report.results import provenance, write_per_item, write_results
from obliviate.report.tables import markdown_table
from obliviate.unlearn import UnlearnConfig, unlearn


def prepare_run_dir(out: Path, force: bool) -> Path:
    """A fresh run directory; an existing non-empty one is only replaced with `force`."""
    if out.exists() and any(out.iterdir()):
        if not force:
            raise DataError(f"{out}: run directory exists and is not empty (use --force to overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _model_identity(model_dir: Path) -> str:
    """Path + size + mtime of the weight files: cheap, and changes when the weights do."""
    parts = [str(model_dir.resolve())]
    for f in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def evaluate_cached(model_dir: Path, task: ForgetTask, cfg: EvalConfig, oracle: EvalResult | None,
                    use_cache: bool = True, desc: str = "evaluating") -> EvalResult:
    """Evaluate an immutable model (target, oracle) once; later runs read the cached result."""
    key = cache_key("eval", _model_identity(model_dir), task.fingerprint(), cfg)
    path = cache_root() / "evals" / f"{key}.json"
    if use_cache and path.is_file():
        data = json.loads(path.read_text())
        res = EvalResult(data["metrics"], data["per_item"], data["generations"])
    else:
        model, tokenizer = load_model(model_dir)
        res = evaluate(model, tokenizer, task, cfg, desc=desc)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"metrics": res.metrics, "per_item": res.per_item,
                                   "generations": res.generations}))
        tmp.replace(path)
    return evaluate_with_reference(res, oracle if oracle is not None else res)


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


def _entry(res: EvalResult, **extra: Any) -> dict[str, Any]:
    return {"metrics": res.metrics, "metrics_ci": metric_intervals(res), "per_item": res.per_item, **extra}


def unlearn_measured(model, tokenizer, task: ForgetTask, ucfg: UnlearnConfig, **kwargs: Any):
    """`unlearn` with its peak memory measured; returns (log, the record results.json keeps)."""
    with peak_memory() as peak:
        ulog = unlearn(model, tokenizer, task, ucfg, **kwargs)
    return ulog, {"status": ulog.status, "message": ulog.message, "steps": ulog.steps,
                  "seconds": round(ulog.seconds, 2), "tokens": ulog.tokens, "lr": ucfg.lr, "epochs": ucfg.epochs,
                  "max_steps": ucfg.max_steps, "batch_size": ucfg.batch_size, "params": ucfg.params,
                  "peak_memory_mb": round(peak.mb, 1), "peak_memory_device": peak.device,
                  "final_loss": ulog.losses[-1] if ulog.losses else None}


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


def unlearn_controls(names: list[str], task: ForgetTask, dirs: dict[str, Path], cfg: RunConfig, out: Path,
                     oracle: EvalResult | None, tiny: bool = True,
                     log=print) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Unlearn each planted control (e.g. hide_q4) from the target, evaluate and save it like a
    method, marked `"control": True`, so the audit scores it next to the methods: a control that
    hides knowledge on purpose must get a "hides" verdict, or the audit cannot see hiding.
    Returns ({name: results.json entry}, per-item rows)."""
    entries: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for name in names:
        ucfg = cfg.unlearn_config(name, tiny=tiny)
        model, tokenizer = load_model(dirs["target"])
        ulog, info = unlearn_measured(model, tokenizer, task, ucfg, desc=f"unlearning {name} (control)")
        res = evaluate(model, tokenizer, task, cfg.eval, oracle=oracle, desc=f"evaluating {name}")
        log(f"{name} (planted control): forget acc {res.metrics['forget_acc']:.3f}, retain acc "
            f"{res.metrics['retain_acc']:.3f}")
        entries[name] = _entry(res, unlearn=info, control=True)
        rows += per_item_rows(name, task, res)
        if cfg.save_models:
            save_model(model, tokenizer, out / "models" / name)
        if ulog.status == "interrupted":
            break
    return entries, rows


def write_report(out: Path, results: dict[str, Any], command: str) -> Path:
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
        audit = {**audit, "models": {n: e["audit"] for n, e in results["models"].items() if "audit" in e}}
        from obliviate.report.tables import audit_markdown

        lines += ["", "## Audit: does the knowledge come back?", "",
                  "Share of the forgetting each attack undoes, beyond what the same attack gives the "
                  "oracle: ((K(A(U)) - K(U)) - max(0, K(A(O)) - K(O))) / (K(T) - K(U)), K = forget accuracy on "
                  "the attack's probes, clipped to [0, 1] (audit.json also has SPEC's `retained`, "
                  "`recovered` and `recovered_vs_oracle`). The target and oracle columns are controls: "
                  "their forget accuracy under each attack (an attack must not destroy or create knowledge).",
                  "", audit_markdown(audit), ""]
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
    lines += ["", "## Reading the table", "",
              "- **forget acc / prob / ROUGE**: how much of the forget set the model still produces "
              "(lower is better; the oracle's value is the floor that never-seen data reaches).",
              "- **retain acc**, **model utility** (TOFU's harmonic mean over retain and world facts): "
              "what unlearning must keep (compare with the target).",
              "- **forget quality** (TOFU): KS-test p-value between the model's and the oracle's "
              "truth ratios on the forget set; higher = indistinguishable from never having seen it.",
              "- **privleak** (MUSE): Min-K% membership AUC relative to the oracle, in %; "
              "-100 = the forget set is as exposed as in the target, 0 = like the oracle.",
              "- **MinK AUC**: how well Min-K% (k = 0.4) tells forget items from never-seen holdout items "
              "(0.5 = not at all).", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_world(cfg: RunConfig, out: Path, log=print, command: str = "obliviate demo") -> dict[str, Any]:
    """`obliviate demo`: the embedded world end to end, written to `out`."""
    from obliviate.data.world import generate_world, world_corpus
    from obliviate.methods import get_method
    from obliviate.models.prepare import prepare_tiny_models

    for m in cfg.methods:
        get_method(m)  # fail on an unknown name before any training
    resolve_controls(cfg, tiny=True)
    world_cfg = cfg.world.model_copy(update={"seed": cfg.seed})
    task = generate_world(world_cfg)
    log(f"world: {len(task.forget)} forget / {len(task.retain)} retain facts, "
        f"{len(task.holdout)} holdout, {sum(len(v) for v in task.utility.values())} world facts")
    dirs = prepare_tiny_models(task, world_corpus(task), cfg.model, cfg.train, cfg.seed, cfg.cache, log)
    return run_task(task, dirs, cfg, out, log, command)


def run_task(task: ForgetTask, dirs: dict[str, Path], cfg: RunConfig, out: Path, log=print,
             command: str = "obliviate demo", tiny: bool = True,
             sources: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate target and oracle, unlearn with each of `cfg.methods`, evaluate, audit, report.

    `dirs` holds the "target" and (optional) "oracle" model directories. `tiny`: the models are
    obliviate's tiny ones, so the per-method settings tuned for them (WORLD_METHOD_DEFAULTS)
    apply; for any other model only the method's published defaults and the user's overrides do.
    """
    from obliviate.methods import get_method

    for m in cfg.methods:
        get_method(m)
    control_names = resolve_controls(cfg, tiny)
    out.mkdir(parents=True, exist_ok=True)
    dump_run_config(cfg, out / "config.yaml")
    (out / "provenance.json").write_text(json.dumps(provenance(), indent=1))
    results: dict[str, Any] = {"benchmark": task.name, "seed": cfg.seed, "config": cfg.model_dump(mode="json"),
                               "provenance": provenance(), "status": "running", "models": {}}
    if sources:
        results["sources"] = sources
    rows: list[dict[str, Any]] = []

    def save(status: str = "running") -> None:
        results["status"] = status
        write_results(out / "results.json", results)

    t0 = time.perf_counter()
    oracle = (evaluate_cached(dirs["oracle"], task, cfg.eval, None, cfg.cache, "evaluating oracle")
              if dirs.get("oracle") else None)
    target = evaluate_cached(dirs["target"], task, cfg.eval, oracle, cfg.cache, "evaluating target")
    log(f"target{' and oracle' if oracle else ''} evaluated ({time.perf_counter() - t0:.1f} s)")
    for name, res in (("target", target), ("oracle", oracle)):
        if res is None:
            continue
        results["models"][name] = _entry(res, path=str(dirs[name]))
        rows += per_item_rows(name, task, res)
        if cfg.save_models and tiny:  # a real model is referenced by its path, not copied
            shutil.copytree(dirs[name], out / "models" / name)
    save()
    try:
        for method in cfg.methods:
            ucfg: UnlearnConfig = cfg.unlearn_config(method, tiny=tiny)
            model, tokenizer = load_model(dirs["target"])
            ulog, info = unlearn_measured(model, tokenizer, task, ucfg, desc=f"unlearning {method}")
            res = evaluate(model, tokenizer, task, cfg.eval, oracle=oracle, desc=f"evaluating {method}")
            log(f"{method}: {ulog.steps} steps in {ulog.seconds:.1f} s, forget acc "
                f"{res.metrics['forget_acc']:.3f}, retain acc {res.metrics['retain_acc']:.3f}"
                + (f" ({ulog.message})" if ulog.message else ""))
            results["models"][method] = _entry(res, unlearn=info)
            rows += per_item_rows(method, task, res)
            if cfg.save_models:
                save_model(model, tokenizer, out / "models" / method)
            save()
            if ulog.status == "interrupted":
                raise KeyboardInterrupt
        entries, control_rows = unlearn_controls(control_names, task, dirs, cfg, out, oracle, tiny, log)
        results["models"].update(entries)
        rows += control_rows
        save()
        if any(e["unlearn"]["status"] == "interrupted" for e in entries.values()):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        save("interrupted")
        write_per_item(out / "per_item.jsonl", rows)
        write_report(out, results, command)
        log(f"interrupted: results so far are in {out}")
        raise
    write_per_item(out / "per_item.jsonl", rows)
    if cfg.audit.enabled:
        audit_run(out, results, task, cfg.audit, cfg.eval, cfg.seed, log)
    save("done")
    write_report(out, results, command)
    return results


def audit_run(out: Path, results: dict[str, Any], task: ForgetTask, audit_cfg, eval_cfg: EvalConfig,
              seed: int, log=print) -> dict[str, Any]:
    """Audit every model saved in `out/models`, write audit.json, add the audit to `results`."""
    from obliviate.audit import audit_models

    models = {}
    for name in results["models"]:
        mdir = out / "models" / name
        if not mdir.is_dir():
            mdir = Path(results["models"][name].get("path", ""))
        if not (mdir / "config.json").is_file():
            raise DataError(f"{out}: no saved model for {name!r} (run without --no-save-models to audit)")
        model, tok = load_model(mdir)
        models[name] = (model, tok, mdir)
    t0 = time.perf_counter()
    audit = audit_models(models, task, audit_cfg.attacks, eval_cfg, seed, audit_cfg.params, log=log)
    audit["seconds"] = round(time.perf_counter() - t0, 1)
    _attach_audit(out, results, audit)
    for name, v in audit["verdicts"].items():
        log(f"{name}: {v}")
    return audit


def _attach_audit(out: Path, results: dict[str, Any], audit: dict[str, Any]) -> None:
    """audit.json holds the whole audit; results.json gets it per model plus the summary."""
    (out / "audit.json").write_text(json.dumps(audit, indent=1, default=float))
    for name, per_attack in audit["models"].items():
        results["models"][name]["audit"] = per_attack
    results["audit"] = {k: audit[k] for k in ("attacks", "verdicts", "diagnostics", "baseline", "seconds")
                        if k in audit}
    results["audit"]["controls"] = [n for n, e in results["models"].items() if e.get("control")]
    write_results(out / "results.json", results)


def summarise(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {name: {k: float(np.round(v, 4)) for k, v in e["metrics"].items()} for name, e in results["models"].items()}


def _load_eval(name: str, task: ForgetTask, cfg: EvalConfig, oracle: EvalResult | None, desc: str) -> EvalResult:
    path = Path(name)
    if path.is_dir():
        return evaluate_cached(path, task, cfg, oracle, desc=desc)
    model, tokenizer = load_model(name)
    return evaluate(model, tokenizer, task, cfg, oracle=oracle, desc=desc)


def evaluate_models(task: ForgetTask, model: str, oracle: str | None, out: Path | None, force: bool = False,
                    cfg: EvalConfig | None = None, command: str = "", log=print) -> dict[str, Any]:
    """`obliviate eval --benchmark ...`: evaluate a model (and its oracle) on a task."""
    cfg = cfg or EvalConfig()
    if out is not None:
        prepare_run_dir(out, force)
    results: dict[str, Any] = {"benchmark": task.name, "seed": None, "config": {"eval": cfg.model_dump()},
                               "provenance": provenance(), "status": "done", "models": {}}
    oracle_res = _load_eval(oracle, task, cfg, None, "evaluating oracle") if oracle else None
    res = _load_eval(model, task, cfg, oracle_res, "evaluating model")
    results["models"]["model"] = _entry(res, path=model)
    if oracle_res is not None:
        results["models"]["oracle"] = _entry(evaluate_with_reference(oracle_res, oracle_res), path=oracle)
    if out is not None:
        write_results(out / "results.json", results)
        write_per_item(out / "per_item.jsonl", per_item_rows("model", task, res))
        write_report(out, results, command)
    return results


def run_user(model_name: str, task: ForgetTask, ucfg: UnlearnConfig, ecfg: EvalConfig, out: Path,
             oracle: str | None = None, log=print, command: str = "obliviate unlearn",
             sources: dict[str, str | None] | None = None) -> dict[str, Any]:
    """`obliviate unlearn`: any causal LM, the user's forget/retain files, one method.
    `sources` (forget/retain/holdout paths) go into config.yaml so `obliviate audit RUN_DIR` can reread them."""
    results: dict[str, Any] = {"benchmark": task.name, "seed": ucfg.seed,
                               "config": {"unlearn": ucfg.model_dump(), "eval": ecfg.model_dump(),
                                          "model": model_name, "oracle": oracle, "seed": ucfg.seed,
                                          **(sources or {})},
                               "provenance": provenance(), "status": "running", "models": {}}
    (out / "config.yaml").write_text(json.dumps(results["config"], indent=1))
    oracle_res = _load_eval(oracle, task, ecfg, None, "evaluating oracle") if oracle else None
    model, tokenizer = load_model(model_name)
    before = evaluate(model, tokenizer, task, ecfg, oracle=oracle_res, desc="evaluating target")
    results["models"]["target"] = _entry(before, path=model_name)
    if oracle_res is not None:
        results["models"]["oracle"] = _entry(evaluate_with_reference(oracle_res, oracle_res), path=oracle)
    write_results(out / "results.json", results)
    ulog = unlearn(model, tokenizer, task, ucfg)
    log(f"{ucfg.method}: {ulog.status}, {ulog.steps} steps in {ulog.seconds:.1f} s {ulog.message}")
    save_model(model, tokenizer, out / "models" / ucfg.method)
    after = evaluate(model, tokenizer, task, ecfg, oracle=oracle_res, desc="evaluating unlearned")
    results["models"][ucfg.method] = _entry(after, unlearn={
        "status": ulog.status, "message": ulog.message, "steps": ulog.steps, "seconds": round(ulog.seconds, 2),
        "tokens": ulog.tokens, "lr": ucfg.lr, "epochs": ucfg.epochs, "params": ucfg.params})
    results["status"] = "interrupted" if ulog.status == "interrupted" else "done"
    write_results(out / "results.json", results)
    write_per_item(out / "per_item.jsonl", per_item_rows("target", task, before)
                   + per_item_rows(ucfg.method, task, after))
    write_report(out, results, command)
    return results


def task_of_run(run_dir: Path, results: dict[str, Any]) -> tuple[ForgetTask, Any, EvalConfig, int]:
    """Rebuild the task a run directory was made from (world: from its config; files: reread)."""
    import yaml

    from obliviate.config import parse_run_config

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise DataError(f"{cfg_path}: no such file (not a run directory?)")
    raw = yaml.safe_load(cfg_path.read_text()) or {}
    if "forget" in raw and "retain" in raw:  # obliviate unlearn / audit --model
        from obliviate.data.jsonl import load_user_task

        task = load_user_task(Path(raw["forget"]), Path(raw["retain"]),
                              Path(raw["holdout"]) if raw.get("holdout") else None)
        return task, None, EvalConfig(**raw.get("eval", {})), int(raw.get("seed") or 0)
    from obliviate.data.world import generate_world

    cfg = parse_run_config(raw, str(cfg_path))
    return generate_world(cfg.world.model_copy(update={"seed": cfg.seed})), cfg, cfg.eval, cfg.seed


def audit_run_dir(run_dir: Path, audit_cfg, log=print) -> dict[str, Any]:
    """`obliviate audit RUN_DIR`."""
    from obliviate.report.results import load_results

    results = load_results(run_dir)
    task, _, eval_cfg, seed = task_of_run(run_dir, results)
    audit_run(run_dir, results, task, audit_cfg, eval_cfg, seed, log)
    write_report(run_dir, results, f"obliviate audit {run_dir}")
    return results


def audit_external(model: str, target: str, oracle: str | None, forget: Path, retain: Path,
                   holdout: Path | None, out: Path, audit_cfg, seed: int = 0, force: bool = False,
                   log=print, command: str = "obliviate audit") -> dict[str, Any]:
    """`obliviate audit --model U --target T [--oracle O] --forget F --retain R --out DIR`."""
    from obliviate.audit import audit_models
    from obliviate.data.jsonl import load_user_task

    task = load_user_task(forget, retain, holdout)
    prepare_run_dir(out, force)
    cfg = EvalConfig()
    config = {"model": model, "target": target, "oracle": oracle, "forget": str(forget), "retain": str(retain),
              "holdout": str(holdout) if holdout else None, "seed": seed, "eval": cfg.model_dump(),
              "audit": audit_cfg.model_dump()}
    (out / "config.yaml").write_text(json.dumps(config, indent=1))
    names = {"unlearned": model, "target": target} | ({"oracle": oracle} if oracle else {})
    loaded = {}
    for name, path in names.items():
        m, tok = load_model(path)
        loaded[name] = (m, tok, Path(path) if Path(path).is_dir() else None)
    oracle_res = evaluate(*loaded["oracle"][:2], task, cfg) if oracle else None
    results: dict[str, Any] = {"benchmark": task.name, "seed": seed, "config": config, "provenance": provenance(),
                               "status": "done", "models": {}}
    for name, (m, tok, _) in loaded.items():
        ref = oracle_res if name != "oracle" else None
        res = evaluate(m, tok, task, cfg, oracle=ref, desc=f"evaluating {name}")
        results["models"][name] = _entry(evaluate_with_reference(res, oracle_res or res) if oracle_res else res,
                                         path=names[name])
    audit = audit_models(loaded, task, audit_cfg.attacks, cfg, seed, audit_cfg.params, log=log)
    _attach_audit(out, results, audit)
    write_report(out, results, command)
    return results
