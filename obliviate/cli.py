"""The `obliviate` command: demo, unlearn, eval, audit, bench, report, list.

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


StrictOpt = Annotated[bool, typer.Option(help="exit with status 1 at the end if any attack raised (the audit "
                                                "records it as `error: ...` and goes on)")]


def _fail_if_attacks_failed(results: dict[str, Any], strict: bool) -> None:
    """With --strict, an attack that raised (recorded as `error: ...`) fails the command, after the
    results and tables were written: nothing already measured is lost."""
    if not strict:
        return
    from obliviate.audit import attack_errors

    per_model = {n: e["audit"] for n, e in results.get("models", {}).items() if "audit" in e}
    errors = attack_errors(per_model | results.get("tdec_audit", {}))  # tdec keeps its own audit rows
    if errors:
        _fail(f"--strict: {len(errors)} attack(s) failed: " + "; ".join(errors), code=1)


PromptTemplateOpt = Annotated[str | None, typer.Option(
    help="prompt format: a preset (obliviate, open-unlearning, tofu-llama2, tofu-phi, chat) or a template with "
         "{question}, e.g. 'Question: {question}\\nAnswer: ' (\\n is a newline)")]
AnswerPrefixOpt = Annotated[str | None, typer.Option(help="text before the answer, tokenized with it (obliviate's "
                                                          "format: ' '; open-unlearning's: '')")]
ChatOpt = Annotated[bool, typer.Option("--chat", help="prompt through the tokenizer's chat template")]


def _prompt_fields(template: str | None, answer_prefix: str | None, chat: bool) -> dict[str, Any]:
    """The CLI's prompt options as fields of `PromptFormat` (a preset name or a template)."""
    from obliviate.data.collate import PROMPT_PRESETS

    fields: dict[str, Any] = {}
    if template is not None:
        if template in PROMPT_PRESETS:
            fields["preset"] = template
        else:
            fields["template"] = template.replace("\\n", "\n").replace("\\t", "\t")
    if chat:
        fields.update(chat=True, answer_prefix="")  # a chat template ends the prompt: no space before the answer
    if answer_prefix is not None:
        fields["answer_prefix"] = answer_prefix.replace("\\n", "\n")
    return fields


def _prompt_format(template: str | None, answer_prefix: str | None, chat: bool):
    """`PromptFormat` from the CLI options; a bad template is a one-line DataError."""
    from pydantic import ValidationError

    from obliviate.data.collate import PromptFormat

    try:
        return PromptFormat(**_prompt_fields(template, answer_prefix, chat))
    except ValidationError as e:
        raise DataError(f"--prompt-template: {e.errors()[0]['msg']}") from e


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed option `name` (its parameter name): a run file's value wins over a
    CLI *default*, and only options the user actually gave override the file (click's
    parameter source; typer ships its own click, so the context comes as a parameter)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def _check_models(*names: str | None) -> None:
    """Every model path named can load (exists, config.json, readable safetensors), before the run
    directory is touched."""
    from obliviate.models.load import check_model

    for name in names:
        if name:
            check_model(name)


def _split(methods: str | None) -> list[str] | None:
    return [m.strip() for m in methods.split(",") if m.strip()] if methods else None


def _log(m: str) -> None:
    console.print(f"[dim]{m}[/]", highlight=False)


def _run_in_dir(out: Path, force: bool, resume: bool, job):
    """Run `job()` in the locked run directory `out` (see obliviate/rundir.py): bad input is one
    line and exit 2; Ctrl-C exits 130 and SIGTERM 143, after the job saved what it reached."""
    from obliviate.rundir import TERMINATED, open_run_dir, terminate_as_interrupt

    try:
        with terminate_as_interrupt(), open_run_dir(out, force=force, resume=resume, log=_log):
            _setup_threads()
            return job()
    except (DataError, KeyError) as e:
        _fail(str(e).strip("'\""))
    except KeyboardInterrupt:
        _fail(_stopped_message(out), 143 if TERMINATED["value"] else 130)


def _stopped_message(out: Path) -> str:
    from obliviate.report.results import load_results

    try:
        models = load_results(out).get("models", {})
    except DataError:
        models = {}
    done = [n for n, e in models.items() if e.get("unlearn") and e["unlearn"].get("status") != "interrupted"]
    if not done:
        return (f"stopped before any unlearned model was finished; {out} keeps the checkpoints reached "
                "(rerun with --resume to continue)")
    return (f"stopped; {len(done)} finished model(s) ({', '.join(done)}) are in {out} "
            "(rerun with --resume to continue)")


def _require_complete(run_dir: Path, allow_incomplete: bool) -> None:
    """eval/audit on a run directory: an unfinished run is refused (exit 1) unless allowed."""
    from obliviate.report.results import load_results
    from obliviate.rundir import Incomplete, require_complete

    try:
        require_complete(run_dir, load_results(run_dir), allow_incomplete,
                         log=lambda m: console.print(f"[yellow]warning:[/] {m}", highlight=False, soft_wrap=True))
    except Incomplete as e:
        _fail(str(e), 1)
    except DataError as e:
        _fail(str(e))


SeedsOpt = Annotated[str | None, typer.Option(help="repeat unlearning and the audit per seed, e.g. 0,1,2: "
                                                     "mean ± std and verdict agreement")]


def _with_seeds(cfg, seeds: str | None):
    from obliviate.seeds import parse_seeds

    parsed = parse_seeds(seeds)
    return cfg.model_copy(update={"seeds": parsed}) if parsed else cfg


def _over_seeds(cfg, out: Path, run_one, resume: bool):
    """`run_one(cfg, out, resume)` once, or once per seed of `cfg.seeds` (obliviate/seeds.py)."""
    if not cfg.seeds:
        return run_one(cfg, out, resume)
    from obliviate.config import dump_run_config
    from obliviate.seeds import run_seeds

    dump_run_config(cfg, out / "config.yaml")
    return run_seeds(cfg, out, cfg.seeds, run_one, log=_log)


ResumeOpt = Annotated[bool, typer.Option(help="continue the interrupted run in --out (finished models are kept)")]
AllowIncompleteOpt = Annotated[bool, typer.Option(help="read a run that is not finished (interrupted, crashed)")]


def _setup_threads() -> None:
    """One torch thread per core (at most 8) unless OMP_NUM_THREADS says otherwise. Measured with
    bench/train_efficiency.py on 2 cores: idle, 2 threads train the tiny world model 1.69x faster
    than 1; beside one busy process, 2 threads are 2.4x slower than 1 (an OpenMP thread that
    loses its core stalls the other at every barrier): set OMP_NUM_THREADS=1 on a shared machine.
    The count is fixed, not chosen from the load, because it changes float sums: the same seed
    must give the same numbers on one machine.
    It is recorded in provenance.json."""
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, min(os.cpu_count() or 1, 8)))


@app.command()
def demo(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="run directory")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="seed of the world, the models and unlearning")] = 0,
    methods: Annotated[str | None, typer.Option(help="comma-separated methods (see `obliviate list methods`)")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML/JSON run file (see docs/config.md)")] = None,
    forget: Annotated[float | None, typer.Option(help="share of people to forget: 0.01, 0.05 or 0.10")] = None,
    quick: Annotated[bool, typer.Option(help="a reduced world and short training: a look in ~1 minute")] = False,
    audit: Annotated[bool, typer.Option(help="run the recovery audit (quantization, relearning, probes)")] = True,
    attacks: Annotated[str | None, typer.Option(help="comma-separated attacks (default: all; see `obliviate list attacks`)")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="retrain the target and oracle")] = False,
    force: Annotated[bool, typer.Option(help="replace an existing run directory")] = False,
    resume: ResumeOpt = False,
    seeds: SeedsOpt = None,
    strict: StrictOpt = False,
    prompt_template: PromptTemplateOpt = None,
    answer_prefix: AnswerPrefixOpt = None,
    chat: ChatOpt = False,
) -> None:
    """The whole job offline on a CPU: world, target + oracle, unlearning, metrics, report."""
    from obliviate.config import load_run_config
    from obliviate.pipeline import run_world
    from obliviate.report.tables import print_table

    overrides: dict[str, Any] = {"seed": seed if _given(ctx, "seed") else None, "methods": _split(methods),
                                 "world.forget_fraction": forget}
    if quick:
        overrides.update({"world.n_people": 20, "world.n_attributes": 6, "world.retain_eval_size": 60,
                          "world.forget_fraction": forget or 0.2})
    if no_cache:
        overrides["cache"] = False
    overrides["audit.enabled"] = audit if _given(ctx, "audit") else None
    overrides["audit.attacks"] = _split(attacks)
    overrides |= {f"prompt.{k}": v for k, v in _prompt_fields(prompt_template, answer_prefix, chat).items()}
    try:
        cfg = _with_seeds(load_run_config(config, overrides), seeds)
    except (DataError, KeyError) as e:
        _fail(str(e).strip("'\""))
    results = _run_in_dir(out, force, resume, lambda: _over_seeds(
        cfg, out, lambda c, o, r: run_world(c, o, log=_log, command=_command_line(), resume=r), resume))
    print_table(results, out_console)
    _print_audit(results)
    out_console.print(f"run directory: {out} (results.json, audit.json, report.md, report.html, per_item.jsonl, "
                      "models/)")
    _fail_if_attacks_failed(results, strict)


def _print_audit(results: dict[str, Any]) -> None:
    for name, v in results.get("verdict_agreement", {}).items():
        out_console.print(f"  {name}: {v}", highlight=False)
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
    allow_incomplete: AllowIncompleteOpt = False,
    strict: StrictOpt = False,
    prompt_template: PromptTemplateOpt = None,
    answer_prefix: AnswerPrefixOpt = None,
    chat: ChatOpt = False,
) -> None:
    """Attack unlearned models (and the target/oracle controls): does the knowledge come back?"""
    from obliviate.config import AuditConfig
    from obliviate.pipeline import audit_external, audit_run_dir

    audit_cfg = AuditConfig(attacks=_split(attacks))
    prompt_fields = _prompt_fields(prompt_template, answer_prefix, chat)
    if run_dir is not None:
        if prompt_fields:
            _fail("a run directory is audited in the prompt format of its config.yaml; "
                  "--prompt-template, --answer-prefix and --chat go with --model")
        _require_complete(run_dir, allow_incomplete)
        results = _run_in_dir(run_dir, False, True, lambda: audit_run_dir(run_dir, audit_cfg, log=_log))
    else:
        if not (model and target and forget and retain and out):
            _fail("give a RUN_DIR, or --model, --target, --forget, --retain and --out")
        try:
            fmt = _prompt_format(prompt_template, answer_prefix, chat)
            _check_models(model, target, oracle)
        except (DataError, KeyError) as e:
            _fail(str(e).strip("'\""))
        results = _run_in_dir(out, force, False, lambda: audit_external(
            model, target, oracle, forget, retain, holdout, out, audit_cfg, seed, log=_log,
            command=_command_line(), prompt=fmt))
    _print_audit(results)
    _fail_if_attacks_failed(results, strict)


@app.command("unlearn")
def unlearn_cmd(
    ctx: typer.Context,
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
    config: Annotated[Path | None, typer.Option(help="YAML/JSON run file (seed, unlearn, eval, method_overrides, "
                                                     "prompt)")] = None,
    audit: Annotated[bool, typer.Option(help="audit the target and the unlearned model (every attack)")] = False,
    attacks: Annotated[str | None, typer.Option(help="comma-separated attacks for --audit (default: all)")] = None,
    force: Annotated[bool, typer.Option(help="replace an existing run directory")] = False,
    resume: ResumeOpt = False,
    checkpoint_every: Annotated[int, typer.Option(help="optimizer steps between resumable checkpoints (0: none)")] = 50,
    prompt_template: PromptTemplateOpt = None,
    answer_prefix: AnswerPrefixOpt = None,
    chat: ChatOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Unlearn a forget set from any causal LM, evaluate before/after, save the model (and audit it)."""
    from obliviate.config import AuditConfig, RunConfig
    from obliviate.data.jsonl import load_user_task
    from obliviate.pipeline import run_user

    try:
        options = {"lr": lr, "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size,
                   "grad_accum": grad_accum, "mixed_precision": mixed_precision, "checkpoint_every": checkpoint_every}
        ucfg, ecfg = _unlearn_settings(ctx, config, method, _parse_params(param), options, seed,
                                       _prompt_fields(prompt_template, answer_prefix, chat))
        load_user_task(forget, retain, holdout)  # bad input: one line, before any model loads
        _check_models(model, oracle)
        cfg = RunConfig(benchmark="user", seed=ucfg.seed, methods=[ucfg.method], unlearn=ucfg, eval=ecfg,
                        prompt=ucfg.prompt, audit=AuditConfig(enabled=audit, attacks=_split(attacks)))
    except (DataError, KeyError) as e:
        _fail(str(e).strip("'\""))
    results = _run_in_dir(out, force, resume, lambda: run_user(
        model, forget, retain, holdout, cfg, out, oracle, log=_log, command=_command_line(), resume=resume))
    from obliviate.report.tables import print_table

    print_table(results, out_console)
    status = results["models"][ucfg.method]["unlearn"]
    _print_audit(results)
    if status["status"] == "diverged":  # a wrecked model is not a result: say so in the exit code
        _fail(f"{ucfg.method} {status['message']}", 1)
    _fail_if_attacks_failed(results, strict)


def _unlearn_settings(ctx: typer.Context, config: Path | None, method: str, params: dict[str, Any],
                      options: dict[str, Any], seed: int, prompt: dict[str, Any] | None = None):
    """(UnlearnConfig, EvalConfig) of `obliviate unlearn`, validated: CLI defaults < the run file's
    `unlearn`, `seed`, `eval`, `prompt` and `method_overrides[METHOD]` < the options the user typed.
    A run file may name the method as `methods: [one]`. One prompt format serves both."""
    from pydantic import ValidationError

    from obliviate.config import load_run_config, validated
    from obliviate.data.collate import PromptFormat
    from obliviate.evaluate import EvalConfig
    from obliviate.methods import get_method, make_params
    from obliviate.unlearn import UnlearnConfig

    values: dict[str, Any] = {"method": method, "params": params, "seed": seed, **options}
    ecfg = EvalConfig()
    if config is not None:
        cfg = load_run_config(config)
        given = cfg.model_fields_set
        from_file = cfg.unlearn.model_dump(include=cfg.unlearn.model_fields_set) if "unlearn" in given else {}
        if "methods" in given:
            if len(cfg.methods) != 1 and not _given(ctx, "method"):
                raise DataError(f"{config}: methods lists {len(cfg.methods)}; unlearn runs one (give --method)")
            from_file["method"] = cfg.methods[0]
        name = method if _given(ctx, "method") else from_file.get("method", method)
        override = cfg.method_overrides.get(name, {})
        from_file |= {k: v for k, v in override.items() if k != "params"}
        file_params = {**from_file.pop("params", {}), **override.get("params", {})}
        if "seed" in given:
            from_file["seed"] = cfg.seed
        values |= {k: v for k, v in from_file.items() if not _given(ctx, k)}
        values["params"] = {**file_params, **params}
        ecfg = cfg.eval
        fmt_fields = {**cfg.prompt.model_dump(exclude_defaults=True), **(prompt or {})}
    else:
        fmt_fields = dict(prompt or {})
    try:
        values["prompt"] = PromptFormat(**fmt_fields)
    except ValidationError as e:
        raise DataError(f"--prompt-template: {e.errors()[0]['msg']}") from e
    ecfg = ecfg.model_copy(update={"prompt": values["prompt"]})
    ucfg = validated(UnlearnConfig, values)
    make_params(get_method(ucfg.method), ucfg.params)
    return ucfg, ecfg


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
ForceOpt = Annotated[bool, typer.Option(help="replace an existing run directory")]


def _bench_config(ctx: typer.Context, config: Path | None, seed: int, methods: str | None,
                  default_methods: list[str], attacks: str | None, audit: bool, no_cache: bool,
                  prompt: dict[str, Any] | None = None):
    from obliviate.config import load_run_config

    overrides: dict[str, Any] = {"seed": seed if _given(ctx, "seed") else None,
                                 "audit.enabled": audit if _given(ctx, "audit") else None, "audit.attacks": _split(attacks)}
    overrides |= {f"prompt.{k}": v for k, v in (prompt or {}).items()}
    overrides["methods"] = _split(methods) or (None if config else default_methods)
    if no_cache:
        overrides["cache"] = False
    return load_run_config(config, overrides)


def _bench(ctx: typer.Context, out: Path, force: bool, config: Path | None, seed: int, methods: str | None,
           default_methods: list[str],
           job, attacks: str | None = None, audit: bool = False, no_cache: bool = False,
           model: str | None = None, oracle: str | None = None, resume: bool = False,
           seeds: str | None = None, strict: bool = False, prompt: dict[str, Any] | None = None) -> None:
    """The shared body of every `bench` command: check the options, resolve the run config, run
    `job(cfg, log, command)` in a fresh (or, with `resume`, the interrupted) run directory, print the tables."""
    if oracle and not model:
        _fail("--oracle needs --model (the tiny target has its own oracle)")
    try:
        cfg = _with_seeds(_bench_config(ctx, config, seed, methods, default_methods, attacks, audit, no_cache, prompt),
                          seeds)
        _check_models(model, oracle)
    except (DataError, KeyError) as e:
        _fail(str(e).strip("'\""))
    _run_bench(out, force, lambda log, command: _over_seeds(
        cfg, out, lambda c, o, r: job(c, o, log, command, r), resume), resume, strict)


def _run_bench(out: Path, force: bool, job, resume: bool = False, strict: bool = False) -> None:
    """Run `job(log, command)` in the locked run directory, print the tables; errors are one line."""
    from obliviate.report.tables import print_table

    results = _run_in_dir(out, force, resume, lambda: job(_log, _command_line()))
    print_table(results, out_console)
    _print_audit(results)
    out_console.print(f"run directory: {out}")
    _fail_if_attacks_failed(results, strict)


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
    ctx: typer.Context,
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
    resume: ResumeOpt = False,
    seeds: SeedsOpt = None,
    strict: StrictOpt = False,
    prompt_template: PromptTemplateOpt = None,
    answer_prefix: AnswerPrefixOpt = None,
    chat: ChatOpt = False,
) -> None:
    """TOFU end to end: tiny target + oracle from the real data (or --model/--oracle), methods, suite, audit."""
    from obliviate.benchmarks import tofu

    _bench(ctx, out, force, config, seed, methods, tofu.DEFAULT_METHODS,
           lambda cfg, o, log, command, r: tofu.run(o, cfg, split, authors, data, model, oracle, log, command,
                                                    resume=r),
           attacks=attacks, audit=audit, no_cache=no_cache, model=model, oracle=oracle, resume=resume, seeds=seeds,
           strict=strict, prompt=_prompt_fields(prompt_template, answer_prefix, chat))


@bench_app.command("muse")
def bench_muse_cmd(
    ctx: typer.Context,
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
    resume: ResumeOpt = False,
) -> None:
    """MUSE-News: unlearn the forget articles (text), then VerbMem, KnowMem and PrivLeak against the oracle."""
    from obliviate.benchmarks import muse

    _bench(ctx, out, force, config, seed, methods, muse.DEFAULT_METHODS,
           lambda cfg, o, log, command, r: muse.run(
        o, cfg, data, articles if articles is not None else (None if model else muse.DEFAULT_ARTICLES), model,
        oracle, log, command, probed, resume=r),
           attacks=attacks, audit=audit, no_cache=no_cache, model=model, oracle=oracle, resume=resume)


@bench_app.command("semeval")
def bench_semeval_cmd(
    ctx: typer.Context,
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
    resume: ResumeOpt = False,
) -> None:
    """SemEval-2025 Task 4: unlearn, then the 12-cell task aggregate, the MIA score and the final score."""
    from obliviate.benchmarks import semeval

    _bench(ctx, out, force, config, seed, methods, semeval.DEFAULT_METHODS,
           lambda cfg, o, log, command, r: semeval.run(o, cfg, data, model, oracle, mmlu, log, command, resume=r),
           attacks=attacks, audit=audit, no_cache=no_cache, model=model, oracle=oracle, resume=resume)


@bench_app.command("tdec")
def bench_tdec_cmd(
    ctx: typer.Context,
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
    strict: StrictOpt = False,
    resume: ResumeOpt = False,
) -> None:
    """TDEC: unlearn until MA and EL10 fall below their unseen-text values (Jang et al.); ga vs ihl vs fila."""
    from obliviate.benchmarks import tdec

    unseen_arg: int | str | None = int(unseen) if unseen is not None and unseen.isdigit() else unseen
    _bench(ctx, out, force, config, seed, methods, tdec.DEFAULT_METHODS,
           lambda cfg, o, log, command, r: tdec.run(
        o, cfg, data, forget_set, model, unseen_arg, limit, max_tokens=max_tokens, log=log, command=command, resume=r),
           attacks=attacks, audit=audit, no_cache=no_cache, strict=strict, resume=resume)


@bench_app.command("wmdp")
def bench_wmdp_cmd(
    ctx: typer.Context,
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
    resume: ResumeOpt = False,
) -> None:
    """WMDP multiple-choice accuracy (zero-shot and calibrated); with corpora, unlearn (RMU) and re-evaluate."""
    from obliviate.benchmarks import wmdp

    _bench(ctx, out, force, config, seed, methods, wmdp.DEFAULT_METHODS,
           lambda cfg, o, log, command, r: wmdp.run(
        o, cfg, data, model, tuple(_split(subsets) or ()), limit, forget_corpus, retain_corpus, baseline, log,
        command, resume=r), attacks=attacks, audit=audit, resume=resume)


@bench_app.command("rwku")
def bench_rwku_cmd(
    ctx: typer.Context,
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
    resume: ResumeOpt = False,
) -> None:
    """RWKU probes (3 forget levels, neighbours, MIA) before and after unlearning the subjects' passages."""
    from obliviate.benchmarks import rwku

    _bench(ctx, out, force, config, seed, methods, rwku.DEFAULT_METHODS,
           lambda cfg, o, log, command, r: rwku.run(o, cfg, data, model, subject, log, command, chat, strict, resume=r),
           attacks=attacks, audit=audit, resume=resume)


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
    allow_incomplete: AllowIncompleteOpt = False,
    prompt_template: PromptTemplateOpt = None,
    answer_prefix: AnswerPrefixOpt = None,
    chat: ChatOpt = False,
) -> None:
    """Print a run's results, or evaluate a model on a benchmark (TOFU)."""
    from obliviate.report import load_results, print_table

    if run_dir is not None:
        _require_complete(run_dir, allow_incomplete)
    try:
        if run_dir is not None:
            print_table(load_results(run_dir), out_console)
            return
        if benchmark is None or model is None or data is None:
            _fail("give a RUN_DIR, or --benchmark, --data and --model")
        from obliviate.data.tofu import load_tofu
        from obliviate.evaluate import EvalConfig
        from obliviate.pipeline import evaluate_models

        task = load_tofu(data, split, authors)
        cfg = EvalConfig(prompt=_prompt_format(prompt_template, answer_prefix, chat))
        _check_models(model, oracle)
    except (DataError, KeyError) as e:
        _fail(str(e).strip("'\""))

    def job():
        return evaluate_models(task, model, oracle, out, cfg, command=_command_line(), log=_log)
    results = job() if out is None else _run_in_dir(out, force, False, job)
    print_table(results, out_console)


@app.command("report")
def report_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(help="one run directory, or several to compare")],
    out: Annotated[Path | None, typer.Option(help="directory for the comparison page (several runs)")] = None,
) -> None:
    """Write report.html: re-render a run directory's page, or compare runs side by side."""
    from obliviate.report.html import write_comparison, write_html_report

    try:
        if len(run_dirs) == 1 and out is None:
            path = write_html_report(run_dirs[0])
        elif out is None:
            _fail("comparing runs needs --out DIR (the comparison page is written there)")
        else:
            path = write_comparison(run_dirs, out)
    except DataError as e:
        _fail(str(e))
    out_console.print(f"wrote {path}")


class What(StrEnum):
    methods = "methods"
    metrics = "metrics"
    attacks = "attacks"
    benchmarks = "benchmarks"


@app.command("list")
def list_cmd(what: Annotated[What, typer.Argument(help="methods | metrics | attacks | benchmarks")]) -> None:
    """What is registered, one name a line with a one-line description."""
    if what is What.methods:
        from obliviate.methods import available, controls

        entries = {name: m.description for name, m in available().items()}
        entries |= {name: f"[control, not a method] {m.description}" for name, m in controls().items()}
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


if __name__ == "__main__":  # `python -m obliviate.cli`, and `accelerate launch -m obliviate.cli ...`
    main()
