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
from obliviate.evaluate import EvalConfig, EvalResult, evaluate, evaluate_with_reference
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
    return {"metrics": res.metrics, "per_item": res.per_item, **extra}


def write_report(out: Path, results: dict[str, Any], command: str) -> Path:
    lines = [f"# obliviate run — {results['benchmark']}", "", f"Command: `{command}`", "",
             markdown_table(results), ""]
    lines += ["## Unlearning runs", "", "| method | status | steps | lr | seconds | tokens/s |", "|---|---|---|---|---|---|"]
    for name, entry in results["models"].items():
        u = entry.get("unlearn")
        if u:
            tps = u["tokens"] / u["seconds"] if u["seconds"] else float("nan")
            lines.append(f"| {name} | {u['status']} | {u['steps']} | {u['lr']:g} | {u['seconds']:.1f} | {tps:.0f} |")
            if u.get("message"):
                lines.append(f"|  | {u['message']} | | | | |")
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
    world_cfg = cfg.world.model_copy(update={"seed": cfg.seed})
    task = generate_world(world_cfg)
    out.mkdir(parents=True, exist_ok=True)
    dump_run_config(cfg, out / "config.yaml")
    (out / "provenance.json").write_text(json.dumps(provenance(), indent=1))
    log(f"world: {len(task.forget)} forget / {len(task.retain)} retain facts, "
        f"{len(task.holdout)} holdout, {sum(len(v) for v in task.utility.values())} world facts")
    dirs = prepare_tiny_models(task, world_corpus(task), cfg.model, cfg.train, cfg.seed, cfg.cache, log)
    results: dict[str, Any] = {"benchmark": task.name, "seed": cfg.seed, "config": cfg.model_dump(mode="json"),
                               "provenance": provenance(), "status": "running", "models": {}}
    rows: list[dict[str, Any]] = []

    def save(status: str = "running") -> None:
        results["status"] = status
        write_results(out / "results.json", results)

    t0 = time.perf_counter()
    oracle = evaluate_cached(dirs["oracle"], task, cfg.eval, None, cfg.cache, "evaluating oracle")
    target = evaluate_cached(dirs["target"], task, cfg.eval, oracle, cfg.cache, "evaluating target")
    log(f"target and oracle evaluated ({time.perf_counter() - t0:.1f} s)")
    for name, res in (("target", target), ("oracle", oracle)):
        results["models"][name] = _entry(res, path=str(dirs[name]))
        rows += per_item_rows(name, task, res)
        if cfg.save_models:
            shutil.copytree(dirs[name], out / "models" / name)
    save()
    try:
        for method in cfg.methods:
            ucfg: UnlearnConfig = cfg.unlearn_config(method)
            model, tokenizer = load_model(dirs["target"])
            ulog = unlearn(model, tokenizer, task, ucfg, desc=f"unlearning {method}")
            res = evaluate(model, tokenizer, task, cfg.eval, oracle=oracle, desc=f"evaluating {method}")
            log(f"{method}: {ulog.steps} steps in {ulog.seconds:.1f} s, forget acc "
                f"{res.metrics['forget_acc']:.3f}, retain acc {res.metrics['retain_acc']:.3f}"
                + (f" ({ulog.message})" if ulog.message else ""))
            unlearn_info = {"status": ulog.status, "message": ulog.message, "steps": ulog.steps,
                            "seconds": round(ulog.seconds, 2), "tokens": ulog.tokens, "lr": ucfg.lr,
                            "epochs": ucfg.epochs, "params": ucfg.params,
                            "final_loss": ulog.losses[-1] if ulog.losses else None}
            results["models"][method] = _entry(res, unlearn=unlearn_info)
            rows += per_item_rows(method, task, res)
            if cfg.save_models:
                save_model(model, tokenizer, out / "models" / method)
            save()
            if ulog.status == "interrupted":
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        save("interrupted")
        write_per_item(out / "per_item.jsonl", rows)
        write_report(out, results, command)
        log(f"interrupted: results so far are in {out}")
        raise
    save("done")
    write_per_item(out / "per_item.jsonl", rows)
    write_report(out, results, command)
    return results


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
             oracle: str | None = None, log=print, command: str = "obliviate unlearn") -> dict[str, Any]:
    """`obliviate unlearn`: any causal LM, the user's forget/retain files, one method."""
    results: dict[str, Any] = {"benchmark": task.name, "seed": ucfg.seed,
                               "config": {"unlearn": ucfg.model_dump(), "eval": ecfg.model_dump(),
                                          "model": model_name, "oracle": oracle},
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
