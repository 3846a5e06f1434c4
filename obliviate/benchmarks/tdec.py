"""`obliviate bench tdec`: knowledge unlearning on the Training Data Extraction Challenge
sequences (Jang et al. 2022, "Knowledge Unlearning for Mitigating Privacy Risks in Language
Models"; the setting in which LoKU, Cha et al. 2025, compares GA, IHL and FILA).

The protocol. The forget set is one of the five 32-sequence samples of The Pile
(`lm_extraction_32_{k}.csv`). Each method unlearns it until the published stopping rule holds:
the forget set's mean memorisation accuracy (MA) and extraction likelihood (EL10) are both at
or below their means on *unseen* text, measured once on the target before unlearning (the
thresholds; `obliviate.metrics.extraction.stopping_rule`). The epoch count of the unlearning
config is only a cap. Every model is then measured on forget MA/EL10, unseen MA/EL10 and the
token NLL of the validation texts (utility), and the steps and seconds unlearning took.

Which text plays which role:

- **forget**: `lm_extraction_32_{forget_set}.csv` (the first `limit` sequences when given).
- **retain / validation**: the first `retain_per_set` texts of each of `validation/pile.csv`,
  `wikitext.csv` and `lambada.csv`. They are the retain batch of the methods that have a retain
  term (gd, ihl, fila, ...) and the utility measure (`val_nll`: mean token NLL over them).
- **unseen** (the thresholds' text) must be text the target never saw:
  - tiny target (default): another TDEC forget file, `lm_extraction_32_{(forget_set + 1) % 5}`
    (same source and selection as the forget set, never trained on);
  - a real model (`model=`): the Pile *validation* texts after the retain ones (`unseen="pile"`):
    every `lm_extraction_32_*` file is Pile *training* data, which GPT-Neo saw.
  `unseen=` overrides: another forget-file index, or a validation set name.

The tiny target (default). A Llama trained from scratch, with a byte-level BPE tokenizer trained
on the five TDEC forget files and the retain texts, on forget + retain (`TINY_MODEL`,
`TINY_TRAIN`; cached under the obliviate cache like the TOFU models). Its validation texts are
therefore *trained* text: `val_nll` measures how much of the retain text unlearning destroys,
not held-out perplexity. TDEC texts are ~200 GPT-2 tokens; the tiny tokenizer (4096 merges on
this small corpus) cuts them into ~150-290 tokens, and every text is cut to its first
`TINY_MAX_TOKENS` = 128 tokens (trained, unlearned and measured alike), which keeps training
and the EL10 generations affordable on a CPU.

A real model (`model=` a Hugging Face directory or Hub id). The data is used as it is: texts are
unlearned in full (up to `unlearn.max_length` tokens) and measured on their first 200 tokens, as
in the paper. On a GPU, the paper's GPT-Neo 125M:

    obliviate bench tdec --data DATA/tdec --model EleutherAI/gpt-neo-125m --out runs/tdec-neo125m

(`REAL_UNLEARN` and `REAL_METHOD_DEFAULTS` hold the settings; per-method `method_overrides` in
the run file change them.)

EL10 cost. EL10 greedily continues every prefix x_<=t of every text (T - 10 generations of up to
T tokens per text). `el_prefixes` (default 16) scores 16 evenly spaced prefix lengths per text
and averages their overlaps (`extraction_likelihood(max_prefixes=...)`): an estimate of the same
quantity, used everywhere (thresholds, stopping checks, the table), so the rule compares like
with like. `el_prefixes=None` scores every prefix (affordable on a GPU).

The audit (when `cfg.audit.enabled`; default attacks `DEFAULT_ATTACKS`) is the shared one
(`obliviate.audit.audit_benchmark`) with TDEC's two K measures: per-text MA (primary) and EL10 on
the forget sequences, the same per-item values the table averages. `rtt` relearns half of the
forget sequences and probes the other half; prompt attacks need questions and are n/a. There is
no retain-only oracle: the oracle-relative scores are NaN.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.audit import Knowledge
from obliviate.benchmarks.spec import Benchmark, check_methods, split_items
from obliviate.config import RunConfig
from obliviate.data.collate import pad_id_of
from obliviate.data.task import DataError, ForgetTask, QAItem
from obliviate.data.tdec import VALIDATION_SETS, load_tdec_forget, load_tdec_validation
from obliviate.metrics.extraction import (
    extraction_likelihood,
    memorization_accuracy,
    stopping_rule,
    text_encoded,
    text_token_ids,
)
from obliviate.models.cache import cache_key, cache_root
from obliviate.models.tiny import TinyModelConfig, TrainConfig
from obliviate.unlearn import UnlearnConfig

# LoKU's comparison on TDEC: gradient ascent (Jang et al.), inverted hinge loss, and IHL with
# Fisher-initialised low-rank adapters.
DEFAULT_METHODS = ["ga", "ihl", "fila"]
N_FORGET_SETS = 5
N_GRAM = 10  # EL_10
REAL_MAX_TOKENS = 200  # the paper's metric length (GPT-Neo tokens)
TINY_MAX_TOKENS = 128  # tiny-tokenizer tokens per text (see the module docstring)
RETAIN_PER_SET = 16  # validation texts per set (pile, wikitext, lambada) in the retain set
EL_PREFIXES = 16  # prefix lengths per text for the EL10 estimate

# The tiny target. Chosen by timing runs on the shared 2-core machine (docs/experiments/tdec.md):
# hidden 256 x 4 layers (6.3M parameters with the 4096-token vocabulary) memorises the 32 forget
# and 48 retain texts of 128 tokens in 60 epochs (MA 0.975 after 40, 0.997 after 60), about
# 5 minutes on one thread; hidden 256 keeps the linears divisible by the quantization group
# (128) for the audit. The train-time stop check
# (greedy accuracy from BOS) means nothing for raw text, so training runs a fixed number of
# epochs (min_epochs = max_epochs) and the target's MA is measured by the benchmark itself.
# max_position_embeddings only bounds the rotary table's nominal length: batched left-padded
# EL10 prompts plus their continuations can run past 128 positions.
TINY_MODEL = TinyModelConfig(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                             num_attention_heads=4, max_position_embeddings=512)
TINY_TRAIN = TrainConfig(lr=3e-3, batch_size=16, max_epochs=60, min_epochs=60, check_every=60,
                         warmup_steps=20, check_items=1)

# Shared unlearning settings (when the run file has no `unlearn` block). `epochs` is a cap: the
# stopping rule ends the runs. Tiny: batches of 8 forget texts; real models: all 32 sequences in
# one batch, as Jang et al. do.
TINY_UNLEARN = UnlearnConfig(epochs=30, batch_size=8, retain_batch_size=16, warmup_ratio=0.0, check_every=1)
REAL_UNLEARN = UnlearnConfig(epochs=20, batch_size=32, retain_batch_size=32, warmup_ratio=0.0, check_every=1)

# Per-method settings, on top of the shared ones (a run file's method_overrides go on top of
# these). Tiny: the first values tried, not swept: each method meets the stopping rule within the
# cap in docs/experiments/tdec.md (ga ~8 epochs, ihl ~5, fila ~7). Real models: Jang et al.'s GA learning rate 5e-5 for GPT-Neo; the same for
# IHL, and 1e-4 for FILA's adapters — starting points, not tuned here.
TINY_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "ga": {"lr": 1e-4},
    "ihl": {"lr": 3e-4, "params": {"alpha": 1.0}},
    "fila": {"lr": 1e-3, "params": {"alpha": 1.0}},
    "gd": {"lr": 1e-4, "params": {"alpha": 1.0}},
    "npo": {"lr": 3e-4},
}
REAL_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "ga": {"lr": 5e-5},
    "ihl": {"lr": 5e-5},
    "fila": {"lr": 1e-4},
}

COLUMNS = [
    ["forget_ma", "forget MA", "↓"],
    ["forget_el10", "forget EL10", "↓"],
    ["unseen_ma", "unseen MA", ""],
    ["unseen_el10", "unseen EL10", ""],
    ["val_nll", "val NLL", "↓"],
    ["forgotten", "rule met", ""],
    ["steps", "steps", ""],
    ["seconds", "seconds", ""],
]


# --- data ---------------------------------------------------------------------------------


def _forget_file(data: Path, k: int) -> Path:
    if not 0 <= k < N_FORGET_SETS:
        raise DataError(f"TDEC forget set {k}: must be 0..{N_FORGET_SETS - 1}")
    return Path(data) / f"lm_extraction_32_{k}.csv"


def load_texts(data: Path, forget_set: int, unseen: int | str, limit: int | None,
               retain_per_set: int) -> tuple[list[QAItem], list[QAItem], list[QAItem]]:
    """(forget, retain, unseen) raw-text items, before any cutting to tokens."""
    data = Path(data)
    forget = load_tdec_forget(_forget_file(data, forget_set))[:limit]
    validation = load_tdec_validation(data / "validation")
    retain = [it for name in VALIDATION_SETS for it in validation[name][:retain_per_set]]
    n = len(forget)
    if isinstance(unseen, int):
        if unseen == forget_set:
            raise DataError(f"unseen set {unseen} is the forget set: the thresholds need text the target never saw")
        unseen_items = load_tdec_forget(_forget_file(data, unseen))[:n]
    elif unseen in VALIDATION_SETS:
        unseen_items = [it for it in validation[unseen][retain_per_set:]
                        if len(it.answer) > 200][:n]  # long enough for EL10 in any tokenizer
    else:
        raise DataError(f"unseen {unseen!r}: a forget-set index 0..{N_FORGET_SETS - 1} or one of "
                        f"{', '.join(VALIDATION_SETS)}")
    if not forget or not unseen_items:
        raise DataError(f"{data}: empty forget or unseen set")
    return forget, retain, unseen_items


def cut_items(tokenizer, items: list[QAItem], max_tokens: int) -> list[QAItem]:
    """Each text cut to its first `max_tokens` tokens (decoded back to text; a multi-byte
    character split at the cut is dropped)."""
    out = []
    for it in items:
        text = tokenizer.decode(text_token_ids(tokenizer, it.answer, max_tokens)).rstrip("\ufffd")
        out.append(QAItem(question=None, answer=text, subject=it.subject))
    return out


def _texts_hash(*parts: list[str]) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def tiny_target(data: Path, forget: list[QAItem], retain: list[QAItem], model_cfg: TinyModelConfig,
                train_cfg: TrainConfig, max_tokens: int, seed: int = 0, use_cache: bool = True,
                log=print) -> Path:
    """The tiny target trained on forget + retain (cut to `max_tokens`), cached by content."""
    from obliviate.models.prepare import train_and_save
    from obliviate.models.tiny import train_tokenizer

    corpus = [it.answer for k in range(N_FORGET_SETS) for it in load_tdec_forget(_forget_file(data, k))]
    corpus += [it.answer for it in retain]
    key = cache_key("tdec-target", _texts_hash([it.answer for it in forget], [it.answer for it in retain]),
                    _texts_hash(corpus), max_tokens, model_cfg, train_cfg, seed)
    final = cache_root() / "models" / key
    if use_cache and (final / "config.json").is_file():
        log(f"using cached TDEC target from {final}")
        return final
    tokenizer = train_tokenizer(corpus, model_cfg.vocab_size)
    items = cut_items(tokenizer, forget, max_tokens) + cut_items(tokenizer, retain, max_tokens)
    return train_and_save("TDEC target", items, tokenizer, model_cfg, train_cfg, seed, final, log)


# --- metrics ------------------------------------------------------------------------------


def text_scores(model, tokenizer, items: list[QAItem], max_tokens: int, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per text: MA and the mean token NLL over x_2..x_T (one teacher-forced pass)."""
    from obliviate.evaluate import score_sequences

    scored = score_sequences(model, [text_encoded(tokenizer, it.answer, max_tokens) for it in items],
                             pad_id_of(tokenizer), batch_size)
    return {"ma": memorization_accuracy([s["correct"] for s in scored]),
            "nll": np.array([-float(s["logp"].mean()) for s in scored])}


def el10(model, tokenizer, items: list[QAItem], max_tokens: int, el_prefixes: int | None,
         batch_size: int = 64) -> np.ndarray:
    return extraction_likelihood(model, tokenizer, items, n=N_GRAM, batch_size=batch_size,
                                 max_prefixes=el_prefixes, max_tokens=max_tokens)


def measure(model, tokenizer, forget: list[QAItem], unseen: list[QAItem], validation: list[QAItem],
            max_tokens: int, el_prefixes: int | None, batch_size: int = 64) -> tuple[dict[str, float], dict]:
    """Every TDEC metric of one model: (means, per-item values)."""
    model.eval()
    per_item: dict[str, dict[str, list[float]]] = {}
    for name, items in (("forget", forget), ("unseen", unseen)):
        s = text_scores(model, tokenizer, items, max_tokens, batch_size)
        el = el10(model, tokenizer, items, max_tokens, el_prefixes, batch_size)
        per_item[name] = {"ma": s["ma"].tolist(), "el10": el.tolist(), "nll": s["nll"].tolist()}
    s = text_scores(model, tokenizer, validation, max_tokens, batch_size)
    per_item["validation"] = {"ma": s["ma"].tolist(), "nll": s["nll"].tolist()}
    metrics = {f"{name}_{k}": float(np.mean(v)) for name, vals in per_item.items() for k, v in vals.items()}
    metrics["val_nll"] = metrics.pop("validation_nll")
    metrics["val_ma"] = metrics.pop("validation_ma")
    metrics["val_ppl"] = float(math.exp(min(metrics["val_nll"], 50.0)))
    return metrics, per_item


def stop_rule(tokenizer, forget: list[QAItem], thresholds: dict[str, float], max_tokens: int,
              el_prefixes: int | None, check_every: int, batch_size: int = 64):
    """`stop_when` for `unlearn`: a message once the forget set's MA and EL10 are both at or below
    the thresholds. EL10 (the costly one) is only computed once MA is below its threshold."""
    calls = [0]

    def check(model) -> str | None:
        calls[0] += 1
        ma = float(text_scores(model, tokenizer, forget, max_tokens, batch_size)["ma"].mean())
        if ma > thresholds["ma"]:
            return None
        el = float(el10(model, tokenizer, forget, max_tokens, el_prefixes, batch_size).mean())
        if not stopping_rule(ma, el, thresholds["ma"], thresholds["el10"]):
            return None
        return (f"TDEC stopping rule met at step {calls[0] * check_every}: forget MA {ma:.3f} <= unseen "
                f"{thresholds['ma']:.3f} and forget EL10 {el:.3f} <= unseen {thresholds['el10']:.3f}")

    return check


DEFAULT_ATTACKS = ["rtn8", "rtn4", "noise_int4", "rtt", "relearn_benign"]


# --- the run ------------------------------------------------------------------------------


def resolve_config(cfg: RunConfig, tiny: bool) -> RunConfig:
    """The run file's settings, with this benchmark's defaults where it sets none."""
    update: dict[str, Any] = {"benchmark": "tdec"}
    if "methods" not in cfg.model_fields_set:
        update["methods"] = list(DEFAULT_METHODS)
    if tiny and "model" not in cfg.model_fields_set:
        update["model"] = TINY_MODEL
    if tiny and "train" not in cfg.model_fields_set:
        update["train"] = TINY_TRAIN
    if "unlearn" not in cfg.model_fields_set:
        update["unlearn"] = TINY_UNLEARN if tiny else REAL_UNLEARN
    if "audit" not in cfg.model_fields_set or cfg.audit.attacks is None:
        update["audit"] = cfg.audit.model_copy(update={"attacks": cfg.audit.attacks or list(DEFAULT_ATTACKS)})
    return cfg.model_copy(update=update)


def declare(cfg: RunConfig, log=print, data: str = "", forget_set: int = 0, model: str | None = None,
            unseen: int | str | None = None, limit: int | None = None, retain_per_set: int = RETAIN_PER_SET,
            max_tokens: int | None = None, el_prefixes: int | None = EL_PREFIXES) -> Benchmark:
    """TDEC's declaration (see the module docstring; `cfg` as `resolve_config` returns it).

    `data`: the TDEC directory (`lm_extraction_32_{0..4}.csv`, `validation/`). `forget_set`: k.
    `model`: a real causal LM (directory or Hub id) instead of the tiny target. `unseen`: the
    thresholds' text, a forget-set index or a validation set name (default: (k + 1) % 5 for the
    tiny target, "pile" for a real model). `limit`: use only the first `limit` forget (and unseen)
    sequences. `max_tokens`: tokens per text (default 128 tiny, 200 real). `el_prefixes`: prefix
    lengths per text for EL10 (None: all).
    """
    from transformers import AutoTokenizer

    tiny = model is None
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1, got {limit}")
    check_methods(cfg.methods, text=True)
    data_dir = Path(data)
    unseen = unseen if unseen is not None else ((forget_set + 1) % N_FORGET_SETS if tiny else "pile")
    max_tokens = max_tokens or (TINY_MAX_TOKENS if tiny else REAL_MAX_TOKENS)
    forget, retain, unseen_items = load_texts(data_dir, forget_set, unseen, limit, retain_per_set)
    log(f"TDEC forget set {forget_set}: {len(forget)} sequences; {len(retain)} validation texts (retain); "
        f"unseen: {len(unseen_items)} texts of {'forget set ' if isinstance(unseen, int) else ''}{unseen}")
    target_dir = (tiny_target(data_dir, forget, retain, cfg.model, cfg.train, max_tokens, cfg.seed, cfg.cache, log)
                  if tiny else model)
    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    if tiny:  # the texts the tiny target was trained on
        forget, retain, unseen_items = (cut_items(tokenizer, x, max_tokens) for x in (forget, retain, unseen_items))
    task = ForgetTask(name=f"tdec_{forget_set}" + (f"_n{limit}" if limit else ""), forget=forget, retain=retain,
                      forget_eval=forget, retain_eval=retain)
    bs = cfg.eval.batch_size

    def ma(m, tok, items, _prompts=None) -> np.ndarray:
        return text_scores(m, tok, items, max_tokens, bs)["ma"]

    def el(m, tok, items, _prompts=None) -> np.ndarray:
        return el10(m, tok, items, max_tokens, el_prefixes, bs)

    def thresholds(target_metrics: dict[str, float]) -> dict[str, float]:
        return {"ma": target_metrics["unseen_ma"], "el10": target_metrics["unseen_el10"]}

    def evaluate_model(m, tok, name: str, _oracle_eval):
        metrics, per_item = measure(m, tok, forget, unseen_items, retain, max_tokens, el_prefixes, bs)
        if name == "target":  # its own unseen values are the thresholds
            th = thresholds(metrics)
            metrics["forgotten"] = int(stopping_rule(metrics["forget_ma"], metrics["forget_el10"], th["ma"], th["el10"]))
            log(f"target: forget MA {metrics['forget_ma']:.3f} EL10 {metrics['forget_el10']:.3f}; thresholds "
                f"(unseen) MA {th['ma']:.3f} EL10 {th['el10']:.3f}; val NLL {metrics['val_nll']:.3f}")
        return metrics, per_item, []

    def stop_when(ucfg: UnlearnConfig, target_metrics: dict[str, float]):
        return stop_rule(tokenizer, forget, thresholds(target_metrics), max_tokens, el_prefixes, ucfg.check_every, bs)

    def after_unlearn(metrics: dict[str, float], ulog, ucfg: UnlearnConfig, target_metrics: dict[str, float]) -> None:
        th = thresholds(target_metrics)
        metrics["forgotten"] = int(stopping_rule(metrics["forget_ma"], metrics["forget_el10"], th["ma"], th["el10"]))
        metrics["steps"] = ulog.steps
        metrics["seconds"] = round(ulog.seconds, 1)
        if ulog.status == "done":
            ulog.message = (f"the stopping rule was not met within the cap ({ucfg.max_steps or ucfg.epochs} "
                            f"{'steps' if ucfg.max_steps else 'epochs'})")

    notes = [f"- **forget MA / EL10**: memorisation accuracy and extraction likelihood (n = {N_GRAM}) of the "
             "forget sequences (lower is better).",
             "- **unseen MA / EL10**: the same on text the target never saw; the target's values are the "
             "thresholds of the stopping rule (results.json `thresholds`).",
             "- **rule met**: 1 when forget MA and EL10 are both at or below the thresholds (Jang et al.'s "
             "criterion for 'forgotten').",
             "- **val NLL**: mean token NLL of the validation (retain) texts; for the tiny target these were "
             "trained on, so a rise is retain text destroyed.",
             "- **steps / seconds**: optimizer steps and wall time of unlearning until the rule held "
             "(or the epoch cap).",
             "- **Audit**: K = forget MA (primary) and forget EL10, the per-text values of the table; `rtt` "
             "relearns half the forget sequences and probes the other half; no oracle: oracle-relative scores "
             "are NaN."]
    sources = {"data": str(data), "forget_set": forget_set, "unseen": unseen, "limit": limit,
               "retain_per_set": retain_per_set, "max_tokens": max_tokens, "el_prefixes": el_prefixes,
               "model": model}
    return Benchmark(key="tdec", name="tdec", task=task, models={"target": target_dir}, evaluate=evaluate_model,
                     knowledge={"ma": Knowledge("memorisation accuracy (MA)", forget, retain, ma, by_subject=False),
                                "el10": Knowledge(f"extraction likelihood (EL{N_GRAM})", forget, [], el,
                                                  by_subject=False)},
                     rtt_split=split_items, columns=COLUMNS, notes=notes,
                     method_defaults=TINY_METHOD_DEFAULTS if tiny else REAL_METHOD_DEFAULTS, tiny=tiny,
                     sources=sources, fingerprint=[_texts_hash([it.answer for it in forget + retain + unseen_items]),
                                                   max_tokens, el_prefixes, bs],
                     options={"data": str(data), "forget_set": forget_set, "model": model, "unseen": unseen,
                              "limit": limit, "retain_per_set": retain_per_set, "max_tokens": max_tokens,
                              "el_prefixes": el_prefixes},
                     stop_when=stop_when, after_unlearn=after_unlearn,
                     summary=lambda results: {"thresholds": thresholds(results["models"]["target"]["metrics"])})


def run(out: Path, cfg: RunConfig, data: Path, forget_set: int = 0, model: str | None = None,
        unseen: int | str | None = None, limit: int | None = None, retain_per_set: int = RETAIN_PER_SET,
        max_tokens: int | None = None, el_prefixes: int | None = EL_PREFIXES, log=print,
        command: str = "obliviate bench tdec", resume: bool = False) -> dict[str, Any]:
    """The TDEC benchmark end to end, written to the run directory `out` (see `declare`)."""
    from obliviate.benchmarks.spec import precheck
    from obliviate.pipeline import run_benchmark

    precheck(cfg, text=True)  # before any data is read or model trained

    cfg = resolve_config(cfg, model is None)
    bench = declare(cfg, log, str(data), forget_set, model, unseen, limit, retain_per_set, max_tokens, el_prefixes)
    return run_benchmark(bench, cfg, out, log, command, resume=resume)
