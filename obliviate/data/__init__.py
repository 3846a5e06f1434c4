"""Benchmark data: the task model (`task`), loaders (`world`, `tofu`, `jsonl`) and batching (`collate`).

Kept import-light: nothing heavy (torch, transformers) is imported here.
"""

# Benchmark name -> one-line description (what `--benchmark` accepts).
BENCHMARKS: dict[str, str] = {
    "world": "the embedded fictitious world (default)",
    "tofu": "TOFU (Maini et al. 2024): 200 fictitious authors, forget01/05/10 splits; read from a local "
            "copy of the Hugging Face locuslab/TOFU files",
    "custom": "your own forget/retain (and optional holdout) files: JSON Lines, JSON array or CSV of "
              "{question, answer} or {text} records",
}
