"""SemEval-2025 Task 4 data (Ramakrishna et al. 2025, "SemEval-2025 Task 4: Unlearning sensitive
content from Large Language Models"; SPEC section 3, end).

The published data set (`semeval25-unlearning-dataset-public` on the Hugging Face Hub) is read
from a local directory laid out as it was published, or converted to JSON Lines:

    [data/]forget_train-00000-of-00001.parquet     or  forget_train.jsonl
    [data/]forget_validation-00000-of-00001.parquet or forget_validation.jsonl   (optional)
    [data/]retain_train-00000-of-00001.parquet     or  retain_train.jsonl
    [data/]retain_validation-00000-of-00001.parquet or retain_validation.jsonl   (optional)
    mia_data/member.jsonl, mia_data/nonmember.jsonl                              (optional)

A split may be sharded (`forget_train-00000-of-00002.parquet`, `...-00001-of-00002.parquet`:
read in name order) or one unsharded `forget_train.parquet`; `.json` is read like `.jsonl`
(JSON Lines or a JSON array, `obliviate.data.jsonl.read_records`). Parquet needs `pyarrow`
(or `pandas` with a parquet engine); without it a `DataError` says what to install.

Every forget/retain record has
- `id` (str): a document id followed by `sc<n>` (a sentence-completion prompt: *regurgitation*)
  or `qa<n>` (a question about the document: *knowledge*), e.g. `"6a1f...e2sc1"`, `"6a1f...e2qa0"`;
- `input` (str): the prompt; `output` (str): the expected completion / answer;
- `task` (str): `Task1` (long-form synthetic creative documents), `Task2` (short synthetic
  biographies with fake PII) or `Task3` (real Wikipedia documents); `task1` / `Task 1` are read
  as `Task1`;
- `split` (optional, "forget" or "retain"): when present it must name the file's split.
MIA records (`member.jsonl`, `nonmember.jsonl`) have an `id` and either the text in `document`
(what the official evaluation script reads) or an `input`/`output` pair; `task` and `split` are
optional there.

How sentence completion and question answering are told apart: the official evaluation script
(`evaluate_generations.py`, shipped with the data) drops the id's last character and tests
whether what is left ends in "sc" (scored by ROUGE-L recall) or "qa" (scored by exact match);
any other id is scored by neither. Here the id's trailing digits (any number of them, or none)
are dropped before the same test, which agrees with the script on every published id (one
digit after sc/qa); an id that is neither is a `DataError` naming the file, line and field
rather than an item silently left out of the score.

Every error is a `DataError` naming the file, the line (for parquet: the 1-based row) and the
field at fault, e.g. `forget_train.jsonl:3: field "task" must be one of Task1, Task2, Task3`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from obliviate.data.jsonl import _kind, read_records
from obliviate.data.task import DataError, ForgetTask, QAItem

SEMEVAL_TASKS: tuple[str, ...] = ("Task1", "Task2", "Task3")
TASK_DESCRIPTIONS: dict[str, str] = {
    "Task1": "long-form synthetic creative documents",
    "Task2": "short synthetic biographies with personally identifiable information",
    "Task3": "real documents sampled from the target model's training data (Wikipedia)",
}
# The two kinds of probe: sentence completion (`...sc<n>` ids) and question answering (`...qa<n>`).
REGURGITATION = "regurgitation"
KNOWLEDGE = "knowledge"
KINDS: tuple[str, ...] = (REGURGITATION, KNOWLEDGE)
_ID_SUFFIX_KIND = {"sc": REGURGITATION, "qa": KNOWLEDGE}

SPLITS = ("forget", "retain")
FOLDS = ("train", "validation")

_LAYOUT = ("the SemEval-2025 Task 4 layout: forget_train and retain_train (required), forget_validation "
           "and retain_validation (optional), each as NAME.jsonl or NAME-00000-of-00001.parquet, in the "
           "directory or its data/ folder, and mia_data/member.jsonl + mia_data/nonmember.jsonl (optional)")
_TASK_RE = re.compile(r"task\s*_?\s*([0-9]+)", re.IGNORECASE)


def item_kind(item_id: str) -> str | None:
    """"regurgitation" for an id ending in `sc<digits>`, "knowledge" for `qa<digits>`, else None."""
    return _ID_SUFFIX_KIND.get(item_id.rstrip("0123456789")[-2:])


def document_id(item_id: str) -> str:
    """The document an item is about: the id without its `sc<n>` / `qa<n>` suffix (the id itself
    when it has none). The sentence-completion and question items of one document share it."""
    stem = item_id.rstrip("0123456789")
    if stem[-2:] in _ID_SUFFIX_KIND and len(stem) > 2:
        return stem[:-2]
    return item_id


def canonical_task(label: str) -> str | None:
    """"Task1" for "Task1", "task1", "Task 1", "task_1"; None for anything not Task1-3."""
    m = _TASK_RE.fullmatch(label.strip())
    if m is None:
        return None
    name = f"Task{int(m.group(1))}"
    return name if name in SEMEVAL_TASKS else None


@dataclass(frozen=True)
class SemEvalRecord:
    """One validated record: the `QAItem` the pipeline uses plus the labels SemEval scores by.

    `kind` is "regurgitation" or "knowledge" (None for MIA records, which are scored by loss only);
    `task` is None for an MIA record without a task; `where` is "file:line" (or "file: row N").
    """

    id: str
    task: str | None
    kind: str | None
    split: str
    item: QAItem
    where: str


@dataclass
class SemEvalTask(ForgetTask):
    """A `ForgetTask` that also keeps the SemEval labels of every item.

    `records[name]` runs parallel to the task's item list of that name ("forget", "retain",
    "forget_eval", "retain_eval", "holdout") plus "mia_member"; `mia_member` holds the MIA member
    items (the official member set; `holdout` holds the non-members). `sources[name]` says which
    files each set was read from. Every item's `subject` is "{task}/{document id}", so items of
    one document share a subject (what the recovery attacks split by) and the task is its prefix.
    """

    mia_member: list[QAItem] = field(default_factory=list)
    records: dict[str, list[SemEvalRecord]] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)

    def labels(self, name: str) -> list[tuple[str | None, str | None]]:
        """(task, kind) of every item of set `name` ("forget_eval", "retain_eval", ...), in order."""
        if name not in self.records:
            raise KeyError(f"no SemEval records for set {name!r}; sets: {', '.join(self.records)}")
        return [(r.task, r.kind) for r in self.records[name]]

    def fingerprint(self) -> str:
        """`ForgetTask.fingerprint` extended with the MIA members and every item's labels."""
        h = hashlib.sha256(super().fingerprint().encode())
        h.update(json.dumps([asdict(it) for it in self.mia_member], sort_keys=True).encode())
        for name in sorted(self.records):
            h.update(name.encode())
            h.update(json.dumps([(r.id, r.task, r.kind) for r in self.records[name]]).encode())
        return h.hexdigest()[:16]


# --- reading files -------------------------------------------------------------------------


def _parquet_rows(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    if pq is not None:
        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
            raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None
    try:
        import pandas as pd
    except ImportError:
        raise DataError(f"{path}: reading parquet files needs pyarrow (pip install pyarrow), which is not "
                        f"installed; or convert the file to JSON Lines (NAME.jsonl)") from None
    try:
        frame = pd.read_parquet(path)
    except ImportError:
        raise DataError(f"{path}: reading parquet files needs pyarrow (pip install pyarrow): pandas has no "
                        f"parquet engine here; or convert the file to JSON Lines (NAME.jsonl)") from None
    except Exception as e:
        raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {e})") from None
    rows = frame.to_dict("records")
    # pandas writes a missing value as NaN: read it as absent.
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows]


def _read_file(path: Path) -> list[tuple[str, dict]]:
    """Every record of one file as ("file:line" or "file: row N", record)."""
    if path.suffix.lower() == ".parquet":
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        rows = _parquet_rows(path)
        if not rows:
            raise DataError(f"{path}: the file is empty (no records)")
        out = []
        for n, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise DataError(f"{path}: row {n}: expected a record, got {type(row).__name__}")
            out.append((f"{path}: row {n}", row))
        return out
    return [(f"{path}:{lineno}", rec) for lineno, rec in read_records(path)]


def _find(directories: list[Path], stem: str) -> list[Path]:
    """The files of one split (`stem`): `stem.jsonl`/`stem.json`, or parquet shards, in the first
    directory that has any. Both JSON and parquet for one split is an error (which one is meant?)."""
    for d in directories:
        if not d.is_dir():
            continue
        json_files = [d / f"{stem}{s}" for s in (".jsonl", ".json") if (d / f"{stem}{s}").is_file()]
        parquet = sorted(p for p in d.glob(f"{stem}-*.parquet") if p.is_file())
        if (d / f"{stem}.parquet").is_file():
            parquet.append(d / f"{stem}.parquet")
        found = json_files + parquet
        if len(json_files) > 1 or (json_files and parquet):
            raise DataError(f"{d}: split {stem!r} is given twice ({', '.join(p.name for p in found)}); keep one")
        if found:
            return found
    return []


def _string(where: str, rec: dict, name: str, *, required: bool = True, allow_blank: bool = False) -> str | None:
    value = rec.get(name)
    if value is None:
        if required:
            what = "is null" if name in rec else "is missing"
            raise DataError(f'{where}: field "{name}" {what}')
        return None
    if not isinstance(value, str):
        kind = _kind(value) if not hasattr(value, "dtype") else type(value).__name__
        raise DataError(f'{where}: field "{name}" must be a string, got a {kind}')
    if not allow_blank and not value.strip():
        raise DataError(f'{where}: field "{name}" is empty')
    return value


def _task(where: str, rec: dict, *, required: bool) -> str | None:
    label = _string(where, rec, "task", required=required)
    if label is None:
        return None
    task = canonical_task(label)
    if task is None:
        raise DataError(f'{where}: field "task" must be one of {", ".join(SEMEVAL_TASKS)}, got {label!r}')
    return task


def _split_field(where: str, rec: dict, split: str | None) -> None:
    value = _string(where, rec, "split", required=False)
    if value is None:
        return
    if value.strip().lower() not in SPLITS:
        raise DataError(f'{where}: field "split" must be "forget" or "retain", got {value!r}')
    if split is not None and value.strip().lower() != split:
        raise DataError(f'{where}: field "split" is {value!r} in a {split} file')


def _qa_record(where: str, rec: dict, split: str) -> SemEvalRecord:
    item_id = _string(where, rec, "id")
    kind = item_kind(item_id)
    if kind is None:
        raise DataError(f'{where}: field "id" must end in "sc<n>" (sentence completion) or "qa<n>" '
                        f'(question answering), got {item_id!r}')
    prompt = _string(where, rec, "input")
    output = _string(where, rec, "output")
    task = _task(where, rec, required=True)
    _split_field(where, rec, split)
    item = QAItem(question=prompt, answer=output, subject=f"{task}/{document_id(item_id)}")
    return SemEvalRecord(id=item_id, task=task, kind=kind, split=split, item=item, where=where)


def _mia_record(where: str, rec: dict, split: str) -> SemEvalRecord:
    item_id = _string(where, rec, "id")
    task = _task(where, rec, required=False)
    _split_field(where, rec, None)
    doc = document_id(item_id)
    subject = f"{task}/{doc}" if task is not None else doc
    if "document" in rec and rec["document"] is not None:
        if "input" in rec or "output" in rec:
            raise DataError(f'{where}: the record has both "document" and "input"/"output"; give one or the other')
        text = _string(where, rec, "document")
        item = QAItem(question=None, answer=text, subject=subject)
    elif "input" in rec or "output" in rec:
        item = QAItem(question=_string(where, rec, "input"), answer=_string(where, rec, "output"), subject=subject)
    else:
        raise DataError(f'{where}: field "document" is missing (an MIA record needs "document", or "input" '
                        f'and "output")')
    return SemEvalRecord(id=item_id, task=task, kind=None, split=split, item=item, where=where)


def read_semeval_split(files: list[Path], split: str, *, mia: bool = False) -> list[SemEvalRecord]:
    """Validated records of one split read from `files` (JSON Lines / JSON / parquet), in order.

    `split` is "forget" or "retain" (the `split` field, when a record has one, must agree), or
    "member" / "nonmember" with `mia=True`. An id given twice is an error naming both places.
    """
    make = _mia_record if mia else _qa_record
    records: list[SemEvalRecord] = []
    seen: dict[str, str] = {}
    for path in files:
        for where, rec in _read_file(Path(path)):
            r = make(where, rec, split)
            if r.id in seen:
                raise DataError(f'{where}: field "id" {r.id!r} was already given at {seen[r.id]}')
            seen[r.id] = where
            records.append(r)
    return records


# --- the task ------------------------------------------------------------------------------


def _mia_dir(data_dir: Path, mia_dir: Path | None) -> Path | None:
    if mia_dir is not None:
        if not Path(mia_dir).is_dir():
            raise DataError(f"{mia_dir}: no such directory (expected member.jsonl and nonmember.jsonl)")
        return Path(mia_dir)
    candidates = [data_dir / "mia_data", data_dir / "data" / "mia_data"]
    if data_dir.name == "data":  # the Hub snapshot: data/*.parquet beside mia_data/
        candidates.append(data_dir.parent / "mia_data")
    return next((c for c in candidates if c.is_dir()), None)


def load_semeval(data_dir: Path, *, tasks: tuple[str, ...] | list[str] | None = None,
                 eval_fold: str | None = None, mia_dir: Path | None = None) -> SemEvalTask:
    """The SemEval-2025 Task 4 benchmark (Ramakrishna et al. 2025) as a `ForgetTask`.

    - `forget` / `retain`: forget_train / retain_train;
    - `forget_eval` / `retain_eval`: forget_validation / retain_validation, or the train fold of
      a split without a validation file (`eval_fold="train"` or `"validation"` forces one; a
      missing forced fold is an error); `sources` records which files were used;
    - `holdout`: the MIA non-members (`mia_data/nonmember.jsonl`), `mia_member`: the MIA members;
      both empty when there is no `mia_data` directory (`mia_dir` names another one);
    - every item: `question` = `input`, `answer` = `output`, `subject` = "{task}/{document id}";
      its task and kind (regurgitation for `...sc<n>` ids, knowledge for `...qa<n>`) are in
      `records` (see `SemEvalTask.labels`); see the module docstring for the id rule.
    `tasks` keeps only the items of those tasks ("Task2", "task2", ...); an MIA record is kept
    when it has no task label or one of those. Every record is validated: a `DataError` names the
    file, the line (parquet: row) and the field at fault; an id in both the forget and retain
    data, or a non-member that is also a forget/retain item, is an error too.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such directory (expected {_LAYOUT})")
    if eval_fold not in (None, *FOLDS):
        raise DataError(f"eval_fold={eval_fold!r}: must be 'train', 'validation' or None")
    keep: set[str] | None = None
    if tasks is not None:
        if isinstance(tasks, str):
            tasks = [tasks]
        keep = set()
        for t in tasks:
            c = canonical_task(str(t))
            if c is None:
                raise DataError(f"SemEval task {t!r}: valid tasks are {', '.join(SEMEVAL_TASKS)}")
            keep.add(c)
        if not keep:
            raise DataError("SemEval tasks: the list is empty")

    dirs = [data_dir, data_dir / "data"]
    recs: dict[str, list[SemEvalRecord]] = {}
    sources: dict[str, list[str]] = {}
    for split in SPLITS:
        train_files = _find(dirs, f"{split}_train")
        if not train_files:
            raise DataError(f"{data_dir}: no {split}_train file (expected {_LAYOUT})")
        val_files = _find(dirs, f"{split}_validation")
        train = read_semeval_split(train_files, split)
        recs[split], sources[split] = train, [str(p) for p in train_files]
        fold = eval_fold or ("validation" if val_files else "train")
        if fold == "validation":
            if not val_files:
                raise DataError(f"{data_dir}: no {split}_validation file, and eval_fold='validation' asks for "
                                f"it (expected {_LAYOUT})")
            recs[f"{split}_eval"] = read_semeval_split(val_files, split)
            sources[f"{split}_eval"] = [str(p) for p in val_files]
        else:
            recs[f"{split}_eval"], sources[f"{split}_eval"] = list(train), list(sources[split])

    mdir = _mia_dir(data_dir, mia_dir)
    recs["mia_member"], recs["holdout"] = [], []
    if mdir is not None:
        found = {name: _find([mdir], name) for name in ("member", "nonmember")}
        if not all(found.values()):
            lacking = [n for n, f in found.items() if not f]
            raise DataError(f"{mdir}: no {' or '.join(n + '.jsonl' for n in lacking)} (the MIA data needs "
                            f"member.jsonl and nonmember.jsonl)")
        recs["mia_member"] = read_semeval_split(found["member"], "member", mia=True)
        recs["holdout"] = read_semeval_split(found["nonmember"], "nonmember", mia=True)
        sources["mia_member"] = [str(p) for p in found["member"]]
        sources["holdout"] = [str(p) for p in found["nonmember"]]

    # Ids shared by the forget and retain data (either fold) mean the splits are mixed up.
    forget_ids = {r.id: r.where for r in recs["forget"] + recs["forget_eval"]}
    for r in recs["retain"] + recs["retain_eval"]:
        if r.id in forget_ids:
            raise DataError(f'{r.where}: field "id" {r.id!r} is also in the forget data ({forget_ids[r.id]})')

    if keep is not None:
        recs = {name: [r for r in rs if r.task is None or r.task in keep] for name, rs in recs.items()}
        for name in ("forget", "retain"):
            if not recs[name]:
                raise DataError(f"{data_dir}: no {name} item of {', '.join(sorted(keep))}")

    suffix = "" if keep is None or keep == set(SEMEVAL_TASKS) else "_" + "_".join(sorted(keep)).lower()
    task = SemEvalTask(
        name=f"semeval25{suffix}",
        forget=[r.item for r in recs["forget"]],
        retain=[r.item for r in recs["retain"]],
        forget_eval=[r.item for r in recs["forget_eval"]],
        retain_eval=[r.item for r in recs["retain_eval"]],
        holdout=[r.item for r in recs["holdout"]],
        mia_member=[r.item for r in recs["mia_member"]],
        records=recs,
        sources=sources,
    )
    task.validate()
    trained = {(it.question, it.answer) for it in task.forget + task.retain}
    for r in recs["holdout"]:
        if (r.item.question, r.item.answer) in trained:
            raise DataError(f"{r.where}: this MIA non-member ({r.id!r}) is also a forget or retain item")
    return task
