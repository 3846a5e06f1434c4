"""RWKU (Jin et al. 2024, "RWKU: Benchmarking Real-World Knowledge Unlearning for Large Language
Models"): 200 famous people as unlearning targets, probed at three levels.

Probe sets, all keyed by `subject` (the unlearning target), as published in the Hugging Face
`jinzhuoran/RWKU` dataset (field names checked against the authors' `data_process.py` and
`eval_forget.py`):

    forget_level1      {query, answer}: fill-in-the-blank (the query holds "___")
    forget_level2      {query, answer}: simple questions
    forget_level3      {query, answer, type}: adversarial questions, `type` one of prefix injection,
                       affirmative suffix, role playing, multiple choice, reverse query, synonym
                       manipulation, background hint, in-context learning ("incontext learning" in
                       the released files), cross lingual
    neighbor_level1/2  {query, answer} (+ optional `neighbor`, the related entity asked about): the
                       same two styles about people and things close to the target (locality)
    forget_mia         {text}: text about the target (members, for membership inference)
    retain_mia         {text}: text the MIA compares against (non-members)
    passage            {text}: the forget corpus to unlearn on (RWKU's `train_original_passage`)

Accepted layouts, under one directory (`.jsonl` JSON Lines or `.json`, JSON Lines or a JSON array):
- flat files `forget_level1.jsonl`, ... where every record carries `subject` (RWKU's `All/`);
- one subdirectory per subject holding `forget_level1.json`, ... (RWKU's `Target/`, e.g.
  `1_Stephen_King/`); a record without `subject` belongs to the directory's subject: the
  name with a leading `N_` index dropped and `_` read as a space;
- one file prefix per subject, `Stephen_King_forget_level1.jsonl` (separator `_`, `.` or `-`),
  with the same rule.
A record's own `subject` always wins. Other files (RWKU's intro, pair, negative, ...) are
ignored; an empty file or `[]` is a set without probes.

Given the subjects to load, only their own files are read (and validated), plus the other
subjects' passages (the retain corpus): a flaw in a probe file of a subject the run does not use
cannot stop it. A record that is well-formed but off-pattern is read as the closest kind with a
warning (collected in `warnings`, counted in the run's report): a fill-in-the-blank probe
without "___" (one of the published level-1 probes of Prince Harry has none) becomes a question,
as RWKU's own evaluation scores it. `strict=True` makes it an error. Malformed JSON and missing
or mistyped fields are always errors.

How records map onto `QAItem` (as `RWKUProbe`, a `QAItem` subclass, so every consumer of
`QAItem` takes them unchanged): `question` = the query exactly as in the file (a level-1 query
keeps its "___"), `answer` = the answer, `keyword` = the answer too (RWKU answers already are the
short fact, so accuracy means "the answer occurs as whole words in the generation"), `subject` =
the target person, also for neighbour probes (recovery attacks split facts by subject);
`probe_type` = the level-3 attack type (None elsewhere) and `neighbor` = the neighbour entity
when the file names it. Text records become `QAItem(question=None, answer=text, subject=...)`.
An integer answer (a year) is read as its decimal string.

Licence: RWKU is released by its authors under CC-BY-4.0; this module only reads the files.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from obliviate.data.jsonl import _kind, read_records
from obliviate.data.task import DataError, ForgetTask, QAItem

# Generation probes, in RWKU's order, then the text sets.
PROBE_SETS = ("forget_level1", "forget_level2", "forget_level3", "neighbor_level1", "neighbor_level2")
MIA_SETS = ("forget_mia", "retain_mia")
TEXT_SETS = (*MIA_SETS, "passage")
ALL_SETS = (*PROBE_SETS, *TEXT_SETS)
# Fill-in-the-blank sets: the query must hold the blank.
CLOZE_SETS = ("forget_level1", "neighbor_level1")
BLANK = "___"
# The nine adversarial attack types of the paper (Table 1); any non-empty `type` is accepted.
LEVEL3_TYPES = ("prefix injection", "affirmative suffix", "role playing", "multiple choice", "reverse query",
                "synonym manipulation", "background hint", "in-context learning", "cross lingual")
# How many retain items `load_rwku` keeps as the retain evaluation set when it falls back to passages.
RETAIN_EVAL_MAX = 200

_SUFFIXES = (".jsonl", ".json")
_SEPARATORS = "_.-"
_LAYOUT = ("flat files forget_level1.jsonl, forget_level2.jsonl, ... (records with \"subject\"), one "
           "subdirectory per subject holding those files, or files named SUBJECT_forget_level1.jsonl")


@dataclass(frozen=True)
class RWKUProbe(QAItem):
    """A RWKU probe: a `QAItem` plus the level-3 attack `probe_type` and the `neighbor` entity."""

    probe_type: str | None = None
    neighbor: str | None = None


def subject_from_name(name: str) -> str:
    """The subject a directory or file prefix names: "10_Prince_Harry,_Duke_of_Sussex" ->
    "Prince Harry, Duke of Sussex" (RWKU's `Target/` directories are `{index}_{name}`)."""
    return " ".join(re.sub(r"^\d+_", "", name).replace("_", " ").split())


def _subject_key(name: str) -> str:
    """What subject selection compares: case, underscores and spacing do not matter."""
    return " ".join(name.replace("_", " ").split()).casefold()


def _set_of_stem(stem: str) -> tuple[str, str | None] | None:
    """(set name, subject prefix or None) for a file stem, or None when it is no RWKU set."""
    for name in sorted(ALL_SETS, key=len, reverse=True):
        if stem == name:
            return name, None
        if stem.endswith(name) and len(stem) > len(name) + 1 and stem[-len(name) - 1] in _SEPARATORS:
            return name, stem[: -len(name) - 1]
    return None


def _files(data_dir: Path) -> list[tuple[str, Path, str | None]]:
    """Every RWKU file under `data_dir`: (set name, path, subject implied by its place or None)."""
    found: dict[tuple[str, Path, str | None], Path] = {}

    def add(name: str, path: Path, implied: str | None) -> None:
        key = (name, path.parent, implied)
        if key in found:
            raise DataError(f"{found[key]} and {path}: two files for the same RWKU set; keep one")
        found[key] = path

    for path in sorted(data_dir.iterdir()):
        if path.name.startswith("."):
            continue  # .ipynb_checkpoints and the like hold stale copies
        if path.is_file() and path.suffix.lower() in _SUFFIXES:
            match = _set_of_stem(path.stem)
            if match is not None:
                name, prefix = match
                add(name, path, subject_from_name(prefix) if prefix is not None else None)
        elif path.is_dir():
            for sub in sorted(path.iterdir()):
                if sub.is_file() and sub.suffix.lower() in _SUFFIXES and sub.stem in ALL_SETS:
                    add(sub.stem, sub, subject_from_name(path.name))
    return [(name, path, implied) for (name, _, implied), path in found.items()]


def _records(path: Path) -> list[tuple[int, dict]]:
    # RWKU's per-subject files are `json.dump(list)`: a subject without probes of a kind is "[]",
    # which `read_records` (rightly, for user data) calls an empty file.
    if path.stat().st_size < 64 and re.sub(r"\s", "", path.read_text(encoding="utf-8-sig")) in ("", "[]"):
        return []
    return read_records(path)


def _string(path: Path, lineno: int, rec: dict, name: str, *, required: bool = True,
            number_ok: bool = False) -> str | None:
    value = rec.get(name)
    if value is None:
        if not required:
            return None
        what = "is null" if name in rec else "is missing"
        raise DataError(f'{path}:{lineno}: field "{name}" {what}')
    if number_ok and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise DataError(f'{path}:{lineno}: field "{name}" must be a string, got a JSON {_kind(value)}')
    if not value.strip():
        raise DataError(f'{path}:{lineno}: field "{name}" is empty')
    return value


def _item(name: str, path: Path, lineno: int, rec: dict, implied: str | None, strict: bool = True,
          warnings: list[str] | None = None) -> QAItem:
    subject = _string(path, lineno, rec, "subject", required=implied is None) or implied
    if name in TEXT_SETS:
        return QAItem(question=None, answer=_string(path, lineno, rec, "text"), subject=subject)
    query = _string(path, lineno, rec, "query")
    answer = _string(path, lineno, rec, "answer", number_ok=True)
    if name in CLOZE_SETS and BLANK not in query:
        message = (f'{path}:{lineno}: field "query" has no blank "{BLANK}" (a {name} probe is '
                   f"fill-in-the-blank): {query[:80]!r}")
        if strict:
            raise DataError(message)
        if warnings is not None:  # asked as a question (`rwku_user_prompt` sees no blank)
            warnings.append(message + "; asked as a question")
    probe_type = _string(path, lineno, rec, "type") if name == "forget_level3" else None
    neighbor = _string(path, lineno, rec, "neighbor", required=False) if name.startswith("neighbor") else None
    return RWKUProbe(question=query, answer=answer, keyword=answer, subject=subject,
                     probe_type=probe_type.strip() if probe_type else None, neighbor=neighbor)


def read_rwku(data_dir: Path, subjects: str | list[str] | None = None, strict: bool = True,
              warnings: list[str] | None = None) -> dict[str, list[QAItem]]:
    """The records of the RWKU sets under `data_dir`, validated (see the module doc): every
    subject's, or with `subjects` only the files of those subjects (by folder or file prefix) plus
    every passage file and the flat files. `strict=False`: off-pattern records are read as the
    closest kind with a line in `warnings`.

    Raises `DataError` naming the file, line and field at fault, or the directory when it holds
    no RWKU file at all.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such directory (RWKU data: {_LAYOUT})")
    sets: dict[str, list[QAItem]] = {name: [] for name in ALL_SETS}
    files = _files(data_dir)
    if not files:
        raise DataError(f"{data_dir}: no RWKU files found (expected {_LAYOUT})")
    wanted = None if subjects is None else {_subject_key(str(s)) for s in
                                            ([subjects] if isinstance(subjects, str) else subjects)}
    for name, path, implied in files:
        if wanted is not None and implied is not None and name != "passage" and _subject_key(implied) not in wanted:
            continue
        sets[name] += [_item(name, path, lineno, rec, implied, strict, warnings) for lineno, rec in _records(path)]
    return sets


def rwku_subjects(data_dir: Path) -> list[str]:
    """Every subject named anywhere under `data_dir`, in first-seen order (probe sets first)."""
    return _subjects(read_rwku(data_dir))


def _subjects(sets: dict[str, list[QAItem]]) -> list[str]:
    return list(dict.fromkeys(it.subject for name in ALL_SETS for it in sets[name]))


def _resolve(sets: dict[str, list[QAItem]], subjects: str | list[str], data_dir: Path) -> list[str]:
    """The requested subjects as spelled in the data; unknown ones raise `DataError`."""
    wanted = [subjects] if isinstance(subjects, str) else list(subjects)
    if not wanted:
        raise DataError("RWKU: no subject selected (subjects=[...] names the unlearning targets)")
    available = _subjects(sets)
    by_key = {_subject_key(s): s for s in available}
    chosen = []
    for s in wanted:
        if not isinstance(s, str) or _subject_key(s) not in by_key:
            close = difflib.get_close_matches(_subject_key(str(s)), list(by_key), n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(repr(by_key[c]) for c in close)}?)" if close else ""
            shown = ", ".join(repr(a) for a in available[:5])
            more = f", ... ({len(available)} in all)" if len(available) > 5 else ""
            raise DataError(f"unknown RWKU subject {s!r} in {data_dir}{hint}; available: {shown}{more}")
        if by_key[_subject_key(s)] not in chosen:
            chosen.append(by_key[_subject_key(s)])
    return chosen


def load_rwku_probes(data_dir: Path, subjects: str | list[str], strict: bool = True,
                     warnings: list[str] | None = None) -> dict[str, list[QAItem]]:
    """The probes of the selected subjects, one list per set: the five generation sets
    (`PROBE_SETS`, items are `RWKUProbe`s with `probe_type` kept on level 3) and the two MIA text
    sets (`forget_mia`, `retain_mia`). A set the data lacks is an empty list.
    """
    sets = read_rwku(data_dir, subjects, strict, warnings)
    chosen = set(_resolve(sets, subjects, Path(data_dir)))
    return {name: [it for it in sets[name] if it.subject in chosen] for name in (*PROBE_SETS, *MIA_SETS)}


def _task_name(subjects: list[str]) -> str:
    slugs = [re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_") for s in subjects]
    return "rwku_" + "+".join(slugs) if len(slugs) <= 3 else f"rwku_{len(slugs)}_subjects"


def load_rwku(data_dir: Path, subjects: str | list[str], max_retain: int | None = None, strict: bool = True,
              warnings: list[str] | None = None) -> ForgetTask:
    """The RWKU unlearning task for one or several target subjects.

    - `forget`: the `passage` texts of the selected subjects (text items);
    - `retain`: the passages of every other subject when the data has any (the first
      `max_retain` when given), else the selected subjects' neighbour probes (levels 1 and 2)
      as question/answer items — then the neighbour scores are measured on trained items;
    - `forget_eval`: the selected subjects' `forget_level2` questions;
    - `retain_eval`: their `neighbor_level2` questions (else `neighbor_level1`, else the first
      `RETAIN_EVAL_MAX` retain items);
    - `utility`: {"neighbor_level1": ...} when level 2 is the retain evaluation set.
    Levels 1 and 3 of the forget probes are *not* utility sets: `evaluate` folds every utility
    set into `model_utility` (higher is better), which forget probes must never raise. They
    (and the MIA sets) are read by `load_rwku_probes` and scored by
    `obliviate.metrics.rwku.evaluate_rwku`. No holdout: RWKU's MIA compares the forget_mia and
    retain_mia texts, not the forget questions.
    Raises `DataError` for bad files, an unknown subject, or a subject without passages or
    level-2 probes.
    """
    data_dir = Path(data_dir)
    sets = read_rwku(data_dir, subjects, strict, warnings)
    chosen = _resolve(sets, subjects, data_dir)
    mine = {name: [it for it in sets[name] if it.subject in chosen] for name in ALL_SETS}
    for name in ("passage", "forget_level2"):
        missing = [s for s in chosen if not any(it.subject == s for it in mine[name])]
        if missing:
            raise DataError(f"{data_dir}: no {name} records for RWKU subject(s) {', '.join(map(repr, missing))} "
                            f"(the forget {'corpus' if name == 'passage' else 'evaluation set'} is built from them)")
    retain = [it for it in sets["passage"] if it.subject not in chosen]
    if max_retain is not None:
        retain = retain[:max_retain]
    if not retain:
        retain = mine["neighbor_level1"] + mine["neighbor_level2"]
    utility: dict[str, list[QAItem]] = {}
    if mine["neighbor_level2"]:
        retain_eval = mine["neighbor_level2"]
        if mine["neighbor_level1"]:
            utility["neighbor_level1"] = mine["neighbor_level1"]
    else:
        retain_eval = mine["neighbor_level1"] or retain[:RETAIN_EVAL_MAX]
    task = ForgetTask(name=_task_name(chosen), forget=mine["passage"], retain=retain,
                      forget_eval=mine["forget_level2"], retain_eval=retain_eval, utility=utility)
    task.validate()
    return task
