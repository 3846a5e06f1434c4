"""The loop shared by benchmarks that score with their own metrics (MUSE, SemEval-2025 Task 4).

`run_benchmark` evaluates the oracle and the target (cached for immutable local models), unlearns
a copy of the target with each method on a training task, evaluates it, and writes the run
directory after every model: config.yaml, provenance.json, results.json (with `columns`, the
summary table of the benchmark's own metrics), per_item.jsonl, report.md and models/NAME/.
The generic suite (`obliviate.evaluate`) and the recovery audit are not run: both measure
question answering, and these benchmarks score generations and text losses their own way.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.config import RunConfig, dump_run_config
from obliviate.data.collate import Encoded, pad_id_of
from obliviate.data.task import DataError, ForgetTask
from obliviate.models.cache import cache_key, cache_root
from obliviate.models.load import load_model, save_model
from obliviate.pipeline import unlearn_measured
from obliviate.report.html import write_html_report
from obliviate.report.results import provenance, write_per_item, write_results
from obliviate.report.tables import markdown_table
from obliviate.unlearn import UnlearnConfig

# evaluate(model, tokenizer, name, oracle_metrics) -> (metrics, per-item rows)
EvalFn = Callable[[Any, Any, str, dict[str, float] | None], tuple[dict[str, float], list[dict[str, Any]]]]


def check_methods(methods: list[str], text: bool = True) -> None:
    """Fail on an unknown method, or (text training items) one that needs questions, before any training."""
    from obliviate.methods import get_method

    for m in methods:
        method = get_method(m)
        if text and method.refusals:
            raise DataError(f"method {m!r} needs questions to refuse, and this benchmark unlearns raw text; "
                            f"pick another method (e.g. ga, gd, npo, npo_gd)")


def with_method_defaults(cfg: RunConfig, defaults: dict[str, dict[str, Any]]) -> RunConfig:
    """`cfg` with a benchmark's per-method settings under the run file's `method_overrides`
    (the resolved values are what config.yaml records)."""
    merged: dict[str, dict[str, Any]] = {}
    for method in set(defaults) | set(cfg.method_overrides):
        base, user = defaults.get(method, {}), cfg.method_overrides.get(method, {})
        entry = {**base, **{k: v for k, v in user.items() if k != "params"}}
        params = {**base.get("params", {}), **user.get("params", {})}
        if params:
            entry["params"] = params
        merged[method] = entry
    return cfg.model_copy(update={"method_overrides": merged})


def _identity(model: str | Path) -> str | None:
    """A cache identity for a local model directory (None for a Hub id: not cached)."""
    from obliviate.pipeline import _model_identity

    path = Path(model)
    return _model_identity(path) if (path / "config.json").is_file() else None


def cached_eval(kind: str, model: str | Path, fingerprint: Any, use_cache: bool,
                compute: Callable[[], tuple[dict[str, float], list[dict[str, Any]]]]
                ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Evaluate an immutable model once per (model weights, data, settings); later runs read it."""
    ident = _identity(model)
    if ident is None or not use_cache:
        return compute()
    path = cache_root() / "evals" / f"{cache_key(kind, ident, fingerprint)}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return data["metrics"], data["rows"]
    metrics, rows = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"metrics": metrics, "rows": rows}, default=float))
    tmp.replace(path)
    return metrics, rows


def text_nll(model, tokenizer, texts: list[str], max_length: int | None, batch_size: int = 16) -> np.ndarray:
    """Mean token NLL of each text after BOS (right-truncated to `max_length` tokens in all)."""
    from obliviate.evaluate import score_sequences

    bos = list(tokenizer("", add_special_tokens=True)["input_ids"])
    encoded = []
    for t in texts:
        ids = list(tokenizer(t, add_special_tokens=False)["input_ids"])
        prompt, rest = (bos, ids) if bos else (ids[:1], ids[1:])
        if max_length is not None:
            rest = rest[: max(1, max_length - len(prompt))]
        encoded.append(Encoded(prompt_ids=prompt, answer_ids=rest))
    model.eval()
    scored = score_sequences(model, encoded, pad_id_of(tokenizer), batch_size)
    return np.array([-float(r["logp"].mean()) if len(r["logp"]) else float("nan") for r in scored])


def not_measured(metrics: dict[str, float], oracle_metrics: dict[str, float] | None) -> dict[str, Any]:
    """`{"not_measured": {metric: reason}}` for the oracle-relative metrics a model without an
    oracle to compare with has as NaN (empty when there is an oracle)."""
    from obliviate.evaluate import NO_ORACLE, ORACLE_METRICS

    if oracle_metrics is not None:
        return {}
    missing = {k: NO_ORACLE for k in ORACLE_METRICS if k in metrics and not np.isfinite(metrics[k])}
    return {"not_measured": missing} if missing else {}


def _report(out: Path, results: dict[str, Any], command: str, notes: list[str]) -> Path:
    lines = [f"# obliviate run — {results['benchmark']}", "", f"Command: `{command}`", "",
             markdown_table(results), "", "## Unlearning runs", "",
             "| method | status | steps | lr | seconds | tokens/s |", "|---|---|---|---|---|---|"]
    for name, entry in results["models"].items():
        u = entry.get("unlearn")
        if u:
            tps = u["tokens"] / u["seconds"] if u["seconds"] else float("nan")
            lines.append(f"| {name} | {u['status']} | {u['steps']} | {u['lr']:g} | {u['seconds']:.1f} | {tps:.0f} |")
            if u.get("message"):
                lines.append(f"|  | {u['message']} | | | | |")
    lines += ["", "## Reading the table", "", *notes, ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    write_html_report(out, results, command)
    return path


def run_benchmark(out: Path, cfg: RunConfig, benchmark: str, dirs: dict[str, Any], train_task: ForgetTask,
                  evaluate_model: EvalFn, columns: list[list[str]], fingerprint: Any, *, tiny: bool,
                  method_defaults: dict[str, dict[str, Any]] | None = None, sources: dict[str, Any] | None = None,
                  extra: dict[str, Any] | None = None, notes: list[str] | None = None, log=print,
                  command: str = "") -> dict[str, Any]:
    """Oracle and target, then each of `cfg.methods` unlearned on `train_task` (text items) and
    evaluated with `evaluate_model`; results written after every model. `dirs`: "target" and
    optional "oracle" (directories or Hub ids). `fingerprint`: what the data and evaluation
    settings are, for the target/oracle evaluation cache. With `tiny`, `method_defaults` (the
    benchmark's settings for its tiny models) sit under the user's `method_overrides`."""
    check_methods(cfg.methods, text=all(it.is_text for it in train_task.forget))
    if tiny and method_defaults:
        cfg = with_method_defaults(cfg, method_defaults)
    out.mkdir(parents=True, exist_ok=True)
    dump_run_config(cfg, out / "config.yaml")
    prov = provenance()
    (out / "provenance.json").write_text(json.dumps(prov, indent=1))
    results: dict[str, Any] = {"benchmark": benchmark, "seed": cfg.seed, "config": cfg.model_dump(mode="json"),
                               "provenance": prov, "status": "running", "columns": columns, "models": {}}
    if sources:
        results["sources"] = sources
    results.update(extra or {})
    rows: list[dict[str, Any]] = []

    def save(status: str = "running") -> None:
        results["status"] = status
        write_results(out / "results.json", results)

    def evaluate_dir(name: str, oracle_metrics: dict[str, float] | None):
        def compute():
            t0 = time.perf_counter()
            model, tok = load_model(dirs[name])
            res = evaluate_model(model, tok, name, oracle_metrics)
            log(f"{name} evaluated ({time.perf_counter() - t0:.1f} s)")
            return res
        return cached_eval(f"{benchmark}-eval", dirs[name], [fingerprint, name, oracle_metrics], cfg.cache, compute)

    oracle_metrics = None
    for name in ("oracle", "target"):
        if not dirs.get(name):
            continue
        metrics, model_rows = evaluate_dir(name, oracle_metrics if name == "target" else None)
        if name == "oracle":
            oracle_metrics = metrics
        rows += model_rows
        results["models"][name] = {"metrics": metrics, "path": str(dirs[name]),
                                   **not_measured(metrics, oracle_metrics if name == "target" else None)}
        if cfg.save_models and tiny:  # a real model is referenced by its path, not copied
            shutil.copytree(dirs[name], out / "models" / name, dirs_exist_ok=True)
    results["models"] = {n: results["models"][n] for n in ("target", "oracle") if n in results["models"]}
    save()
    try:
        for method in cfg.methods:
            ucfg: UnlearnConfig = cfg.unlearn_config(method, tiny=False)
            if ucfg.stop_forget_acc is not None:  # greedy QA accuracy means nothing on raw text
                ucfg = ucfg.model_copy(update={"stop_forget_acc": None})
            # The divergence guard is off: these protocols run a fixed schedule, and their table
            # shows the collapse itself (retain NLL, retain scores) -- gradient ascent on the tiny
            # MUSE/SemEval models takes the retain NLL far past ln(vocab), as GA does in MUSE's paper.
            ucfg = ucfg.model_copy(update={"diverge_at": None})
            model, tokenizer = load_model(dirs["target"])
            ulog, info = unlearn_measured(model, tokenizer, train_task, ucfg, desc=f"unlearning {method}")
            metrics, model_rows = evaluate_model(model, tokenizer, method, oracle_metrics)
            log(f"{method}: {ulog.steps} steps in {ulog.seconds:.1f} s"
                + (f" ({ulog.message})" if ulog.message else ""))
            rows += model_rows
            results["models"][method] = {"metrics": metrics, "unlearn": info, **not_measured(metrics, oracle_metrics)}
            if cfg.save_models:
                save_model(model, tokenizer, out / "models" / method)
            save()
            if ulog.status == "interrupted":
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        save("interrupted")
        write_per_item(out / "per_item.jsonl", rows)
        _report(out, results, command, notes or [])
        log(f"interrupted: results so far are in {out}")
        raise
    write_per_item(out / "per_item.jsonl", rows)
    save("done")
    _report(out, results, command, notes or [])
    return results
