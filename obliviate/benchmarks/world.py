"""`obliviate demo`: the embedded fictitious world (SPEC section 1) as a benchmark declaration.

Tiny target and retain-only oracle trained on the world (cached); the QA metric suite
(`obliviate.evaluate`); K = greedy answer accuracy (`eval.knowledge`); `rtt` relearns half the
forget people's facts and probes the other half (split by subject).
"""

from __future__ import annotations

from obliviate.audit import qa_knowledge
from obliviate.benchmarks.spec import Benchmark
from obliviate.config import RunConfig
from obliviate.pipeline import qa_evaluate


def declare(cfg: RunConfig, log=print) -> Benchmark:
    from obliviate.data.world import generate_world, world_corpus
    from obliviate.models.prepare import prepare_tiny_models

    task = generate_world(cfg.world.model_copy(update={"seed": cfg.seed}))
    log(f"world: {len(task.forget)} forget / {len(task.retain)} retain facts, "
        f"{len(task.holdout)} holdout, {sum(len(v) for v in task.utility.values())} world facts")
    dirs = prepare_tiny_models(task, world_corpus(task), cfg.model, cfg.train, cfg.seed, cfg.cache, log, cfg.prompt)
    return Benchmark(key="world", name=task.name, task=task, models=dict(dirs), evaluate=qa_evaluate(task, cfg.eval),
                     knowledge={cfg.eval.knowledge: qa_knowledge(task, cfg.eval)},
                     fingerprint=[task.fingerprint(), cfg.eval])
