"""The `obliviate` command: demo, unlearn, eval, list.

Bad input (a missing file, a malformed line, an unknown method or key) is one line on
stderr naming the file, line and field, and exit code 2 — never a stack trace.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from obliviate.data.task import DataError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="LLM unlearning that does not fool itself: unlearn, evaluate, audit.")
console = Console(stderr=True)
out_console = Console()


def _fail(msg: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _command_line() -> str:
    return "obliviate " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _parse_params(params: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in params or []:
        if "=" not in p:
            _fail(f"--param {p!r}: expected KEY=VALUE")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _split(methods: str | None) -> list[str] | None:
    return [m.strip() for m in methods.split(",") if m.strip()] if methods else None


def _setup_threads() -> None:
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, min(os.cpu_count() or 1, 8)))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="run directory")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="seed of the world, the models and unlearning")] = 0,
    methods: Annotated[str | None, typer.Option(help="comma-separated methods (see `obliviate list methods`)")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML/JSON run file (see docs/config.md)")] = None,
    forget: Annotated[float | None, typer.Option(help="share of people to forget: 0.01, 0.05 or 0.10")] = None,
    quick: Annotated[bool, typer.Option(help="a reduced world and short training: a look in ~1 minute")] = False,
    audit: Annotated[bool, typer.Option(help="run the recovery audit (quantization, relearning, probes)")] = True,
    attacks: Annotated[str | None, typer.Option(help="comma-separated attacks (default: all; see `obliviate list attacks`)")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="retrain the target and oracle")] = False,
    force: Annotated[bool, typer.Option(help="overwrite an existing run directory")] = False,
) -> None:
    """The whole job offline on a CPU: world, target + oracle, unlearning, metrics, report."""
    from obliviate.config import load_run_config
    from obliviate.pipeline import prepare_run_dir, run_world
    from obliviate.report.tables import print_table

    overrides: dict[str, Any] = {"seed": seed, "methods": _split(methods), "world.forget_fraction": forget}
    if quick:
        overrides.update({"world.n_people": 20, "world.n_attributes": 6, "world.retain_eval_size": 60,
                          "world.forget_fraction": forget or 0.2})
    if no_cache:
        overrides["cache"] = False
    overrides["audit.enabled"] = audit
    overrides["audit.attacks"] = _split(attacks)
    try:
        cfg = load_run_config(config, overrides)
        prepare_run_dir(out, force)
        _setup_threads()
        results = run_world(cfg, out, log=lambda m: console.print(f"[dim]{m}[/]", highlight=False),
                            command=_command_line())
    except (DataError, KeyError) as e:
        _fail(str(e).strip("'\""))
    except KeyboardInterrupt:
        _fail(f"interrupted; partial results in {out}", 130)
    print_table(results, out_console)
    _print_audit(results)
    out_console.print(f"run directory: {out} (results.json, audit.json, report.md, per_item.jsonl, models/)")


def _print_audit(results: dict[str, Any]) -> None:
    if not results.get("audit"):
        return
    from obliviate.report.tables import print_audit

    audit = results["audit"]
    measures = audit.get("measures") or {audit.get("knowledge"): {
        "models": {n: e["audit"] for n, e in results["models"].items() if "audit" in e},
        "verdicts": audit.get("verdicts", {}), "label": audit.get("knowledge_label")}}
    for k, m in measures.items():  # one table per knowledge measure K of the benchmark
        print_audit({**audit, "knowledge": k, "knowledge_label": m.get("label") or k, "models": m["models"],
                     "verdicts": m["verdicts"]}, out_console)


@app.command("audit")
def audit_cmd(
    run_dir: Annotated[Path | None, typer.Argument(help="a run directory made by demo or unlearn")] = None,
    model: Annotated[str | None, typer.Option(help="unlearned model (models made elsewhere)")] = None,
    target: Annotated[str | None, typer.Option(help="the model before unlearning")] = None,
    oracle: Annotated[str | None, typer.Option(help="a retain-only model (optional control)")] = None,
    forget: Annotated[Path | None, typer.Option(help="forget set file (with --model)")] = None,
    retain: Annotated[Path | None, typer.Option(help="retain set file (with --model)")] = None,
    holdout: Annotated[Path | None, typer.Option(help="holdout set file (optional)")] = None,
    out: Annotated[Path | None, typer.Option(help="run directory to write (with --model)")] = None,
    attacks: Annotated[str | None, typer.Option(help="comma-separated attacks (default: all)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    force: Annotated[bool, typer.Option()] = False,
) -> None:
    """Attack unlearned models (and the target/oracle controls): does the knowledge come back?"""
    from obliviate.config import AuditConfig
    from obliviate.pipeline import audit_external, audit_run_dir

    try:
        _setup_threads()
        audit_cfg = AuditConfig(attacks=_split(attacks))
        log = lambda m: console.print(f"[dim]{m}[/]", highlight=False)  # noqa: E731
        if run_dir is not None:
            results = audit_run_dir(run_dir, audit_cfg, log=log)
        else:
            if not (model and target and forget and retain and out):
                _fail("give a RUN_DIR, or --model, --target, --forget, --retain and --out")
            results = audit_external(model, target, oracle, forget, retain, holdout, out, audit_cfg, seed,
                                     force, log=log, command=_command_line())
    except (DataError, KeyError) as e:
        _fail(str(e).strip("'\""))
    _print_audit(results)


@app.command("unlearn")
def unlearn_cmd(
    model: Annotated[str, typer.Option(help="Hugging Face causal LM: directory or Hub id")],
    forget: Annotated[Path, typer.Option(help="forget set: JSON Lines/JSON/CSV of {question, answer} or {text}")],
    retain: Annotated[Path, typer.Option(help="retain set, same formats")],
    out: Annotated[Path, typer.Option(help="run directory")],
    method: Annotated[str, typer.Option(help="unlearning method (see `obliviate list methods`)")] = "npo_kl",
    holdout: Annotated[Path | None, typer.Option(help="never-trained items of the same kind (MIA)")] = None,
    oracle: Annotated[str | None, typer.Option(help="a retain-only model, for forget quality")] = None,
    lr: Annotated[float, typer.Option()] = 1e-5,
    epochs: Annotated[int, typer.Option()] = 5,
    max_steps: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int, typer.Option()] = 8,
    grad_accum: Annotated[int, typer.Option()] = 1,
    mixed_precision: Annotated[str, typer.Option(help="no | bf16 | fp16")] = "no",
    param: Annotated[list[str] | None, typer.Option(help="method hyper-parameter KEY=VALUE (repeatable)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    audit: Annotated[bool, typer.Option(help="audit the target and the unlearned model (every attack)")] = False,
    attacks: Annotated[str | None, typer.Option(help="comma-separated attacks for --audit (default: all)")] = None,
    force: Annotated[bool, typer.Option(help="overwrite an existing run directory")] = False,
) -> None:
    """Unlearn a forget set from any causal LM, evaluate before/after, save the model (and audit it)."""
    from obliviate.config import AuditConfig, RunConfig
    from obliviate.methods import get_method, make_params
    from obliviate.pipeline import prepare_run_dir, run_user
    from obliviate.unlearn import UnlearnConfig

    try:
        make_params(get_method(method), _parse_params(param))
        ucfg = UnlearnConfig(method=method, params=_parse_params(param), lr=lr, epochs=epochs,
                             max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
                             mixed_precision=mixed_precision, seed=seed)
        cfg = RunConfig(benchmark="user", seed=seed, methods=[method], unlearn=ucfg,
                        audit=AuditConfig(enabled=audit, attacks=_split(attacks)))
        prepare_run_dir(out, force)
        _setup_threads()
        results = run_user(model, forget, retain, holdout, cfg, out, oracle,
                           log=lambda m: console.print(f"[dim]{m}[/]"), command=_command_line())
    except (DataError, KeyError) as e:
        _fail(str(e).strip("'\""))
    except KeyboardInterrupt:
        _fail(f"interrupted; partial results in {out}", 130)
    from obliviate.report.tables import print_table

    print_table(results, out_console)
    _print_audit(results)


prepare_app = typer.Typer(no_args_is_help=True, help="Train (and cache) tiny target and oracle models for a benchmark.")
bench_app = typer.Typer(no_args_is_help=True, help="Run a published benchmark end to end: unlearn, evaluate, audit.")
app.add_typer(prepare_app, name="prepare")
app.add_typer(bench_app, name="bench")

DataOpt = Annotated[Path | None, typer.Option(help="the benchmark's files in their published layout")]
SeedOpt = Annotated[int, typer.Option(help="seed of the models and of unlearning")]
ConfigOpt = Annotated[Path | None, typer.Option(help="YAML/JSON run file (method_overrides, unlearn, eval, ...)")]
MethodsOpt = Annotated[str | None, typer.Option(help="comma-separated methods (see `obliviate list methods`)")]
AttacksOpt = Annotated[str | None, typer.Option(help="comma-separated attacks (default: all)")]
AuditOpt = Annotated[bool, typer.Option(help="run the recovery audit")]
ModelOpt = Annotated[str | None, typer.Option(help="a real model (directory or Hub id) instead of the tiny one")]
OracleOpt = Annotated[str | None, typer.Option(help="its retain-only oracle (forget quality, privleak)")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="retrain the tiny models")]
ForceOpt = Annotated[bool, typer.Option(help="overwrite an existing run directory")]


def _bench_config(config: Path | None, seed: int, methods: str | None, default_methods: list[str],
                  attacks: str | None, audit: bool, no_cache: bool):
    from obliviate.config import load_run_config

    overrides: dict[str, Any] = {"seed": seed, "audit.enabled": audit, "audit.attacks": _split(attacks)}
    overrides["methods"] = _split(methods) or (None if config else default_methods)
    if no_cache:
        overrides["cache"] = False
    return load_run_config(config, overrides)


def _bench(out: Path, force: bool, config: Path | None, seed: int, methods: str | None, default_methods: list[str],
           job, attacks: str | None = None, audit: bool = False, no_cache: bool = False,
           model: str | None = None, oracle: str | None = None) -> None:
    """The shared body of every `bench` command: check the options, resolve the run config, run
    `job(cfg, log, command)` in a fresh run directory, print the tables."""
    if oracle and not model:
        _fail("--oracle needs --model (the tiny target has its own oracle)")
    try:
        cfg = _bench_config(config, seed, methods, default_methods, attacks, audit, no_cache)
    except DataError as e:
        _fail(str(e))
    _run_bench(out, force, lambda log, command: job(cfg, log, command))


def _run_bench(out: Path, force: bool, job) -> None:
    """Prepare the run directory, run `job(log, command)`, print the tables; errors are one line."""
    from obliviate.pipeline import prepare_run_dir
    from obliviate.report.tables import print_table

    try:
        prepare_run_dir(out, force)
        _setup_threads()
        results = job(lambda m: console.print(f"[dim]{m}[/]", highlight=False), _command_line())
    except (DataError, KeyError) as e:
        _fail(str(e).strip("'\""))
    except KeyboardInterrupt:
        _fail(f"interrupted; partial results in {out}", 130)
    print_table(results, out_console)
    _print_audit(results)
    out_console.print(f"run directory: {out}")


@prepare_app.command("tofu")
def prepare_tofu_cmd(
    data: DataOpt = None,
    splits: Annotated[str, typer.Option(help="the oracles to train: forget01,forget05,forget10")] = "forget01,forget05,forget10",
    authors: Annotated[int | None, typer.Option(help="reduced TOFU: this many retain authors")] = None,
    seed: SeedOpt = 0,
    no_cache: NoCacheOpt = False,
) -> None:
    """Train a tiny TOFU target on full.json and the retain-only oracles (retain99/95/90), cached."""
    from obliviate.models.prepare import prepare_tofu_models

    try:
        _setup_threads()
        dirs = prepare_tofu_models(data, tuple(_split(splits) or ()), authors, seed=seed, use_cache=not no_cache,
                                   log=lambda m: console.print(f"[dim]{m}[/]", highlight=False))
    except DataError as e:
        _fail(str(e))
    for name, path in dirs.items():
        log = path / "train_log.json"
        info = json.loads(log.read_text()) if log.is_file() else {}
        label = "target" if name == "target" else f"oracle ({name})"
        out_console.print(f"{label:<20} {path}  {info.get('stop_metric', '')} {info.get('acc', float('nan')):.3f}, "
                          f"{info.get('epochs', '?')} epochs, {info.get('seconds', '?')} s")


@bench_app.command("tofu")
def bench_tofu_cmd(
    out: Annotated[Path, typer.Option(help="run directory")] = Path("runs/tofu"),
    split: Annotated[str, typer.Option(help="forget01 | forget05 | forget10")] = "forget10",
    authors: Annotated[int | None, typer.Option(help="reduced TOFU: this many retain authors")] = None,
    data: DataOpt = None,
    model: ModelOpt = None,
    oracle: OracleOpt = None,
    methods: MethodsOpt = None,
    attacks: AttacksOpt = None,
    audit: AuditOpt = True,
    config: ConfigOpt = None,
    seed: SeedOpt = 0,
    no_cache: NoCacheOpt = False,
    force: ForceOpt = False,
) -> None:
    """TOFU end to end: tiny target + oracle from the real data (or --model/--oracle), methods, suite, audit."""
    from obliviate.benchmarks import tofu

    _bench(out, force, config, seed, methods, tofu.DEFAULT_METHODS,
           lambda cfg, log, command: tofu.run(out, cfg, split, authors, data, model, oracle, log, command),
           attacks=attacks, audit=audit, no_cache=no_cache, model=model, oracle=oracle)


@bench_app.command("muse")
def bench_muse_cmd(
    data: Annotated[Path, typer.Option(help="MUSE-News files (raw/, verbmem/, knowmem/, privleak/)")],
    out: Annotated[Path, typer.Option(help="run directory")] = Path("runs/muse"),
    articles: Annotated[int | None, typer.Option(
        help="keep the first N forget articles (default: 9 for the tiny models, all for --model; 0: all)")] = None,
    probed: Annotated[bool, typer.Option(
        "--probed-articles", help="keep only the articles that hold a VerbMem probe (more probes for a reduced run)")
    ] = False,
    model: ModelOpt = None,
    oracle: OracleOpt = None,
    methods: MethodsOpt = None,
    attacks: AttacksOpt = None,
    audit: AuditOpt = True,
    config: ConfigOpt = None,
    seed: SeedOpt = 0,
    no_cache: NoCacheOpt = False,
    force: ForceOpt = False,
) -> None:
    """MUSE-News: unlearn the forget articles (text), then VerbMem, KnowMem and PrivLeak against the oracle."""
    from obliviate.benchmarks import muse

    _bench(out, force, config, seed, methods, muse.DEFAULT_METHODS,
           lambda cfg, log, command: muse.run(
        out, cfg, data, articles if articles is not None else (None if model else muse.DEFAULT_ARTICLES), model,
        oracle, log, command, probed),
           attacks=attacks, audit=audit, no_cache=no_cache, model=model, oracle=oracle)


@bench_app.command("semeval")
def bench_semeval_cmd(
    data: Annotated[Path, typer.Option(help="SemEval-2025 Task 4 files (forget/retain x train/validation, mia_data/)")],
    out: Annotated[Path, typer.Option(help="run directory")] = Path("runs/semeval"),
    model: ModelOpt = None,
    oracle: OracleOpt = None,
    mmlu: Annotated[float | None, typer.Option(help="the model's MMLU accuracy, for the final score")] = None,
    methods: MethodsOpt = None,
    attacks: AttacksOpt = None,
    audit: AuditOpt = True,
    config: ConfigOpt = None,
    seed: SeedOpt = 0,
    no_cache: NoCacheOpt = False,
    force: ForceOpt = False,
) -> None:
    """SemEval-2025 Task 4: unlearn, then the 12-cell task aggregate, the MIA score and the final score."""
    from obliviate.benchmarks import semeval

    _bench(out, force, config, seed, methods, semeval.DEFAULT_METHODS,
           lambda cfg, log, command: semeval.run(out, cfg, data, model, oracle, mmlu, log, command),
           attacks=attacks, audit=audit, no_cache=no_cache, model=model, oracle=oracle)


@bench_app.command("tdec")
def bench_tdec_cmd(
    data: Annotated[Path, typer.Option(help="TDEC files: lm_extraction_32_{0..4}.csv and validation/")],
    out: Annotated[Path, typer.Option(help="run directory")] = Path("runs/tdec"),
    forget_set: Annotated[int, typer.Option(help="which 32-sample forget set (0-4)")] = 0,
    model: ModelOpt = None,
    unseen: Annotated[str | None, typer.Option(help="unseen-text reference: a forget-set index, or pile|wikitext|lambada")] = None,
    limit: Annotated[int | None, typer.Option(help="keep the first N forget sequences")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="cut every text to this many tokens")] = None,
    methods: MethodsOpt = None,
    attacks: AttacksOpt = None,
    audit: AuditOpt = True,
    config: ConfigOpt = None,
    seed: SeedOpt = 0,
    no_cache: NoCacheOpt = False,
    force: ForceOpt = False,
) -> None:
    """TDEC: unlearn until MA and EL10 fall below their unseen-text values (Jang et al.); ga vs ihl vs fila."""
    from obliviate.benchmarks import tdec

    unseen_arg: int | str | None = int(unseen) if unseen is not None and unseen.isdigit() else unseen
    _bench(out, force, config, seed, methods, tdec.DEFAULT_METHODS,
           lambda cfg, log, command: tdec.run(
        out, cfg, data, forget_set, model, unseen_arg, limit, max_tokens=max_tokens, log=log, command=command),
           attacks=attacks, audit=audit, no_cache=no_cache)


@bench_app.command("wmdp")
def bench_wmdp_cmd(
    model: Annotated[str, typer.Option(help="the model to evaluate (and unlearn): directory or Hub id")],
    data: Annotated[Path, typer.Option(help="directory of wmdp-{bio,chem,cyber}.json")],
    out: Annotated[Path, typer.Option(help="run directory")] = Path("runs/wmdp"),
    baseline: Annotated[str | None, typer.Option(help="a second model to compare (e.g. the base of an RMU model)")] = None,
    subsets: Annotated[str, typer.Option(help="comma-separated: bio,chem,cyber")] = "bio,chem,cyber",
    limit: Annotated[int | None, typer.Option(help="at most this many questions per subset")] = None,
    forget_corpus: Annotated[Path | None, typer.Option(help="forget text ({text} JSON Lines/JSON/CSV): unlearn")] = None,
    retain_corpus: Annotated[Path | None, typer.Option(help="retain text, same formats")] = None,
    methods: MethodsOpt = None,
    attacks: AttacksOpt = None,
    audit: AuditOpt = True,
    config: ConfigOpt = None,
    seed: SeedOpt = 0,
    force: ForceOpt = False,
) -> None:
    """WMDP multiple-choice accuracy (zero-shot and calibrated); with corpora, unlearn (RMU) and re-evaluate."""
    from obliviate.benchmarks import wmdp

    _bench(out, force, config, seed, methods, wmdp.DEFAULT_METHODS,
           lambda cfg, log, command: wmdp.run(
        out, cfg, data, model, tuple(_split(subsets) or ()), limit, forget_corpus, retain_corpus, baseline, log,
        command), attacks=attacks, audit=audit)


@bench_app.command("rwku")
def bench_rwku_cmd(
    model: Annotated[str, typer.Option(help="the model to evaluate and unlearn: directory or Hub id")],
    data: Annotated[Path, typer.Option(help="RWKU files (per-subject folders or flat files with `subject`)")],
    subject: Annotated[list[str], typer.Option(help="a person to forget (repeatable; names may hold commas)")],
    out: Annotated[Path, typer.Option(help="run directory")] = Path("runs/rwku"),
    chat: Annotated[bool, typer.Option(help="prompt through the tokenizer's chat template")] = False,
    strict: Annotated[bool, typer.Option(help="an off-pattern record (a level-1 probe without ___) is an error, "
                                               "not a counted warning")] = False,
    methods: MethodsOpt = None,
    attacks: AttacksOpt = None,
    audit: AuditOpt = True,
    config: ConfigOpt = None,
    seed: SeedOpt = 0,
    force: ForceOpt = False,
) -> None:
    """RWKU probes (3 forget levels, neighbours, MIA) before and after unlearning the subjects' passages."""
    from obliviate.benchmarks import rwku

    _bench(out, force, config, seed, methods, rwku.DEFAULT_METHODS,
           lambda cfg, log, command: rwku.run(out, cfg, data, model, subject, log, command, chat, strict),
           attacks=attacks, audit=audit)


class Benchmark(StrEnum):
    tofu = "tofu"


@app.command("eval")
def eval_cmd(
    run_dir: Annotated[Path | None, typer.Argument(help="a run directory: print its results")] = None,
    benchmark: Annotated[Benchmark | None, typer.Option(help="evaluate --model on a benchmark")] = None,
    data: Annotated[Path | None, typer.Option(help="benchmark files in their published layout")] = None,
    model: Annotated[str | None, typer.Option(help="model directory or Hub id")] = None,
    oracle: Annotated[str | None, typer.Option(help="retain-only model (forget quality, privleak)")] = None,
    split: Annotated[str, typer.Option(help="TOFU forget split: forget01 | forget05 | forget10")] = "forget10",
    authors: Annotated[int | None, typer.Option(help="reduced TOFU: this many retain authors")] = None,
    out: Annotated[Path | None, typer.Option(help="write results.json/report.md here")] = None,
    force: Annotated[bool, typer.Option()] = False,
) -> None:
    """Print a run's results, or evaluate a model on a benchmark (TOFU)."""
    from obliviate.report import load_results, print_table

    try:
        if run_dir is not None:
            print_table(load_results(run_dir), out_console)
            return
        if benchmark is None or model is None or data is None:
            _fail("give a RUN_DIR, or --benchmark, --data and --model")
        from obliviate.data.tofu import load_tofu
        from obliviate.pipeline import evaluate_models

        task = load_tofu(data, split, authors)
        _setup_threads()
        results = evaluate_models(task, model, oracle, out, force, command=_command_line(),
                                  log=lambda m: console.print(f"[dim]{m}[/]"))
    except (DataError, KeyError) as e:
        _fail(str(e).strip("'\""))
    print_table(results, out_console)


class What(StrEnum):
    methods = "methods"
    metrics = "metrics"
    attacks = "attacks"
    benchmarks = "benchmarks"


@app.command("list")
def list_cmd(what: Annotated[What, typer.Argument(help="methods | metrics | attacks | benchmarks")]) -> None:
    """What is registered, one name a line with a one-line description."""
    if what is What.methods:
        from obliviate.methods import available

        entries = {name: m.description for name, m in available().items()}
    elif what is What.metrics:
        from obliviate.metrics import METRICS

        entries = {name: m.description for name, m in METRICS.items()}
    elif what is What.attacks:
        from obliviate.attacks import available as attacks
        from obliviate.attacks import default_attacks

        registered = attacks()
        entries = {name: f"[{registered[name].family}] {registered[name].description}" for name in default_attacks()}
    else:
        from obliviate.data import BENCHMARKS

        entries = dict(BENCHMARKS)
    if not entries:
        typer.echo(f"(no {what.value} registered)")
    width = max((len(n) for n in entries), default=0)
    for name, desc in entries.items():
        typer.echo(f"{name:<{width}}  {desc}")


def main() -> None:  # pragma: no cover
    app()
