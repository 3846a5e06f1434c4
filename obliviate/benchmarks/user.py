"""`obliviate unlearn` / `obliviate audit --model`: any causal LM on the user's own files.

The files are read by `obliviate.data.jsonl.load_user_task` (question/answer or text records);
the QA metric suite and K = greedy answer accuracy, as for the embedded world. `unlearned=`
adds a model made elsewhere (evaluated and audited, not unlearned here).
"""

from __future__ import annotations

from pathlib import Path

from obliviate.audit import qa_knowledge
from obliviate.benchmarks.spec import Benchmark
from obliviate.config import RunConfig
from obliviate.pipeline import qa_evaluate


def declare(cfg: RunConfig, log=print, *, forget: str, retain: str, holdout: str | None = None, model: str,
            oracle: str | None = None, unlearned: str | None = None) -> Benchmark:
    from obliviate.data.jsonl import load_user_task

    task = load_user_task(Path(forget), Path(retain), Path(holdout) if holdout else None)
    models = {"target": model, "oracle": oracle} | ({"unlearned": unlearned} if unlearned else {})
    return Benchmark(key="user", name=task.name, task=task, models=models, evaluate=qa_evaluate(task, cfg.eval),
                     knowledge={cfg.eval.knowledge: qa_knowledge(task, cfg.eval)}, tiny=False,
                     sources={"forget": forget, "retain": retain, "holdout": holdout, "model": model,
                              "oracle": oracle},
                     fingerprint=[task.fingerprint(), cfg.eval],
                     options={"forget": forget, "retain": retain, "holdout": holdout, "model": model,
                              "oracle": oracle, "unlearned": unlearned})
