"""The TOFU benchmark (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs").

Reads the files of the published Hugging Face `locuslab/TOFU` dataset, as they are laid out
there (JSON Lines despite the `.json` suffix):

    full.json                          4000 {question, answer}: 200 fictitious authors x 20 QA
    forget01|05|10.json                the tail of full.json (2 / 10 / 20 authors)
    retain99|95|90.json                the head of full.json (the other authors)
    forget01|05|10_perturbed.json      the forget items + paraphrased_question,
                                       paraphrased_answer, perturbed_answer (5 wrong answers)
    retain_perturbed.json              the same for the first 400 rows of full.json (20 authors)
    holdout01|05|10.json               other fictitious authors, never trained on (for MIA)
    real_authors_perturbed.json        {question, answer, perturbed_answer}: real-world facts
    world_facts_perturbed.json         idem

Licence: the TOFU data is released by locuslab under the MIT licence (Copyright (c) 2024
locuslab). obliviate ships an unmodified copy of the files above in
obliviate/data/resources/tofu/ with that licence (LICENSE_locuslab_tofu_MIT), so TOFU runs
offline with no download; `data_dir` points elsewhere (another copy, a newer release).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from obliviate.data.jsonl import read_records
from obliviate.data.task import DataError, ForgetTask, QAItem


def packaged_tofu_dir() -> Path:
    """The copy of the TOFU files shipped with obliviate (MIT, licence file alongside)."""
    return Path(str(resources.files("obliviate.data").joinpath("resources/tofu")))


# forget split -> (the matching retain split, the matching holdout split)
TOFU_SPLITS: dict[str, tuple[str, str]] = {
    "forget01": ("retain99", "holdout01"),
    "forget05": ("retain95", "holdout05"),
    "forget10": ("retain90", "holdout10"),
}
# The share of authors each forget split holds, in percent.
TOFU_FORGET_PERCENT = {"forget01": 1, "forget05": 5, "forget10": 10}
QA_PER_AUTHOR = 20

_LAYOUT = ("the Hugging Face locuslab/TOFU layout: full.json, forget01|05|10.json, "
           "retain99|95|90.json, forget01|05|10_perturbed.json, retain_perturbed.json, "
           "holdout01|05|10.json, real_authors_perturbed.json, world_facts_perturbed.json")


def _records(data_dir: Path, stem: str) -> list[tuple[int, dict]]:
    path = Path(data_dir) / f"{stem}.json"
    if not path.is_file():
        raise DataError(f"{path}: no such file (TOFU data directory {data_dir} should hold {_LAYOUT})")
    return read_records(path)


def _field(path: Path, lineno: int, rec: dict, name: str) -> str:
    value = rec.get(name)
    if value is None:
        raise DataError(f'{path}:{lineno}: field "{name}" is missing')
    if not isinstance(value, str) or not value.strip():
        raise DataError(f'{path}:{lineno}: field "{name}" must be a non-empty string')
    return value


def _perturbed(path: Path, lineno: int, rec: dict) -> tuple[str, ...]:
    value = rec.get("perturbed_answer")
    if value is None:
        raise DataError(f'{path}:{lineno}: field "perturbed_answer" is missing')
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v.strip() for v in value)):
        raise DataError(f'{path}:{lineno}: field "perturbed_answer" must be a non-empty list of strings')
    return tuple(value)


def _read(data_dir: Path, stem: str, *, perturbed: bool = False, paraphrased: bool = False,
          subjects: dict[tuple[str, str], str] | None = None, subject_prefix: str | None = None) -> list[QAItem]:
    """Items of one TOFU file; `subjects` maps (question, answer) to the author found in full.json."""
    path = Path(data_dir) / f"{stem}.json"
    items = []
    for i, (lineno, rec) in enumerate(_records(data_dir, stem)):
        question = _field(path, lineno, rec, "question")
        answer = _field(path, lineno, rec, "answer")
        extra: dict = {}
        if perturbed:
            extra["perturbed_answers"] = _perturbed(path, lineno, rec)
        if paraphrased:
            extra["paraphrased_question"] = _field(path, lineno, rec, "paraphrased_question")
            extra["paraphrased_answer"] = _field(path, lineno, rec, "paraphrased_answer")
        if subjects is not None:
            subject = subjects.get((question, answer))
            if subject is None:
                raise DataError(f"{path}:{lineno}: this question/answer is not in full.json, so its author is "
                                f"unknown (question: {question[:80]!r})")
            extra["subject"] = subject
        elif subject_prefix is not None:
            extra["subject"] = f"{subject_prefix}{i // QA_PER_AUTHOR}"
        items.append(QAItem(question=question, answer=answer, **extra))
    return items


def tofu_full(data_dir: Path | None = None) -> list[QAItem]:
    """All of full.json (4000 items), `subject` = "author_{k}" for the k-th block of 20 rows."""
    data_dir = packaged_tofu_dir() if data_dir is None else data_dir
    items = _read(data_dir, "full", subject_prefix="author_")
    if len(items) % QA_PER_AUTHOR:
        raise DataError(f"{Path(data_dir) / 'full.json'}: {len(items)} rows, not a whole number of authors "
                        f"({QA_PER_AUTHOR} QA each); is the file truncated?")
    return items


def tofu_corpus(data_dir: Path | None = None) -> list[str]:
    """Every text of the TOFU files the loader reads (questions, answers, paraphrases, perturbed
    answers, holdout and utility sets), in a fixed order: what a TOFU tokenizer is trained on, so
    that every evaluated text tokenises well. Training a tokenizer on text is not training the
    model on it: the models only ever see their own training items."""
    stems = ["full", "holdout10", "forget10_perturbed", "retain_perturbed", "real_authors_perturbed",
             "world_facts_perturbed"]
    texts: list[str] = []
    data_dir = packaged_tofu_dir() if data_dir is None else data_dir
    for stem in stems:
        for _, rec in _records(Path(data_dir), stem):
            for key in ("question", "answer", "paraphrased_question", "paraphrased_answer"):
                if isinstance(rec.get(key), str):
                    texts.append(rec[key])
            pert = rec.get("perturbed_answer")
            if isinstance(pert, list):
                texts += [p for p in pert if isinstance(p, str)]
    return texts


def _authors_in_order(items: list[QAItem]) -> list[str]:
    return list(dict.fromkeys(it.subject for it in items))


def load_tofu(data_dir: Path | None = None, split: str = "forget10", authors: int | None = None) -> ForgetTask:
    """The TOFU task for one forget split (forget01, forget05 or forget10).

    - `forget` / `retain`: `{split}.json` / the matching `retain{99,95,90}.json`;
    - `forget_eval`: `{split}_perturbed.json` (paraphrased question and answer, 5 perturbed answers);
    - `retain_eval`: `retain_perturbed.json` (the first 20 authors, all inside every retain split);
    - `holdout`: `holdout{01,05,10}.json` (other fictitious authors, subject "holdout_author_{k}");
    - `utility`: {"real_authors", "world_facts"} from the `*_perturbed.json` files: each item has its
      answer and 3 perturbed answers and no paraphrased answer (the truth ratio there compares
      against the answer itself).
    Every forget/retain/eval item has `subject` = "author_{k}", k = its row in full.json // 20;
    an item that is not in full.json raises `DataError`.

    `authors=N` gives a reduced TOFU for fast runs: the retain set keeps the first N retain
    authors (20 QA each), the forget set the first ceil(N * p / 100) authors of the split, where
    p = 1, 5 or 10 is the split's percentage (never more than the split has), `forget_eval` and
    `retain_eval` keep the items of the kept authors, and `holdout` its first len(forget) items.
    E.g. forget10 with authors=20: 2 forget authors (40 items), 20 retain authors (400 items),
    retain_eval 400, holdout 40. The utility sets are kept whole.
    """
    if split not in TOFU_SPLITS:
        raise DataError(f"unknown TOFU split {split!r}; valid splits: {', '.join(TOFU_SPLITS)}")
    if authors is not None and (isinstance(authors, bool) or not isinstance(authors, int) or authors < 1):
        raise DataError(f"TOFU authors={authors!r}: must be a positive number of retain authors")
    data_dir = packaged_tofu_dir() if data_dir is None else Path(data_dir)
    retain_split, holdout_split = TOFU_SPLITS[split]

    full = tofu_full(data_dir)
    subjects = {(it.question, it.answer): it.subject for it in full}
    forget = _read(data_dir, split, subjects=subjects)
    retain = _read(data_dir, retain_split, subjects=subjects)
    forget_eval = _read(data_dir, f"{split}_perturbed", perturbed=True, paraphrased=True, subjects=subjects)
    retain_eval = _read(data_dir, "retain_perturbed", perturbed=True, paraphrased=True, subjects=subjects)
    holdout = _read(data_dir, holdout_split, subject_prefix="holdout_author_")
    utility = {name: _read(data_dir, f"{name}_perturbed", perturbed=True)
               for name in ("real_authors", "world_facts")}

    name = f"tofu_{split}"
    if authors is not None:
        keep_retain = set(_authors_in_order(retain)[:authors])
        n_forget = -(-authors * TOFU_FORGET_PERCENT[split] // 100)  # ceil, in integers
        keep_forget = set(_authors_in_order(forget)[:n_forget])
        forget = [it for it in forget if it.subject in keep_forget]
        forget_eval = [it for it in forget_eval if it.subject in keep_forget]
        retain = [it for it in retain if it.subject in keep_retain]
        retain_eval = [it for it in retain_eval if it.subject in keep_retain]
        holdout = holdout[:len(forget)]
        name = f"{name}_a{authors}"

    task = ForgetTask(name=name, forget=forget, retain=retain, forget_eval=forget_eval,
                      retain_eval=retain_eval, holdout=holdout, utility=utility)
    task.validate()
    return task
