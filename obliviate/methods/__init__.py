"""Unlearning methods, one file each, registered by name.

A method is a function `loss(model, forget, retain, ctx) -> Tensor` plus a dataclass of its
hyper-parameters with the published defaults. Adding a file here that calls `@register`
adds the method everywhere (CLI, demo, tests parametrised over the registry).

Methods that are more than a loss declare optional hooks, all called by the one loop:
- `setup(model, task, ctx)`: once, before training (choose trainable parameters, compute a
  saliency mask, attach adapters); state goes in `ctx.state`;
- `backward(model, forget, retain, ctx, accelerator) -> Tensor`: replaces `loss` + backward
  for methods that combine several gradients (it leaves `.grad` set and returns the loss);
- `after_step(model, ctx)`: after every optimizer step (e.g. restore frozen rows exactly);
- `finalize(model, ctx)`: once, after training (merge adapters, drop hooks);
- `check_task(task)`: the data has what the method needs (a field), else a one-line
  `DataError`; `check_task` below runs it before any model is loaded.
`trains=False` marks a method that does all its work in `setup` (no optimizer steps).

`group="control"` registers a planted positive control for the audit (e.g. `hide_q4`, which
hides knowledge from 4-bit rounding on purpose): `get_method` finds it, but `available()`
lists only real methods unless asked for controls, so no default list, comparison page or
registry-wide method test picks a control up as a method.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, get_type_hints


@dataclass(frozen=True)
class Method:
    name: str
    loss: Callable[..., Any]
    params: type
    description: str
    # What the loop must prepare for this method:
    ref_logp: bool = False  # cached reference log-probs of the forget set
    ref_model: bool = False  # a frozen reference copy (KL on retain batches)
    refusals: bool = False  # forget batches carry a refusal answer ("I don't know")
    uses_retain: bool = True
    setup: Callable[..., Any] | None = None
    backward: Callable[..., Any] | None = None
    after_step: Callable[..., Any] | None = None
    finalize: Callable[..., Any] | None = None
    check_task: Callable[..., None] | None = None
    trains: bool = True
    group: str = "method"  # "method" | "control" (a planted positive control for the audit)
    # Batches the loss forwards once each with the trained model through `forward_logits`, among
    # "forget", "refusal" (forget["refusal"]) and "retain": the loop runs them as one forward pass.
    joint: tuple[str, ...] = ()


_REGISTRY: dict[str, Method] = {}


def register(name: str, params: type, description: str, **needs: Any) -> Callable:
    """`@register("npo", NPOParams, "...", ref_logp=True)` on the method's loss function;
    `needs` are the Method flags and hooks above."""
    def wrap(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = Method(name, fn, params, description, **needs)
        return fn

    return wrap


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def available(controls: bool = False) -> dict[str, Method]:
    """The registered unlearning methods by name; with `controls`, the planted controls too."""
    _load_all()
    return dict(sorted((n, m) for n, m in _REGISTRY.items() if controls or m.group == "method"))


def controls() -> dict[str, Method]:
    """The planted positive controls (group "control") by name."""
    _load_all()
    return dict(sorted((n, m) for n, m in _REGISTRY.items() if m.group == "control"))


def get_method(name: str) -> Method:
    methods = available(controls=True)
    if name not in methods:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(methods)}")
    return methods[name]


def check_task(method: Method, task) -> None:
    """A one-line `DataError` when `task` lacks what `method` needs; call it before loading a model."""
    if method.check_task is not None:
        method.check_task(task)


def make_params(method: Method, overrides: dict[str, Any] | None = None):
    """The method's hyper-parameters with `overrides`; an unknown key names the valid ones, and a
    value of the wrong type (`beta=abc` for a float) is a `DataError` naming the parameter.
    Values are checked against the dataclass's annotations (pydantic's lax mode: 1 is a valid
    float, "abc" is not)."""
    from pydantic import TypeAdapter, ValidationError

    from obliviate.data.task import DataError

    overrides = dict(overrides or {})
    valid = {f.name for f in fields(method.params)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise KeyError(f"method {method.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                       f"valid: {', '.join(sorted(valid)) or '(none)'}")
    hints = get_type_hints(method.params)
    for key, value in overrides.items():
        try:
            overrides[key] = TypeAdapter(hints[key]).validate_python(value)
        except ValidationError as e:
            raise DataError(f"method {method.name!r}: parameter {key}={value!r}: {e.errors()[0]['msg']} "
                            f"(expected {_type_name(hints[key])})") from None
    return method.params(**overrides)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
