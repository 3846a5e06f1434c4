"""`obliviate bench NAME`: each published benchmark end to end, one file per benchmark.

Each module exposes `run(...)`, which loads the benchmark's files (validated, offline), gets
the models (tiny ones trained and cached from the benchmark's own data, or real Hugging Face
models given by the user), unlearns with the chosen methods, evaluates with the benchmark's
metrics and writes the same run directory as `obliviate demo` (`results.json`, `report.md`,
the resolved config).
"""
