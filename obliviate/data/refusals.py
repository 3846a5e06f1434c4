"""TOFU's 100 refusal strings ("I don't know" answers) for IdkDPO / IdkNLL.

Shipped in obliviate/data/resources/idontknow.jsonl (TOFU, MIT licence: LICENSE_locuslab_tofu_MIT
beside it). Despite the suffix the file is plain text, one refusal a line.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def refusals() -> tuple[str, ...]:
    text = resources.files("obliviate.data").joinpath("resources/idontknow.jsonl").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())
