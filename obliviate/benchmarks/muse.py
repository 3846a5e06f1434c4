"""`obliviate bench muse`: MUSE-News (Shi et al. 2024) end to end on the published files (`--data`).

Tiny models by default (trained from scratch, cached under the obliviate cache):

- a BPE tokenizer trained on the kept forget articles and the `privleak/retain2.json` texts;
- the forget articles joined with "\\n\\n" (as MUSE built its corpus) and the retain2 texts cut
  into windows of `context - 8` tokens (`obliviate.data.muse.chunk_texts`), trained as raw text;
- the **target** learns the forget windows + the retain2 windows, the **oracle** (MUSE's
  "retrained" model) the retain2 windows only; same tokenizer, recipe and seed.

`articles=N` keeps the first N raw articles (for speed: the full corpus is ~800k tokens, a GPU
job) and as many retain2 windows as there are forget windows; the VerbMem probes are then those
whose prompt end and first half of the true continuation lie in the kept articles, the KnowMem forget questions those whose
answer does, and the PrivLeak members the privleak forget texts whose start lies in the kept
articles (fewer than 5: the first 100 forget windows instead, recorded in results.json `probes`).

Each method in `cfg.methods` (default: MUSE's baselines ga, gd, npo, npo_gd, minus task
vectors) unlearns a copy of the target on the text path (forget windows, retain2 windows as the
retain set), and every model is scored with MUSE's metrics (`obliviate.metrics.muse`):
VerbMem on the forget probes (ROUGE-L F1 of a 128-token greedy continuation), KnowMem on the
forget and retain QA (few-shot, ROUGE-L F1), PrivLeak (Min-K% AUC, members vs the holdout
texts, relative to the oracle's; -100 = leaks like a model that saw the data, 0 = like the
oracle), plus the mean token NLL of the forget windows and of the retain windows (ours: a
memorisation and a utility signal that a tiny model shows plainly).

**The tiny model memorises text but cannot read**: it has never seen questions, so KnowMem is
near 0 for every model, target included; its signal is VerbMem, PrivLeak and the NLLs. Its
context is 512 tokens by default, so VerbMem prompts (~1,000 Llama tokens) are left-truncated
to their last 384 tokens (the `verbmem_truncated` count).

With `model=`/`oracle=` the same protocol runs on real models, e.g. on a GPU with MUSE's
published Llama-2-7B target and retrained model (forget windows of 2040 tokens, MUSE's 2048
context; method settings are then the published defaults plus `method_overrides`)::

    obliviate bench muse --data MUSE-News --model muse-bench/MUSE-news_target \\
        --oracle muse-bench/MUSE-news_retrain --out runs/muse-news

`--data` is a local copy of the `muse-bench/MUSE-News` files (raw/, verbmem/, knowmem/, privleak/).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.audit import Knowledge
from obliviate.benchmarks.spec import Benchmark, check_methods, split_items
from obliviate.config import RunConfig
from obliviate.data.muse import (
    CORPUS_SEPARATOR,
    PRIVLEAK_FORGET,
    PRIVLEAK_HOLDOUT,
    PRIVLEAK_RETAIN,
    VerbMemItem,
    chunk_texts,
    load_muse_probes,
    load_texts,
    raw_articles,
)
from obliviate.data.task import ForgetTask, QAItem
from obliviate.evaluate import text_nll
from obliviate.metrics.muse import context_length, privleak_auc, privleak_from_aucs, run_knowmem, run_verbmem
from obliviate.models.cache import cache_key, cache_root
from obliviate.models.tiny import TinyModelConfig, TrainConfig

DEFAULT_METHODS = ["ga", "gd", "npo", "npo_gd"]

# A tiny model wide enough to memorise news text (the TOFU size), 512-token context.
MUSE_MODEL = TinyModelConfig(vocab_size=4096, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                             num_attention_heads=4, max_position_embeddings=512)
# Raw text has no question to check greedy accuracy on, so training runs a fixed number of
# epochs (min_epochs = max_epochs: the stop check runs once, at the end, on one item).
MUSE_TRAIN = TrainConfig(lr=3e-3, batch_size=16, max_epochs=30, min_epochs=30, check_every=30,
                         stop_metric="rouge", check_items=1)
# Settings for the tiny models (under the run file's method_overrides; real models get the
# published defaults), from a short sweep on 9 articles (see the report of the change).
MUSE_METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "ga": {"lr": 3e-4, "epochs": 2, "batch_size": 8},
    "gd": {"lr": 1e-3, "epochs": 2, "batch_size": 8, "retain_batch_size": 8},
    "npo": {"lr": 5e-4, "epochs": 2, "batch_size": 8},
    "npo_gd": {"lr": 3e-3, "epochs": 5, "batch_size": 8, "retain_batch_size": 8},
    # not swept: NPO's setting with the retain KL term (MUSE's NPO_KLR) at its default weight
    "npo_kl": {"lr": 5e-4, "epochs": 2, "batch_size": 8, "retain_batch_size": 8},
}
PRIVLEAK_MIN_MEMBERS = 5
# The audit's retain control (KnowMem on retain questions, under every attack on every model):
# the first questions only, as each attack costs one generation pass over them.
AUDIT_RETAIN = 25
# The tiny models' default reduction (a CPU run): the first articles only; `articles=None` keeps all.
DEFAULT_ARTICLES = 9
REAL_CONTEXT = 2048  # MUSE's Llama-2 context; the forget windows for real models


def _sha(texts: list[str]) -> str:
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]


def _text_items(texts: list[str], prefix: str) -> list[QAItem]:
    return [QAItem(question=None, answer=t, subject=f"{prefix}_{i}") for i, t in enumerate(texts)]


def _tiny_models(cfg: RunConfig, articles: list[str], retain_texts: list[str], reduced: bool,
                 log=print) -> tuple[dict[str, Path], Any, int, list[str], list[str]]:
    """Train (or reuse) the tiny target and oracle; returns (dirs, tokenizer, chunk length,
    forget windows, retain windows)."""
    from transformers import AutoTokenizer

    from obliviate.models.prepare import train_and_save
    from obliviate.models.tiny import train_tokenizer

    model_cfg = cfg.model if "model" in cfg.model_fields_set else MUSE_MODEL
    train_cfg = cfg.train if "train" in cfg.model_fields_set else MUSE_TRAIN
    key = cache_key("muse-pair", _sha(articles), _sha(retain_texts), reduced, model_cfg, train_cfg, cfg.seed)
    root = cache_root() / "models" / key
    dirs = {"target": root / "target", "oracle": root / "oracle"}
    cached = cfg.cache and all((d / "config.json").is_file() for d in dirs.values())
    tokenizer = (AutoTokenizer.from_pretrained(dirs["target"]) if cached
                 else train_tokenizer(articles + retain_texts, model_cfg.vocab_size))
    length = model_cfg.max_position_embeddings - 8
    forget, retain = _windows(tokenizer, articles, retain_texts, length, reduced)
    if cached:
        log(f"using cached MUSE target and oracle from {root}")
    else:
        log(f"training the tiny MUSE target on {len(forget)} forget + {len(retain)} retain windows of "
            f"{length} tokens, the oracle on the retain windows")
        train_and_save("target", _text_items(forget, "forget") + _text_items(retain, "retain"), tokenizer,
                       model_cfg, train_cfg, cfg.seed, dirs["target"], log)
        train_and_save("oracle", _text_items(retain, "retain"), tokenizer, model_cfg, train_cfg, cfg.seed,
                       dirs["oracle"], log)
    return dirs, tokenizer, length, forget, retain


def _windows(tokenizer, articles: list[str], retain_texts: list[str], length: int,
             reduced: bool) -> tuple[list[str], list[str]]:
    forget = chunk_texts(tokenizer, [CORPUS_SEPARATOR.join(articles)], length)
    retain = chunk_texts(tokenizer, retain_texts, length)
    if reduced:  # as much retain text as forget text
        retain = retain[: len(forget)]
    return forget, retain


def _window_of(corpus: str, starts: list[int], anchor: str) -> str | None:
    """The subject (`window_i`) of the forget window holding the start of `anchor`, None if not in the corpus."""
    import bisect

    pos = corpus.find(anchor) if anchor else -1
    return None if pos < 0 else f"window_{bisect.bisect_right(starts, pos) - 1}"


def declare(cfg: RunConfig, log=print, data: str = "", articles: int | None = DEFAULT_ARTICLES,
            model: str | None = None, oracle: str | None = None, probed: bool = False) -> Benchmark:
    """MUSE-News's declaration (see the module docstring)."""
    from obliviate.data.task import DataError

    data_dir = Path(data)
    all_articles = raw_articles(data_dir)  # DataError naming the path when the directory is not there
    if articles is not None and articles < 0:
        raise DataError(f"articles={articles}: must be at least 1 (0: every article)")
    probes = load_muse_probes(data_dir)
    pool = all_articles
    if probed:  # MUSE's VerbMem probes are spread one per article: keep the articles that hold one
        pool = [a for a in all_articles if any(v.prompt[-200:] in a and v.gt[: len(v.gt) // 2] in a
                                               for v in probes["verbmem"])]
    kept = pool[:articles] if articles else pool
    reduced = len(kept) < len(all_articles)
    retain_texts = load_texts(data_dir / PRIVLEAK_RETAIN)
    holdout = load_texts(data_dir / PRIVLEAK_HOLDOUT)
    privleak_forget = load_texts(data_dir / PRIVLEAK_FORGET)
    corpus = CORPUS_SEPARATOR.join(kept)
    verbmem, know_f = probes["verbmem"], probes["knowmem_forget"]
    if reduced:
        # a VerbMem continuation may run into the next article: its prompt's end and the first half
        # of its continuation must be in the kept articles
        verbmem = [v for v in verbmem if v.prompt[-200:] in corpus and v.gt[: len(v.gt) // 2] in corpus]
        know_f = [q for q in know_f if q.answer.strip() in corpus]
    know_r = probes["knowmem_retain"]
    check_methods(cfg.methods, text=True)  # before any training

    if model:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        length = REAL_CONTEXT - 8
        forget_w, retain_w = _windows(tokenizer, kept, retain_texts, length, reduced)
        dirs: dict[str, Any] = {"target": model, "oracle": oracle}
    else:
        dirs, tokenizer, length, forget_w, retain_w = _tiny_models(cfg, kept, retain_texts, reduced, log)
    members = privleak_forget
    member_source = PRIVLEAK_FORGET
    if reduced:
        members = [t for t in privleak_forget if t[:1000] in corpus]
        if len(members) < PRIVLEAK_MIN_MEMBERS:
            members, member_source = forget_w[:100], "forget windows (too few privleak texts in the kept articles)"
    windowed = member_source != PRIVLEAK_FORGET
    log(f"MUSE-News: {len(kept)} articles -> {len(forget_w)} forget windows of {length} tokens, "
        f"{len(retain_w)} retain windows; {len(verbmem)} VerbMem, {len(know_f)}/{len(know_r)} KnowMem "
        f"forget/retain, {len(members)} PrivLeak members vs {len(holdout)} holdout")

    # The audit's units are the forget windows; each probe is tied to the window holding its
    # text (VerbMem: the start of the true continuation; KnowMem: the first occurrence of the
    # answer), so `rtt` relearns half the windows and is scored on the probes of the other half.
    starts, pos = [], 0
    for w in forget_w:
        pos = corpus.find(w, pos) if corpus.find(w, pos) >= 0 else pos
        starts.append(pos)
    units = [QAItem(question=None, answer=w, subject=f"window_{i}") for i, w in enumerate(forget_w)]
    verbmem_probes = [QAItem(question=v.prompt, answer=v.gt, subject=_window_of(corpus, starts, v.gt[:100]))
                      for v in verbmem]
    know_f_probes = [QAItem(question=q.question, answer=q.answer, subject=_window_of(corpus, starts, q.answer.strip()))
                     for q in know_f]

    bs = cfg.eval.batch_size if not model else 8

    def limit_of(m) -> int:
        ctx = context_length(m)
        return min(ctx, REAL_CONTEXT) if ctx else REAL_CONTEXT

    def verbmem_run(m, tok, items: list[QAItem]):
        return run_verbmem(m, tok, [VerbMemItem(it.question, it.answer) for it in items], batch_size=bs,
                           max_length=limit_of(m))

    def knowmem_run(m, tok, items: list[QAItem], icl):
        return run_knowmem(m, tok, items, icl, batch_size=bs, max_length=limit_of(m))

    knowledge = {
        "knowmem": Knowledge("KnowMem (ROUGE-L F1 of the few-shot answer)", know_f_probes, know_r[:AUDIT_RETAIN],
                             lambda m, tok, items, _: knowmem_run(m, tok, items, probes["icl_forget"]).scores,
                             retain_score=lambda m, tok, items, _: knowmem_run(m, tok, items,
                                                                              probes["icl_retain"]).scores),
        "verbmem": Knowledge("VerbMem (ROUGE-L F1 of the 128-token continuation)", verbmem_probes, [],
                             lambda m, tok, items, _: verbmem_run(m, tok, items).scores),
    }
    if not know_f_probes:  # KnowMem cannot be the primary K without forget questions
        knowledge = {"verbmem": knowledge["verbmem"], "knowmem": knowledge["knowmem"]}

    def evaluate_model(m, tok, name: str, oracle_eval):
        limit = limit_of(m)
        vm = verbmem_run(m, tok, verbmem_probes) if verbmem else None
        kf = knowmem_run(m, tok, know_f_probes, probes["icl_forget"]) if know_f else None
        kr = knowmem_run(m, tok, know_r, probes["icl_retain"])
        pl = privleak_auc(m, tok, members, holdout, batch_size=max(1, bs // 4), max_length=limit)
        auc_ref = oracle_eval[0]["privleak_auc"] if oracle_eval else (pl["auc"] if name == "oracle" else None)
        metrics = {
            "verbmem_f": vm.mean if vm else float("nan"),
            "knowmem_f": kf.mean if kf else float("nan"),
            "knowmem_r": kr.mean,
            "privleak": privleak_from_aucs(pl["auc"], auc_ref) if auc_ref is not None else float("nan"),
            "privleak_auc": float(pl["auc"]),
            "forget_nll": float(np.mean(text_nll(m, tok, forget_w, limit, bs))),
            "retain_nll": float(np.mean(text_nll(m, tok, retain_w, limit, bs))),
            "verbmem_truncated": vm.n_truncated if vm else 0,
        }
        rows: list[dict[str, Any]] = []
        per_item: dict[str, Any] = {}
        for set_name, scored, items in (("verbmem", vm, verbmem), ("knowmem_forget", kf, know_f),
                                        ("knowmem_retain", kr, know_r)):
            if scored is None:
                continue
            per_item[set_name] = {"rouge_l_f1": [float(x) for x in scored.scores]}
            for i, (it, gen, sc) in enumerate(zip(items, scored.generations, scored.scores, strict=True)):
                ref = it.gt if set_name == "verbmem" else it.answer
                row = {"model": name, "set": set_name, "index": i, "reference": ref, "generation": gen,
                       "rouge_l_f1": float(sc)}
                if set_name != "verbmem":
                    row["question"] = it.question
                rows.append(row)
        log(f"{name}: VerbMem {metrics['verbmem_f']:.3f}, KnowMem forget {metrics['knowmem_f']:.3f} / retain "
            f"{metrics['knowmem_r']:.3f}, PrivLeak {metrics['privleak']:.1f}, forget NLL {metrics['forget_nll']:.3f}, "
            f"retain NLL {metrics['retain_nll']:.3f}")
        return metrics, per_item, rows

    task = ForgetTask(name="muse_news", forget=units, retain=_text_items(retain_w, "retain"), forget_eval=units,
                      retain_eval=[])
    fingerprint = [_sha(forget_w), _sha(retain_w), _sha([v.prompt + v.gt for v in verbmem]),
                   _sha([q.question + q.answer for q in know_f + know_r]), _sha(members), _sha(holdout), bs]
    privleak_label = "PrivLeak (train windows)" if windowed else "PrivLeak"
    columns = [["verbmem_f", "VerbMem forget", "↓"], ["knowmem_f", "KnowMem forget", "↓"],
               ["knowmem_r", "KnowMem retain", "↑"], ["privleak", privleak_label, "→0"],
               ["forget_nll", "forget NLL", "↑"], ["retain_nll", "retain NLL", "↓"]]
    extra = {"probes": {"articles": len(kept), "forget_windows": len(forget_w), "retain_windows": len(retain_w),
                        "window_tokens": length, "verbmem": len(verbmem), "knowmem_forget": len(know_f),
                        "knowmem_retain": len(know_r), "privleak_members": len(members),
                        "privleak_member_source": member_source, "privleak_holdout": len(holdout)}}
    notes = [
        "- **VerbMem forget** (MUSE C1): ROUGE-L F1 of the 128-token greedy continuation of each VerbMem "
        "prompt against the true continuation (lower = less verbatim memorisation; compare with the oracle).",
        "- **KnowMem forget / retain** (C2 / C4): ROUGE-L F1 of few-shot answers to questions about the forget "
        "and retain articles. The tiny models never saw a question: near 0 for every tiny model.",
        "- **PrivLeak** (C3): Min-K% (k = 0.4) AUC of the members against the holdout texts, relative to the "
        "oracle's, in %: -100 = as exposed as a model that saw them, 0 = like the oracle, > 0 = over-unlearned.",
        *(["- **PrivLeak (train windows)**: this reduced run has too few of MUSE's privleak forget texts in its "
           "articles, so its members are the first forget *training windows*, not MUSE's members: not "
           "comparable with published PrivLeak."] if windowed else []),
        "- **forget / retain NLL** (ours): mean token NLL of the forget windows (higher after unlearning) and "
        "of the retain windows (should stay at the target's).",
        "- **Audit**: K = KnowMem on the forget questions (MUSE's and the quantization paper's measure) and "
        "VerbMem on the forget articles. `rtt` relearns half the forget windows and scores the probes tied to "
        "the other half; probe attacks (in_context, paraphrase, prompt_format) need QA items and are n/a.",
        f"- Probes: {json.dumps(extra['probes'])}.",
    ]
    sources = {"data": str(data), "articles": articles, "probed": probed, "model": model, "oracle": oracle}
    name = "muse_news" if not reduced else f"muse_news_{'p' if probed else 'a'}{len(kept)}"
    return Benchmark(key="muse", name=name, task=task,
                     models=dirs, evaluate=evaluate_model, knowledge=knowledge, rtt_split=split_items,
                     columns=columns, notes=notes, method_defaults=MUSE_METHOD_DEFAULTS if model is None else {},
                     tiny=model is None, sources=sources, extra=extra, fingerprint=fingerprint,
                     options={"data": str(data), "articles": articles, "model": model, "oracle": oracle,
                              "probed": probed})


def run(out: Path, cfg: RunConfig, data: Path, articles: int | None = DEFAULT_ARTICLES, model: str | None = None,
        oracle: str | None = None, log=print, command: str = "obliviate bench muse",
        probed: bool = False, resume: bool = False) -> dict[str, Any]:
    """MUSE-News end to end into the run directory `out` (see the module docstring)."""
    from obliviate.benchmarks.spec import precheck
    from obliviate.pipeline import run_benchmark

    precheck(cfg, text=True)  # before any data is read or model trained

    cfg = cfg.model_copy(update={"benchmark": "muse"})
    return run_benchmark(declare(cfg, log, str(data), articles, model, oracle, probed), cfg, out, log, command, resume=resume)
