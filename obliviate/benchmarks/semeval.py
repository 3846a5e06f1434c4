"""`obliviate bench semeval`: SemEval-2025 Task 4 (Ramakrishna et al. 2025) end to end on the
published data (`--data`, the `semeval25-unlearning-dataset-public` layout: see
`obliviate.data.semeval`; nothing is shipped).

Every item is one text, `input` followed by `output` (a space between them unless one side
already has it), and every model is prompted with `input` alone, as the official evaluation
script does (no chat or question template); BOS is added when the tokenizer adds one and a
prompt too long for the context is left-truncated.

Tiny models by default (trained from scratch on those texts, cached): the **target** learns
every forget and retain item (train and validation folds: the published target was fine-tuned
on all of them, and the validation items are what is scored) plus the MIA members, the
**oracle** the retain items only. Training runs a fixed number of epochs (raw text has no
question to stop on). Each method in `cfg.methods` (default gd and npo_gd: the challenge's
baselines keep a retain term) unlearns a copy of the target on forget_train with retain_train
as the retain set, on the text path; methods that refuse (idk_*) need questions and are
rejected before any training.

Scores (`obliviate.metrics.semeval`): greedy completions of the forget / retain evaluation
items (validation fold when there is one), ROUGE-L recall for sentence completion
(regurgitation), exact match for questions (knowledge); the task aggregate is the harmonic mean
of the 12 split x task x kind cells (forget cells as 1 - value); the MIA score is
1 - 2|AUC - 0.5| of the loss attack on the MIA members vs non-members (mean token NLL of their
text); `final` averages the task aggregate, the MIA score and `mmlu` (MMLU accuracy measured
elsewhere, given to every model's final score; obliviate does not run MMLU) when given.
`results.json` `semeval` says which components `final` has and whether it is the challenge's
score (`complete`: all 12 cells, MIA and MMLU). The mean token NLL of the forget and retain
evaluation texts is reported beside them.

Real models (`model=`, `oracle=`), e.g. on a GPU with the challenge's OLMo target::

    obliviate bench semeval --data semeval25-unlearning-data --model <target dir or Hub id> \\
        [--oracle <retain-only model>] --mmlu 0.49 --out runs/semeval
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.audit import Knowledge
from obliviate.benchmarks.spec import Benchmark, check_methods
from obliviate.config import RunConfig
from obliviate.data.semeval import SemEvalTask, load_semeval
from obliviate.data.task import ForgetTask, QAItem
from obliviate.evaluate import text_nll
from obliviate.metrics.muse import context_length, fit_prompt
from obliviate.metrics.semeval import KINDS, MMLU_THRESHOLD_7B, item_scores, semeval_scores_from_generations
from obliviate.models.cache import cache_key, cache_root
from obliviate.models.tiny import TinyModelConfig, TrainConfig

DEFAULT_METHODS = ["gd", "npo_gd"]

SEMEVAL_MODEL = TinyModelConfig(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                num_attention_heads=4, max_position_embeddings=512)
# At most 40 epochs, stopped earlier once an epoch's mean training loss is 0.05 (about 95% per-token
# likelihood: the texts are memorised; the ROUGE check, which would generate hundreds of tokens per
# text, runs only at epoch 40); batches of similar length (the texts range from one sentence to a
# page). Before: a fixed 40 epochs with random batches, which on the public files (2780 texts) ran
# for over 30 minutes without a line of output.
SEMEVAL_TRAIN = TrainConfig(lr=3e-3, batch_size=16, max_epochs=40, min_epochs=40, check_every=40,
                            stop_metric="rouge", check_items=1, stop_loss=0.05, group_by_length=True)
# Settings for the tiny models, under the run file's method_overrides.
SEMEVAL_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "ga": {"lr": 3e-4, "epochs": 5},
    "npo": {"lr": 3e-4, "epochs": 5},
    "gd": {"lr": 1e-3, "epochs": 5},
    "npo_gd": {"lr": 1e-3, "epochs": 5},
}


def item_text(item: QAItem) -> str:
    """The text a model is trained on: `input` then `output`, a space between them unless one
    side already has whitespace there (sentence-completion outputs start with one)."""
    if item.question is None:
        return item.answer
    sep = "" if item.question[-1:].isspace() or item.answer[:1].isspace() else " "
    return item.question + sep + item.answer


def _text_items(items: list[QAItem]) -> list[QAItem]:
    return [QAItem(question=None, answer=item_text(it), subject=it.subject) for it in items]


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def _tiny_models(cfg: RunConfig, task: SemEvalTask, log=print) -> dict[str, Path]:
    from obliviate.models.prepare import train_and_save
    from obliviate.models.tiny import train_tokenizer

    model_cfg = cfg.model if "model" in cfg.model_fields_set else SEMEVAL_MODEL
    train_cfg = cfg.train if "train" in cfg.model_fields_set else SEMEVAL_TRAIN
    retain = _unique([item_text(it) for it in task.retain + task.retain_eval])
    target = _unique([item_text(it) for it in task.forget + task.forget_eval + task.mia_member] + retain)
    key = cache_key("semeval-pair", hashlib.sha256(json.dumps([target, retain]).encode()).hexdigest()[:16],
                    model_cfg, train_cfg, cfg.seed)
    root = cache_root() / "models" / key
    dirs = {"target": root / "target", "oracle": root / "oracle"}
    if cfg.cache and all((d / "config.json").is_file() for d in dirs.values()):
        log(f"using cached SemEval target and oracle from {root}")
        return dirs
    tokenizer = train_tokenizer(target, model_cfg.vocab_size)
    log(f"training the tiny SemEval target on {len(target)} texts, the oracle on {len(retain)} retain texts")
    for name, texts in (("target", target), ("oracle", retain)):
        items = [QAItem(question=None, answer=t) for t in texts]
        train_and_save(name, items, tokenizer, model_cfg, train_cfg, cfg.seed, dirs[name], log)
    return dirs


def generate_completions(model, tokenizer, items: list[QAItem], max_new_tokens: int = 200,
                         len_factor: float = 2.0, batch_size: int = 16) -> list[str]:
    """Greedy completion of each item's `input` (BOS + input, no template), stopped at EOS or at
    `len_factor` x the output's tokens + 8 (at most `max_new_tokens`), stripped."""
    from obliviate.evaluate import generate

    if not items:
        return []
    bos = list(tokenizer("", add_special_tokens=True)["input_ids"])
    ctx = context_length(model)
    prompts, max_new = [], []
    for it in items:
        n_out = len(tokenizer(it.answer, add_special_tokens=False)["input_ids"])
        new = max(1, min(max_new_tokens, int(len_factor * n_out) + 8))
        ids = list(tokenizer(it.question, add_special_tokens=True)["input_ids"])
        if ctx is not None:
            new = min(new, max(1, ctx - len(bos) - 1))
            ids = fit_prompt(ids, ctx - new, len(bos))
        prompts.append(ids)
        max_new.append(new)
    model.eval()
    return generate(model, tokenizer, prompts, max_new, batch_size)


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def rtt_split(items: list[QAItem], seed: int, train_fraction: float) -> tuple[list[QAItem], list[QAItem]]:
    """RTT on SemEval: the evaluated forget items split by document (`subject`), the relearned half
    as the texts the target was trained on (`input` then `output`), the other half probed."""
    from obliviate.attacks.relearn import split_forget_by_subject

    train, held_out = split_forget_by_subject(items, seed, train_fraction)
    return _text_items(train), held_out


def declare(cfg: RunConfig, log=print, data: str = "", model: str | None = None, oracle: str | None = None,
            mmlu: float | None = None) -> Benchmark:
    """SemEval-2025 Task 4's declaration (see the module docstring)."""
    from obliviate.data.task import DataError

    if mmlu is not None and not 0.0 <= mmlu <= 1.0:
        raise DataError(f"mmlu={mmlu}: MMLU accuracy must be in [0, 1]")
    task = load_semeval(Path(data))
    check_methods(cfg.methods, text=True)
    has_mia = bool(task.mia_member) and bool(task.holdout)
    log(f"SemEval-2025 Task 4: {len(task.forget)} forget / {len(task.retain)} retain train items, "
        f"{len(task.forget_eval)} / {len(task.retain_eval)} evaluated, "
        + (f"MIA {len(task.mia_member)} members / {len(task.holdout)} non-members" if has_mia else "no MIA data"))
    dirs: dict[str, Any] = {"target": model, "oracle": oracle} if model else _tiny_models(cfg, task, log)
    bs = cfg.eval.batch_size if not model else 8
    member_texts = [item_text(it) for it in task.mia_member]
    nonmember_texts = [item_text(it) for it in task.holdout]
    forget_texts = [item_text(it) for it in task.forget_eval]
    retain_texts = [item_text(it) for it in task.retain_eval]
    threshold = MMLU_THRESHOLD_7B if mmlu is not None else None
    kind_of = {id(it): r.kind for split in ("forget_eval", "retain_eval")
               for it, r in zip(getattr(task, split), task.records[split], strict=True)}

    def completions(m, tok, items: list[QAItem]) -> list[str]:
        return generate_completions(m, tok, items, cfg.eval.max_new_tokens, cfg.eval.answer_len_factor, bs)

    def score(kind: str):
        def k(m, tok, items: list[QAItem], _prompts) -> np.ndarray:
            return item_scores([kind] * len(items), completions(m, tok, items), [it.answer for it in items])
        return k

    def of_kind(items: list[QAItem], kind: str) -> list[QAItem]:
        return [it for it in items if kind_of[id(it)] == kind]

    # K: the two halves of the challenge's score, each the per-item value its metric averages
    knowledge = {kind: Knowledge(label, of_kind(task.forget_eval, kind), of_kind(task.retain_eval, kind),
                                 score(kind))
                 for kind, label in (("regurgitation", "regurgitation (ROUGE-L recall of the completion)"),
                                     ("knowledge", "knowledge (exact match of the answer)"))
                 if of_kind(task.forget_eval, kind)}

    def by_kind(m, tok, items: list[QAItem]) -> list[str]:
        # generated per kind, as the K measures generate, so the metric and K are the same numbers
        gens: dict[int, str] = {}
        for kind in KINDS:
            part = of_kind(items, kind)
            gens.update(zip(map(id, part), completions(m, tok, part), strict=True))
        return [gens[id(it)] for it in items]

    def evaluate_model(m, tok, name: str, oracle_eval):
        limit = context_length(m)
        fg, rg = by_kind(m, tok, task.forget_eval), by_kind(m, tok, task.retain_eval)
        mia = {}
        if has_mia:
            mia = {"member_loss": text_nll(m, tok, member_texts, limit, bs),
                   "nonmember_loss": text_nll(m, tok, nonmember_texts, limit, bs)}
        s = semeval_scores_from_generations(task, fg, rg, mmlu=mmlu, mmlu_threshold=threshold, **mia)
        metrics = {"task_aggregate": s["task_aggregate"], "mia_score": _num(s["mia_score"]),
                   "mia_auc": _num(s["mia_auc"]), "final": s["final"]}
        for split in ("forget", "retain"):
            for kind, v in s["overall"][split].items():
                metrics[f"{split}_{kind}"] = _num(v)
        for split, by_task in s["cells"].items():
            for t, by_k in by_task.items():
                for kind, v in by_k.items():
                    metrics[f"{split}_{t}_{kind}"] = _num(v)
        metrics["forget_nll"] = float(np.mean(text_nll(m, tok, forget_texts, limit, bs)))
        metrics["retain_nll"] = float(np.mean(text_nll(m, tok, retain_texts, limit, bs)))
        rows = []
        for split, gens in (("forget", fg), ("retain", rg)):
            for i, (r, g, v) in enumerate(zip(task.records[f"{split}_eval"], gens, s["per_item"][split],
                                              strict=True)):
                rows.append({"model": name, "set": split, "index": i, "id": r.id, "task": r.task, "kind": r.kind,
                             "input": r.item.question, "output": r.item.answer, "generation": g, "score": v})
        log(f"{name}: task aggregate {metrics['task_aggregate']:.3f}, MIA score {metrics['mia_score']:.3f}, "
            f"final {metrics['final']:.3f}; forget regurgitation {metrics['forget_regurgitation']:.3f}, "
            f"retain regurgitation {metrics['retain_regurgitation']:.3f}")
        return metrics, {"forget": {"score": s["per_item"]["forget"]}, "retain": {"score": s["per_item"]["retain"]}}, rows

    # What `final` is made of, the same for every model (scores of empty generations).
    shape = semeval_scores_from_generations(task, [""] * len(task.forget_eval), [""] * len(task.retain_eval),
                                            auc=0.5 if has_mia else None, mmlu=mmlu, mmlu_threshold=threshold)
    extra = {"semeval": {"final_components": shape["final_components"], "complete": shape["complete"],
                         "missing": shape["missing"], "counts": shape["counts"], "mmlu": mmlu,
                         "mmlu_below_threshold": shape["mmlu_below_threshold"], "sources": task.sources}}
    train_task = ForgetTask(name=task.name, forget=_text_items(task.forget), retain=_text_items(task.retain),
                            forget_eval=task.forget_eval, retain_eval=task.retain_eval)
    fingerprint = [task.fingerprint(), mmlu, bs, cfg.eval.max_new_tokens, cfg.eval.answer_len_factor]
    columns = [["task_aggregate", "task agg", "↑"], ["mia_score", "MIA score", "↑"], ["final", "final", "↑"],
               ["forget_regurgitation", "forget regurg", "↓"], ["forget_knowledge", "forget know", "↓"],
               ["retain_regurgitation", "retain regurg", "↑"], ["retain_knowledge", "retain know", "↑"]]
    notes = [
        "- **task agg**: harmonic mean of the 12 cells split x task x kind (forget cells as 1 - value): "
        "high = regurgitates and knows nothing of the forget set and everything of the retain set.",
        "- **MIA score**: 1 - 2|AUC - 0.5| of the loss attack, MIA members vs non-members "
        "(1 = indistinguishable).",
        f"- **final**: mean of {', '.join(shape['final_components'])}"
        + ("" if shape["complete"] else " (not the challenge's final score: it needs all 12 cells, MIA and MMLU)")
        + ".",
        "- **regurg**: ROUGE-L recall of the greedy completion of sentence-completion items; **know**: exact "
        "match (stripped, lowercased) of the answer to question items.",
        "- **Audit**: K = forget regurgitation and forget knowledge (the same per-item values); `rtt` relearns "
        "the texts of half the forget documents and probes the other half; prompt attacks are n/a (SemEval "
        "prompts are the raw `input`).",
    ]
    sources = {"data": str(data), "model": model, "oracle": oracle, "mmlu": mmlu}
    return Benchmark(key="semeval", name=task.name, task=train_task, models=dirs, evaluate=evaluate_model,
                     knowledge=knowledge, rtt_split=rtt_split, columns=columns, notes=notes,
                     method_defaults=SEMEVAL_METHOD_DEFAULTS if model is None else {}, tiny=model is None,
                     sources=sources, extra=extra, fingerprint=fingerprint,
                     options={"data": str(data), "model": model, "oracle": oracle, "mmlu": mmlu})


def run(out: Path, cfg: RunConfig, data: Path, model: str | None = None, oracle: str | None = None,
        mmlu: float | None = None, log=print, command: str = "obliviate bench semeval", resume: bool = False) -> dict[str, Any]:
    """SemEval-2025 Task 4 end to end into the run directory `out` (see the module docstring)."""
    from obliviate.benchmarks.spec import precheck
    from obliviate.pipeline import run_benchmark

    precheck(cfg, text=True)  # before any data is read or model trained

    cfg = cfg.model_copy(update={"benchmark": "semeval"})
    return run_benchmark(declare(cfg, log, str(data), model, oracle, mmlu), cfg, out, log, command, resume=resume)
