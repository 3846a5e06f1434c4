"""Recovery attacks (quantization, relearning, in-context, paraphrase, noise): model -> attacked
model, registered by name like methods. The audit loops over this registry."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Attack:
    name: str
    run: Callable[..., Any]
    description: str


_REGISTRY: dict[str, Attack] = {}


def register(name: str, description: str) -> Callable:
    def wrap(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"attack {name!r} registered twice")
        _REGISTRY[name] = Attack(name, fn, description)
        return fn

    return wrap


def available() -> dict[str, Attack]:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    return dict(sorted(_REGISTRY.items()))
