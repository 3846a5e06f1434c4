"""Recovery attacks: does the forgotten knowledge come back? (SPEC section 4)

An attack is a function `attack(model, ctx) -> Attacked`, registered by name like methods:
weight attacks (quantization, noise, relearning) return a modified *copy* of the model; probe
attacks (in-context, paraphrase) return the model unchanged with other prompts. The audit
(`obliviate/audit.py`) is a loop over this registry: it measures forget/retain accuracy of
every attacked model on `Attacked.forget_items` with `Attacked.forget_prompts`, for the
unlearned model and, as controls, for the target and the oracle.

An attack that cannot run here (a library missing, a kernel that needs a GPU) raises
`AttackUnavailable` with the reason; the audit records it instead of failing.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obliviate.data.collate import DEFAULT_PROMPT, PromptFormat
from obliviate.data.task import DataError, ForgetTask, QAItem


class AttackUnavailable(RuntimeError):
    """The attack cannot run in this environment; the message says why and what to install."""


@dataclass
class AttackContext:
    """What an attack may use besides the model it attacks."""

    tokenizer: Any
    task: ForgetTask
    seed: int = 0
    model_dir: Path | None = None  # where the attacked model lives on disk (for libraries that load from disk)
    params: dict[str, Any] = field(default_factory=dict)  # per-attack options, e.g. {"include_lm_head": True}
    prompt: PromptFormat = DEFAULT_PROMPT  # the run's prompt format: probes, calibration and relearning use it
    # the audit's per-item knowledge measure K (EvalConfig.knowledge): attacks that choose among
    # variants (rtt's lr sweep) choose by the measure the audit will score them with
    knowledge: str = "acc"
    # The benchmark's relearning split (forget_eval, seed, train_fraction) -> (items to relearn on,
    # held-out forget_eval items); None: `relearn.split_forget_by_subject`.
    rtt_split: Callable[[list[QAItem], int, float], tuple[list[QAItem], list[QAItem]]] | None = None


@dataclass
class Attacked:
    """An attack's output: the model to probe and, optionally, what to probe it with.

    `forget_items` / `retain_items`: the items whose answers are checked (default: the task's
    forget_eval / retain_eval). `forget_prompts` / `retain_prompts`: token-id prompts aligned
    with those items, replacing the run's prompt of each question (probe attacks).
    """

    model: Any
    forget_items: list[QAItem] | None = None
    forget_prompts: list[list[int]] | None = None
    retain_items: list[QAItem] | None = None
    retain_prompts: list[list[int]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def check_params(ctx: AttackContext, attack: str, valid: set[str]) -> None:
    """An unknown option is an error that names it and lists the valid ones."""
    unknown = sorted(set(ctx.params) - valid)
    if unknown:
        raise DataError(f"attack {attack!r}: unknown parameter(s) {', '.join(unknown)}; "
                        f"valid: {', '.join(sorted(valid)) or '(none)'}")


def resolve_params(cls: type, ctx: AttackContext, attack: str):
    """The dataclass `cls` of an attack's options with `ctx.params` applied (checked)."""
    from dataclasses import fields

    check_params(ctx, attack, {f.name for f in fields(cls)})
    return cls(**ctx.params)


@dataclass(frozen=True)
class Attack:
    name: str
    run: Callable[[Any, AttackContext], Attacked]
    description: str
    family: str  # quantization | noise | relearning | probe


_REGISTRY: dict[str, Attack] = {}


def register(name: str, description: str, family: str) -> Callable:
    def wrap(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"attack {name!r} registered twice")
        _REGISTRY[name] = Attack(name, fn, description, family)
        return fn

    return wrap


def available() -> dict[str, Attack]:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    return dict(sorted(_REGISTRY.items()))


FAMILIES = ("quantization", "noise", "relearning", "probe")


def default_attacks() -> list[str]:
    """Every registered attack, grouped by family (quantization first), then by name."""
    def key(a: Attack) -> tuple[int, str]:
        return (FAMILIES.index(a.family) if a.family in FAMILIES else len(FAMILIES), a.name)

    return [a.name for a in sorted(available().values(), key=key)]


def get_attack(name: str) -> Attack:
    attacks = available()
    if name not in attacks:
        raise KeyError(f"unknown attack {name!r}; available: {', '.join(attacks)}")
    return attacks[name]
