"""The data model every benchmark is read into (SPEC section 1).

A `ForgetTask` is what the unlearning loop, the evaluator and the audit consume: training
items (`forget`, `retain`) and evaluation probes (`forget_eval`, `retain_eval`, `holdout`,
`utility`). Items are plain frozen dataclasses so that a task hashes and serialises simply.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field


class DataError(ValueError):
    """Bad user input: the message names the file, line and field at fault."""


@dataclass(frozen=True)
class QAItem:
    """One question/answer item, or one raw text when `question` is None.

    `keyword` is the short fact inside the answer ("Tarnow" in "She was born in Tarnow.");
    when given, answer accuracy means "the generation contains the keyword".
    `subject` names who or what the item is about (a person, an author): recovery attacks
    split facts by subject so that held-out facts cannot be guessed from trained ones.
    """

    question: str | None
    answer: str
    paraphrased_question: str | None = None
    paraphrased_answer: str | None = None
    perturbed_answers: tuple[str, ...] = ()
    keyword: str | None = None
    subject: str | None = None

    @property
    def is_text(self) -> bool:
        return self.question is None


@dataclass
class ForgetTask:
    """Forget/retain training data plus every evaluation probe (SPEC section 1)."""

    name: str
    forget: list[QAItem]
    retain: list[QAItem]
    forget_eval: list[QAItem]
    retain_eval: list[QAItem]
    holdout: list[QAItem] = field(default_factory=list)
    utility: dict[str, list[QAItem]] = field(default_factory=dict)
    # Extra items the target model was trained on besides forget + retain (world facts).
    extra_train: list[QAItem] = field(default_factory=list)

    def validate(self) -> None:
        if not self.forget:
            raise DataError(f"task {self.name!r}: the forget set is empty")
        if not self.retain:
            raise DataError(f"task {self.name!r}: the retain set is empty")
        retain_keys = {(it.question, it.answer) for it in self.retain}
        for i, it in enumerate(self.forget):
            if (it.question, it.answer) in retain_keys:
                q = it.question if it.question is not None else it.answer[:60]
                raise DataError(f"task {self.name!r}: forget item {i} is also in the retain set: {q!r}")

    def fingerprint(self) -> str:
        """A stable hash of the whole task: caches keyed by it never go stale silently."""
        h = hashlib.sha256()
        for part in (self.forget, self.retain, self.forget_eval, self.retain_eval, self.holdout,
                     self.extra_train):
            h.update(json.dumps([asdict(it) for it in part], sort_keys=True).encode())
        for name in sorted(self.utility):
            h.update(name.encode())
            h.update(json.dumps([asdict(it) for it in self.utility[name]], sort_keys=True).encode())
        return h.hexdigest()[:16]

    def eval_sets(self) -> dict[str, list[QAItem]]:
        sets = {"forget": self.forget_eval, "retain": self.retain_eval}
        if self.holdout:
            sets["holdout"] = self.holdout
        for name, items in self.utility.items():
            sets[f"utility_{name}"] = items
        return sets
