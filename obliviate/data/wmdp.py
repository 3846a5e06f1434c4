"""WMDP multiple-choice questions (Li et al. 2024, "The WMDP Benchmark"), original March-2024 release.

Files: `wmdp-{bio,chem,cyber}.json`, each a JSON list of `{question, choices[4], answer (0-3)}`
(1520 / 412 / 2225 questions). Read with `obliviate.data.jsonl.read_records`, so every error is a
`DataError` naming the file, the line the record starts on and the field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from obliviate.data.jsonl import _kind, read_records
from obliviate.data.task import DataError

N_CHOICES = 4
SPLITS = ("bio", "chem", "cyber")
# The subject named in lm-eval-harness's WMDP task descriptions ("... questions (with answers) about {subject}.").
SUBJECTS = {"bio": "biology", "chem": "chemistry", "cyber": "computer security"}


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice question: `answer` is the index of the right choice."""

    question: str
    choices: tuple[str, ...]
    answer: int


def _item(path: Path, lineno: int, rec: dict) -> MCItem:
    where = f"{path}:{lineno}"
    for name in ("question", "choices", "answer"):
        if name not in rec:
            raise DataError(f'{where}: field "{name}" is missing')
    q = rec["question"]
    if not isinstance(q, str):
        raise DataError(f'{where}: field "question" must be a string, got a JSON {_kind(q)}')
    if not q.strip():
        raise DataError(f'{where}: field "question" is empty')
    choices = rec["choices"]
    if not isinstance(choices, list) or len(choices) != N_CHOICES:
        got = f"{len(choices)} items" if isinstance(choices, list) else f"a JSON {_kind(choices)}"
        raise DataError(f'{where}: field "choices" must be a list of {N_CHOICES} strings, got {got}')
    for i, c in enumerate(choices):
        if not isinstance(c, str):
            raise DataError(f'{where}: field "choices" item {i} must be a string, got a JSON {_kind(c)}')
    ans = rec["answer"]
    # bool is an int subclass: reject it explicitly.
    if not isinstance(ans, int) or isinstance(ans, bool) or not 0 <= ans < N_CHOICES:
        raise DataError(f'{where}: field "answer" must be an integer in 0..{N_CHOICES - 1}, got {ans!r}')
    return MCItem(question=q, choices=tuple(choices), answer=ans)


def load_wmdp(path: Path, limit: int | None = None) -> list[MCItem]:
    """Every question of one WMDP file (the first `limit` when given); every record is validated."""
    path = Path(path)
    items = [_item(path, lineno, rec) for lineno, rec in read_records(path)]
    return items if limit is None else items[:limit]


def load_wmdp_dir(directory: Path, limit: int | None = None) -> dict[str, list[MCItem]]:
    """`{"bio": [...], "chem": [...], "cyber": [...]}` from `wmdp-{bio,chem,cyber}.json` in `directory`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory (expected wmdp-bio.json, wmdp-chem.json, wmdp-cyber.json)")
    return {s: load_wmdp(directory / f"wmdp-{s}.json", limit) for s in SPLITS}
