"""Shared plumbing of the benchmarks that only mean something on real models (WMDP, RWKU).

These runners take a model (directory or Hub id), evaluate it with the benchmark's own metrics,
unlearn with each method in `cfg.methods` and evaluate each result the same way. They do not go
through `obliviate.pipeline.run_task` (whose metrics are the TOFU-style QA suite) but write the
same run directory: `config.yaml`, `provenance.json`, `results.json` (with the benchmark's own
summary columns in `results["columns"]`), `per_item.jsonl` and `report.md`.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from obliviate.benchmarks._runner import check_methods as shared_check
from obliviate.config import AuditConfig, RunConfig, dump_run_config
from obliviate.data.task import DataError, ForgetTask, QAItem
from obliviate.evaluate import EvalConfig, probe_set
from obliviate.models.load import load_model, save_model
from obliviate.pipeline import unlearn_measured
from obliviate.report.results import provenance, write_per_item, write_results
from obliviate.unlearn import UnlearnConfig

# How many items of a training corpus its NLL is measured on (the first ones).
CORPUS_EVAL_MAX = 200


def device() -> str | None:
    """Where a real model is evaluated: the GPU when there is one (load_model keeps it on the CPU otherwise)."""
    return "cuda" if torch.cuda.is_available() else None


def release() -> None:
    """Give the memory of dropped models back (call after `del model`)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_methods(methods: list[str], task: ForgetTask | None = None) -> None:
    """Fail before any model is loaded on an unknown method, or on one that needs questions to
    refuse when the forget set is raw text."""
    shared_check(methods, text=task is not None and any(it.is_text for it in task.forget))


def method_config(cfg: RunConfig, method: str, defaults: dict[str, dict[str, Any]]) -> UnlearnConfig:
    """The unlearning settings of `method` on a real model: the benchmark's published settings
    (`defaults[method]`) under what the user set, i.e. a field the run file sets in `unlearn:`
    or in `method_overrides.METHOD` wins over the benchmark's value."""
    bench = dict(defaults.get(method, {}))
    user_shared = cfg.unlearn.model_fields_set if "unlearn" in cfg.model_fields_set else set()
    bench = {k: v for k, v in bench.items() if k == "params" or k not in user_shared}
    user = cfg.method_overrides.get(method, {})
    merged = {**{k: v for k, v in bench.items() if k != "params"}, **{k: v for k, v in user.items() if k != "params"}}
    params = {**bench.get("params", {}), **user.get("params", {})}
    if params:
        merged["params"] = params
    cfg = cfg.model_copy(update={"method_overrides": {**cfg.method_overrides, method: merged}})
    return cfg.unlearn_config(method, tiny=False)


def corpus_nll(model, tokenizer, items: list[QAItem], cfg: EvalConfig) -> np.ndarray:
    """Per-item mean token NLL of texts (or QA answers), teacher-forced, on the first CORPUS_EVAL_MAX items."""
    items = items[:CORPUS_EVAL_MAX]
    if not items:
        return np.zeros(0)
    probe = probe_set(model, tokenizer, items, cfg, generate_text=False, perturbed=False)
    return np.asarray(probe["nll_avg"], dtype=np.float64)


class RunDir:
    """The run directory of one benchmark run: results written after every model, atomically."""

    def __init__(self, out: Path, cfg: RunConfig, benchmark: str, columns: list[list[str]],
                 sources: dict[str, Any], command: str, notes: list[str]):
        self.out, self.command, self.notes = Path(out), command, notes
        self.out.mkdir(parents=True, exist_ok=True)
        dump_run_config(cfg, self.out / "config.yaml")
        prov = provenance()
        (self.out / "provenance.json").write_text(json.dumps(prov, indent=1))
        self.results: dict[str, Any] = {"benchmark": benchmark, "seed": cfg.seed, "config": cfg.model_dump(mode="json"),
                                        "provenance": prov, "status": "running", "sources": sources,
                                        "columns": columns, "models": {}}
        self.rows: list[dict[str, Any]] = []

    def add(self, name: str, metrics: dict[str, float], per_item: dict[str, Any], rows: list[dict[str, Any]],
            **extra: Any) -> None:
        self.results["models"][name] = {"metrics": metrics, "per_item": per_item, **extra}
        self.rows += rows
        self.save()

    def save(self, status: str = "running") -> None:
        self.results["status"] = status
        write_results(self.out / "results.json", self.results)

    def finish(self, status: str = "done") -> dict[str, Any]:
        from obliviate.pipeline import write_report

        self.save(status)
        write_per_item(self.out / "per_item.jsonl", self.rows)
        path = write_report(self.out, self.results, self.command)
        # write_report's reading guide explains the QA suite's metrics: this benchmark's replace it.
        head = path.read_text().split("\n## Reading the table", 1)[0].rstrip("\n")
        path.write_text(head + "\n\n## Reading the table\n\n" + "\n".join(self.notes) + "\n")
        return self.results


def run_models(run_dir: RunDir, cfg: RunConfig, model: str, task: ForgetTask | None,
               evaluate_model: Callable[[Any, Any, str], tuple[dict[str, float], dict[str, Any], list[dict]]],
               method_defaults: dict[str, dict[str, Any]], log=print,
               others: dict[str, str] | None = None) -> dict[str, Any]:
    """Evaluate `model` (as "model") and each of `others` ({name: model}), then, when `task` is given,
    unlearn `model` with every method of `cfg.methods` and evaluate each result.
    `evaluate_model(model, tokenizer, name)` returns (metrics, per_item, per-item rows)."""
    dev = device()
    try:
        for name, path in {"model": model, **(others or {})}.items():
            t0 = time.perf_counter()
            m, tok = load_model(path, device=dev)
            metrics, per_item, rows = evaluate_model(m, tok, name)
            del m
            release()
            run_dir.add(name, metrics, per_item, rows, path=str(path))
            log(f"{name} ({path}) evaluated in {time.perf_counter() - t0:.1f} s")
        for method in cfg.methods if task is not None else []:
            ucfg = method_config(cfg, method, method_defaults)
            m, tok = load_model(model, device=dev)
            ulog, info = unlearn_measured(m, tok, task, ucfg, desc=f"unlearning {method}")
            log(f"{method}: {ulog.status}, {ulog.steps} steps in {ulog.seconds:.1f} s"
                + (f" ({ulog.message})" if ulog.message else ""))
            metrics, per_item, rows = evaluate_model(m, tok, method)
            if cfg.save_models:
                save_model(m, tok, run_dir.out / "models" / method)
            del m
            release()
            run_dir.add(method, metrics, per_item, rows, unlearn=info)
            if ulog.status == "interrupted":
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        run_dir.finish("interrupted")
        log(f"interrupted: results so far are in {run_dir.out}")
        raise
    return run_dir.finish("done")


def no_audit(cfg: RunConfig, benchmark: str) -> RunConfig:
    """The config as run: these benchmarks run no recovery audit (config.yaml says so)."""
    return cfg.model_copy(update={"benchmark": benchmark, "audit": AuditConfig(enabled=False)})


def require_file(path: Path | None, what: str) -> Path | None:
    if path is not None and not Path(path).is_file():
        raise DataError(f"{path}: no such file ({what})")
    return Path(path) if path is not None else None
