"""`obliviate bench NAME`: each published benchmark as a declaration (`spec.Benchmark`).

Each module exposes `declare(cfg, log, **options)`, which loads the benchmark's files (validated,
offline), gets the models (tiny ones trained and cached from the benchmark's own data, or real
Hugging Face models given by the user) and declares its metric suite, its audit K measures and
its relearning split; and `run(...)`, which hands the declaration to the one run loop
(`obliviate.pipeline.run_benchmark`): unlearn with the chosen methods, evaluate, audit, and write
the same run directory as `obliviate demo` (`results.json`, `audit.json`, `report.md`, the
resolved config).
"""
