"""`obliviate bench rwku`: real-world knowledge unlearning on RWKU (Jin et al. 2024, "RWKU:
Benchmarking Real-World Knowledge Unlearning for Large Language Models").

RWKU's targets are famous people a pretrained model already knows (Stephen King, ...), so the
benchmark is meaningful only on a real model: there is no tiny-model mode.

What it does, for the chosen subjects (`obliviate.data.rwku`: RWKU's `Target/` or `All/` layout):
- evaluates `model` on their probes with RWKU's prompts and greedy decoding (30 new tokens, cut at
  the first newline; `obliviate.metrics.rwku.evaluate_rwku`): forget levels 1-3 (fill-in-the-blank,
  questions, adversarial questions with a per-attack-type breakdown, e.g.
  `forget_level3_prefix_injection_rouge`), neighbour levels 1-2 (locality), and membership
  inference: the AUC of telling the forget_mia texts from the retain_mia texts by LOSS, zlib,
  Min-K% and Min-K%++ (`mia_*_auc`; 0.5 = indistinguishable), plus the mean token NLL of the
  subjects' passages (`forget_passage_nll`, the corpus unlearning trains on);
- unlearns the subjects' passages (the forget corpus; the retain corpus is the other subjects'
  passages, the first 2000, else the subjects' neighbour probes, as `load_rwku` builds it) with
  each method of `cfg.methods` (default `ga`, `npo`, `gd`: RWKU's baselines are GA, DPO, NPO and
  RT — rejection tuning and DPO need refusals/answers to prefer, which raw passages do not give);
- evaluates each unlearned model the same way and writes the run directory (`results.json`
  with the summary columns forget L1/L2/L3 ROUGE, neighbour L1/L2 ROUGE, MIA AUC, passage NLL;
  `per_item.jsonl` with every probe's generation and scores; `report.md`; `config.yaml`).

Scores are RWKU's: ROUGE-L recall of the answer in the generation (obliviate's ROUGE uses Porter
stemming, RWKU's does not, so values can differ slightly) and `acc` (ours: the answer occurs in
the generation). Lower forget values = more forgetting; higher neighbour values = better locality.
Utility (MMLU, BBH, TruthfulQA, ... in the paper) is not measured here, and no recovery audit runs.

The methods run with the shared `unlearn:` settings of the run file and their published defaults
(no RWKU-specific values are assumed); set lr/epochs per method with `method_overrides`.

GPU command (RWKU uses Llama-3-8B-Instruct, prompted through its chat template: `--chat`; full
fine-tuning in bf16 holds about 64 GB of weights, gradients and AdamW states, so keep
`unlearn.batch_size` small on one 80 GB GPU):

    obliviate bench rwku --data RWKU/Target --subjects "Stephen King" \\
        --model meta-llama/Meta-Llama-3-8B-Instruct --chat --methods ga,npo,gd \\
        --config rwku.yaml --out runs/rwku-stephen-king
    # rwku.yaml: {unlearn: {lr: 1.0e-6, epochs: 3, batch_size: 2}}  (an example, not RWKU's tuned values)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from obliviate.benchmarks._real import RunDir, check_methods, corpus_nll, no_audit, run_models
from obliviate.config import RunConfig
from obliviate.data.rwku import PROBE_SETS, load_rwku, load_rwku_probes
from obliviate.data.task import DataError
from obliviate.metrics.rwku import MAX_NEW_TOKENS, evaluate_rwku

DEFAULT_METHODS = ["ga", "npo", "gd"]
# Retain passages kept when the data holds other subjects (RWKU's All/ has 200 targets).
MAX_RETAIN = 2000
COLUMNS = [
    ["forget_level1_rouge", "forget L1", "↓"],
    ["forget_level2_rouge", "forget L2", "↓"],
    ["forget_level3_rouge", "forget L3", "↓"],
    ["neighbor_level1_rouge", "neighbour L1", "↑"],
    ["neighbor_level2_rouge", "neighbour L2", "↑"],
    ["mia_loss_auc", "MIA AUC", "→0.5"],
    ["forget_passage_nll", "passage NLL", "↑"],
]
NOTES = [
    "- **forget L1/L2/L3**: ROUGE-L recall of the answer in the greedy generation on RWKU's "
    "fill-in-the-blank, question and adversarial probes about the targets (lower = forgotten); "
    "results.json also has `acc` and the level-3 scores per attack type.",
    "- **neighbour L1/L2**: the same on probes about related people and things (higher = locality kept).",
    "- **MIA AUC**: LOSS-based AUC of telling the targets' forget_mia texts from the retain_mia texts "
    "(0.5 = indistinguishable); results.json also has zlib, Min-K% and Min-K%++.",
    "- **passage NLL**: mean token NLL of the targets' passages, the corpus unlearning trains on.",
    "- Utility (MMLU, BBH, ...) is not measured here.",
]


def run(out: Path, cfg: RunConfig, data: Path, model: str, subjects: list[str], log=print,
        command: str = "obliviate bench rwku", chat: bool = False) -> dict[str, Any]:
    """Evaluate `model` on the subjects' RWKU probes, unlearn their passages with each of
    `cfg.methods`, evaluate every unlearned model; writes the run directory `out` and returns the
    results. `chat`: prompt through the tokenizer's chat template (RWKU does, for instruct models)."""
    if isinstance(subjects, str):
        subjects = [subjects]
    if not subjects:
        raise DataError("RWKU: no subject selected (name the unlearning targets, e.g. \"Stephen King\")")
    task = load_rwku(Path(data), subjects, max_retain=MAX_RETAIN)
    probes = load_rwku_probes(Path(data), subjects)
    chosen = list(dict.fromkeys(it.subject for it in task.forget))
    check_methods(cfg.methods, task)
    log(f"RWKU {', '.join(chosen)}: {len(task.forget)} forget / {len(task.retain)} retain passages; probes "
        + ", ".join(f"{n} {len(probes[n])}" for n in (*PROBE_SETS, "forget_mia", "retain_mia")))
    cfg = no_audit(cfg, "rwku")
    sources = {"data": str(data), "subjects": chosen, "model": model, "chat": chat}
    run_dir = RunDir(out, cfg, task.name, COLUMNS, sources, command, NOTES)

    def evaluate_model(m, tok, name: str):
        res = evaluate_rwku(m, tok, probes, cfg.eval, max_new_tokens=MAX_NEW_TOKENS, chat=chat)
        metrics, per_item = dict(res.metrics), dict(res.per_item)
        nll = corpus_nll(m, tok, task.forget, cfg.eval)
        metrics["forget_passage_nll"] = float(nll.mean())
        per_item["passage"] = {"nll": nll.tolist()}
        log(f"{name}: forget L1/L2/L3 ROUGE " + "/".join(
            f"{metrics[k]:.3f}" if k in metrics else "-" for k in ("forget_level1_rouge", "forget_level2_rouge",
                                                                    "forget_level3_rouge"))
            + f", passage NLL {metrics['forget_passage_nll']:.3f}")
        rows = []
        for set_name, gens in res.generations.items():
            vals = res.per_item[set_name]
            for i, it in enumerate(probes[set_name]):
                rows.append({"model": name, "set": set_name, "index": i, "subject": it.subject,
                             "type": getattr(it, "probe_type", None), "question": it.question,
                             "answer": it.answer, "generation": gens[i],
                             **{k: v[i] for k, v in vals.items()}})
        return metrics, per_item, rows

    return run_models(run_dir, cfg, model, task, evaluate_model, {}, log)
