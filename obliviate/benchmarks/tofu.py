"""`obliviate bench tofu`: the TOFU protocol (Maini et al. 2024) on the real TOFU files.

Tiny models by default: `prepare_tofu_models` trains a target on TOFU and the retain-only
oracle of the split from scratch (cached); with `model=`/`oracle=` the same protocol runs on
real fine-tuned TOFU models (the published Llama/Phi ones). Unlearn the forget split with each
method, evaluate with the TOFU suite (forget quality against the oracle, model utility over
retain / real authors / world facts, truth ratio, probability, ROUGE, privleak against the
holdout authors) and audit. TOFU answers are sentences: the audit's knowledge measure is
ROUGE-L recall of the greedy answer (not exact-match accuracy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from obliviate.audit import qa_knowledge
from obliviate.benchmarks.spec import Benchmark
from obliviate.config import RunConfig
from obliviate.data.tofu import load_tofu, packaged_tofu_dir
from obliviate.models.prepare import TOFU_MODEL, TOFU_TRAIN, prepare_tofu_models
from obliviate.pipeline import qa_evaluate, run_benchmark

# The methods TOFU itself reports, plus NPO (the strongest published baseline).
DEFAULT_METHODS = ["ga", "gd", "npo", "npo_kl", "idk_dpo"]


def tofu_models(cfg: RunConfig, data: Path | None, split: str, authors: int | None, log=print) -> dict[str, Path]:
    """The tiny target and the split's oracle (TOFU's model/train settings unless the run file sets them)."""
    model_cfg = cfg.model if "model" in cfg.model_fields_set else TOFU_MODEL
    train_cfg = cfg.train if "train" in cfg.model_fields_set else TOFU_TRAIN
    dirs = prepare_tofu_models(data or packaged_tofu_dir(), (split,), authors, model_cfg, train_cfg, cfg.seed,
                               cfg.cache, log, cfg.prompt)
    return {"target": dirs["target"], "oracle": dirs[split]}


def declare(cfg: RunConfig, log=print, split: str = "forget10", authors: int | None = None,
            data: str | None = None, model: str | None = None, oracle: str | None = None) -> Benchmark:
    """TOFU's declaration: the QA suite, K = ROUGE-L recall of the greedy answer."""
    task = load_tofu(Path(data) if data else None, split, authors)
    log(f"TOFU {split}{f' ({authors} retain authors)' if authors else ''}: {len(task.forget)} forget / "
        f"{len(task.retain)} retain QA, {len(task.holdout)} holdout")
    ecfg = cfg.eval.model_copy(update={"knowledge": "rouge"})
    dirs: dict[str, Any] = ({"target": model, "oracle": oracle} if model
                            else tofu_models(cfg, Path(data) if data else None, split, authors, log))
    return Benchmark(key="tofu", name=task.name, task=task, models=dirs, evaluate=qa_evaluate(task, ecfg),
                     knowledge={"rouge": qa_knowledge(task, ecfg)}, tiny=model is None,
                     sources={"data": str(data or packaged_tofu_dir()), "split": split, "authors": authors,
                              "model": model, "oracle": oracle},
                     fingerprint=[task.fingerprint(), ecfg],
                     options={"split": split, "authors": authors, "data": str(data) if data else None,
                              "model": model, "oracle": oracle})


def run(out: Path, cfg: RunConfig, split: str = "forget10", authors: int | None = None, data: Path | None = None,
        model: str | None = None, oracle: str | None = None, log=print,
        command: str = "obliviate bench tofu", resume: bool = False) -> dict[str, Any]:
    from obliviate.benchmarks.spec import precheck

    precheck(cfg, text=False)  # before any data is read or model trained
    cfg = cfg.model_copy(update={"benchmark": "tofu",
                                 "eval": cfg.eval.model_copy(update={"knowledge": "rouge"})})
    bench = declare(cfg, log, split, authors, str(data) if data else None, model, oracle)
    return run_benchmark(bench, cfg, out, log, command, resume=resume)
