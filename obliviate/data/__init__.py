"""Benchmark data: the task model (`task`), loaders (`world`, `tofu`, `jsonl`) and batching (`collate`).

Kept import-light: nothing heavy (torch, transformers) is imported here.
"""

# Benchmark name -> one-line description (what `--benchmark` accepts).
BENCHMARKS: dict[str, str] = {
    "world": "the embedded fictitious world (default)",
    "tofu": "TOFU (Maini et al. 2024): 200 fictitious authors, forget01/05/10 splits; the published "
            "locuslab/TOFU files ship with obliviate (MIT)",
    "muse": "MUSE-News (Shi et al. 2024): 889 BBC forget articles; VerbMem, KnowMem, PrivLeak; read from a "
            "local copy of muse-bench/MUSE-News (--data)",
    "tdec": "TDEC forget sets (Jang et al. 2022): 32 Pile samples; memorisation accuracy and extraction "
            "likelihood EL10 (--data)",
    "wmdp": "WMDP (Li et al. 2024): bio/chem/cyber multiple-choice hazardous-knowledge questions (--data)",
    "semeval": "SemEval-2025 Task 4 (Ramakrishna et al. 2025): forget/retain sentence-completion and QA probes "
               "over 3 tasks; the published parquet/JSONL layout (--data)",
    "rwku": "RWKU (Jin et al. 2024): real people as unlearning targets; forget probes at 3 levels (cloze, QA, "
            "adversarial), neighbour probes, MIA texts; the jinzhuoran/RWKU layout (--data, --subject)",
    "custom": "your own forget/retain (and optional holdout) files: JSON Lines, JSON array or CSV of "
              "{question, answer} or {text} records",
}
