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
Utility (MMLU, BBH, TruthfulQA, ... in the paper) is not measured here.

The audit: K = answer recall (ROUGE-L recall, the suite's `rouge`) on forget level 1, 2 and 3
(one measure each) and on all three levels together (`forget_all`, the primary K), each the
per-probe value the suite averages (generated per level, as the suite generates). RWKU has no
retain-only oracle, so the oracle-relative scores are NaN. `rtt` relearns half of the forget
probes written out as facts (a level-1 blank filled with its answer, a question followed by its
answer) and probes the other half: the subject's probes are about one person, so they are
split by probe, not by subject. Prompt attacks re-ask QA prompts, not RWKU's: n/a.

Off-pattern records of the selected subjects (a level-1 probe without its blank) are read as
questions with a warning counted in results.json (`rwku_warnings`) and the report; `strict=True`
(`--strict`) makes them errors.

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

import numpy as np

from obliviate.audit import Knowledge
from obliviate.benchmarks.spec import Benchmark, check_methods, split_items
from obliviate.config import RunConfig
from obliviate.data.rwku import BLANK, PROBE_SETS, load_rwku, load_rwku_probes
from obliviate.data.task import DataError, QAItem
from obliviate.evaluate import corpus_nll
from obliviate.metrics.rwku import MAX_NEW_TOKENS, evaluate_rwku, probe_scores, rwku_scores

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


FORGET_LEVELS = ("forget_level1", "forget_level2", "forget_level3")


def as_fact(probe: QAItem) -> QAItem:
    """A probe written out as the fact it asks for (RTT's training text)."""
    q = probe.question or ""
    return QAItem(None, q.replace(BLANK, probe.answer) if BLANK in q else f"{q} {probe.answer}", subject=probe.subject)


def declare(cfg: RunConfig, log=print, data: str = "", model: str = "", subjects: list[str] | None = None,
            chat: bool = False, strict: bool = False) -> Benchmark:
    """RWKU's declaration (see the module docstring)."""
    if isinstance(subjects, str):
        subjects = [subjects]
    if not subjects:
        raise DataError("RWKU: no subject selected (name the unlearning targets, e.g. \"Stephen King\")")
    warnings: list[str] = []
    task = load_rwku(Path(data), subjects, max_retain=MAX_RETAIN, strict=strict, warnings=warnings)
    probes = load_rwku_probes(Path(data), subjects, strict=strict)
    chosen = list(dict.fromkeys(it.subject for it in task.forget))
    check_methods(cfg.methods, any(it.is_text for it in task.forget))
    log(f"RWKU {', '.join(chosen)}: {len(task.forget)} forget / {len(task.retain)} retain passages; probes "
        + ", ".join(f"{n} {len(probes[n])}" for n in (*PROBE_SETS, "forget_mia", "retain_mia")))
    for w in warnings:
        log(f"warning: {w}")
    level_of = {it: name for name in FORGET_LEVELS for it in probes[name]}

    def generations(m, tok, by_level: dict[str, list[QAItem]]) -> dict[str, list[str]]:
        # one generation call per level: the suite and every K measure batch alike (same numbers)
        return {name: evaluate_rwku(m, tok, {name: items}, cfg.eval, max_new_tokens=MAX_NEW_TOKENS,
                                    chat=chat).generations[name] for name, items in by_level.items() if items}

    def recall(m, tok, items: list[QAItem], _prompts=None) -> np.ndarray:
        by_level: dict[str, list[QAItem]] = {}
        for it in items:
            by_level.setdefault(level_of[it], []).append(it)
        gens = generations(m, tok, by_level)
        value = {it: v for name, its in by_level.items()
                 for it, v in zip(its, probe_scores(gens[name], its)["rouge"], strict=True)}
        return np.array([value[it] for it in items], dtype=np.float64)

    forget_all = [it for name in FORGET_LEVELS for it in probes[name]]
    knowledge = {"forget_all": Knowledge("answer recall, forget levels 1-3", forget_all, [], recall,
                                         by_subject=False)}
    knowledge.update({name: Knowledge(f"answer recall, forget level {name[-1]}", probes[name], [], recall,
                                      by_subject=False) for name in FORGET_LEVELS if probes[name]})

    def evaluate_model(m, tok, name: str, _oracle_eval):
        forget_probes = {n: probes[n] for n in FORGET_LEVELS}
        fgens = generations(m, tok, forget_probes)
        rest = evaluate_rwku(m, tok, {n: v for n, v in probes.items() if n not in FORGET_LEVELS}, cfg.eval,
                             max_new_tokens=MAX_NEW_TOKENS, chat=chat)
        fmetrics, fper_item = rwku_scores(forget_probes, fgens)
        metrics, per_item = {**rest.metrics, **fmetrics}, {**rest.per_item, **fper_item}
        gens_all = {**fgens, **rest.generations}
        nll = corpus_nll(m, tok, task.forget, cfg.eval)
        metrics["forget_passage_nll"] = float(nll.mean())
        per_item["passage"] = {"nll": nll.tolist()}
        log(f"{name}: forget L1/L2/L3 ROUGE " + "/".join(
            f"{metrics[k]:.3f}" if k in metrics else "-" for k in ("forget_level1_rouge", "forget_level2_rouge",
                                                                    "forget_level3_rouge"))
            + f", passage NLL {metrics['forget_passage_nll']:.3f}")
        rows = []
        for set_name in PROBE_SETS:
            if set_name not in gens_all:
                continue
            vals = per_item[set_name]
            for i, it in enumerate(probes[set_name]):
                rows.append({"model": name, "set": set_name, "index": i, "subject": it.subject,
                             "type": getattr(it, "probe_type", None), "question": it.question,
                             "answer": it.answer, "generation": gens_all[set_name][i],
                             **{k: v[i] for k, v in vals.items()}})
        return metrics, per_item, rows

    unit_task = type(task)(name=task.name, forget=task.forget, retain=task.retain, forget_eval=forget_all,
                           retain_eval=task.retain_eval)
    notes = [*NOTES,
             "- **Audit**: K = answer recall (the suite's ROUGE) on forget levels 1-3 together and per level; "
             "no oracle exists, so the oracle-relative scores are NaN. `rtt` relearns half the forget probes "
             "(as facts) and probes the other half.",
             *([f"- **{len(warnings)} data warning(s)**: off-pattern records read as the closest kind (see "
                "`rwku_warnings` in results.json; `--strict` makes them errors)."] if warnings else [])]
    return Benchmark(key="rwku", name=task.name, task=unit_task, models={"target": model}, evaluate=evaluate_model,
                     knowledge=knowledge,
                     rtt_split=lambda items, seed, frac: split_items(items, seed, frac, as_fact),
                     columns=COLUMNS, notes=notes, method_defaults={}, tiny=False,
                     sources={"data": str(data), "subjects": chosen, "model": model, "chat": chat},
                     extra={"rwku_warnings": warnings},
                     options={"data": str(data), "model": model, "subjects": chosen, "chat": chat, "strict": strict})


def run(out: Path, cfg: RunConfig, data: Path, model: str, subjects: list[str], log=print,
        command: str = "obliviate bench rwku", chat: bool = False, strict: bool = False, resume: bool = False) -> dict[str, Any]:
    """Evaluate `model` on the subjects' RWKU probes, unlearn their passages with each of
    `cfg.methods`, evaluate every unlearned model, audit; writes the run directory `out` and
    returns the results. `chat`: prompt through the tokenizer's chat template (RWKU does, for
    instruct models)."""
    from obliviate.benchmarks.spec import precheck
    from obliviate.pipeline import run_benchmark

    precheck(cfg, text=True)  # before any data is read or model trained

    bench = declare(cfg, log, str(data), model, subjects, chat, strict)
    return run_benchmark(bench, cfg.model_copy(update={"benchmark": "rwku"}), out, log, command, resume=resume)
