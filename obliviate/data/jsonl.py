"""Reading user data: JSON Lines, JSON arrays and CSV files into `QAItem`s (SPEC section 1).

Accepted files:
- `.jsonl` / `.json`: JSON Lines, one object a line, blank lines skipped;
- `.json` whose first non-space character is `[`: a JSON array of objects;
- `.csv`: a header row, then one record a row (`csv.DictReader`).

Every error is a `DataError` with a one-line message naming the file, the line and what is
wrong, e.g. `forget.jsonl:17: field "answer" is missing`.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from obliviate.data.task import DataError, ForgetTask, QAItem

SUFFIXES = (".jsonl", ".json", ".csv")
# How many retain items `load_user_task` keeps as the retain evaluation set.
RETAIN_EVAL_MAX = 200

_FORMAT_HINT = "expected JSON Lines (one object a line) or a JSON array of objects"
_STR_FIELDS = ("question", "answer", "paraphrased_question", "paraphrased_answer", "keyword", "subject")
_QA_FIELDS = {"question", "answer"}


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")


def _read_text(path: Path) -> str:
    try:
        # newline="": keep "\r" inside quoted CSV cells; JSON readers normalise line ends themselves.
        with path.open(encoding="utf-8-sig", newline="") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(value), "number")


def _read_json_lines(path: Path, text: str) -> list[tuple[int, dict]]:
    records = []
    # Split on "\n" only: str.splitlines would also split on U+2028 and friends, which JSON
    # strings may hold unescaped.
    # A raw "\r" cannot be inside a JSON string, so it only ever ends a line.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: invalid JSON: {e.msg} (column {e.colno}); {_FORMAT_HINT}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got a JSON {_kind(obj)}")
        records.append((lineno, obj))
    return records


def _read_json_array(path: Path, text: str) -> list[tuple[int, dict]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno}); {_FORMAT_HINT}") from None
    # The array parsed, so walking it element by element cannot fail: it only finds the line
    # each element starts on.
    decoder = json.JSONDecoder()
    ws = " \t\n\r"
    pos = text.index("[") + 1
    lineno = text.count("\n", 0, pos) + 1
    records = []
    for _ in range(len(data)):
        start = pos
        while text[pos] in ws + ",":
            pos += 1
        lineno += text.count("\n", start, pos)
        obj, end = decoder.raw_decode(text, pos)
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got a JSON {_kind(obj)}")
        records.append((lineno, obj))
        lineno += text.count("\n", pos, end)
        pos = end
    return records


def _read_csv(path: Path, text: str) -> list[tuple[int, dict]]:
    """Rows as dicts keyed by the header, each with the line it starts on (a quoted cell may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    header_line = 0
    records = []
    end = 0  # the last physical line read so far
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # a blank line, or a row of empty cells
            if header is None:
                header, header_line = row, start
                for name in header:
                    if not name.strip():
                        raise DataError(f"{path}:{start}: the header has an empty column name")
                dup = [n for n in header if header.count(n) > 1]
                if dup:
                    raise DataError(f"{path}:{start}: the header names column {dup[0]!r} twice")
                continue
            if len(row) > len(header):
                raise DataError(f"{path}:{start}: the row has {len(row)} cells, more than the header's "
                                f"{len(header)} (line {header_line})")
            # A short row leaves its last fields absent.
            records.append((start, dict(zip(header, row, strict=False))))
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: invalid CSV: {e}") from None
    return records


def read_records(path: Path) -> list[tuple[int, dict]]:
    """Read every record of a user data file as (line number, object).

    `.jsonl` and `.json` files are JSON Lines (blank lines skipped); a `.json` file whose first
    non-space character is `[` is read as one JSON array of objects (the line number is the one
    each object starts on); `.csv` files have a header row and give string values only (the line
    number is the one each row starts on).
    Raises `DataError` ("{path}:{line}: ...") on a missing file, a malformed line, a record that
    is not an object, or a file without records.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    _check_exists(path)
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {path.suffix!r} (expected {', '.join(SUFFIXES)})")
    text = _read_text(path)
    if suffix == ".csv":
        records = _read_csv(path, text)
    elif suffix == ".json" and text.lstrip().startswith("["):
        records = _read_json_array(path, text)
    else:
        records = _read_json_lines(path, text)
    if not records:
        raise DataError(f"{path}: the file is empty (no records)")
    return records


def _string(path: Path, lineno: int, rec: dict, name: str, *, csv_file: bool) -> str | None:
    """The value of an optional string field, or None when absent."""
    if name not in rec or rec[name] is None:
        return None
    value = rec[name]
    if not isinstance(value, str):
        raise DataError(f'{path}:{lineno}: field "{name}" must be a string, got a JSON {_kind(value)}')
    if not value.strip():
        if csv_file and name not in _QA_FIELDS and name != "text":
            return None  # an empty optional cell in a CSV file means "not given"
        raise DataError(f'{path}:{lineno}: field "{name}" is empty')
    return value


def _perturbed(path: Path, lineno: int, rec: dict, *, csv_file: bool) -> tuple[str, ...] | None:
    names = [n for n in ("perturbed_answers", "perturbed_answer") if n in rec and rec[n] is not None]
    if not names:
        return None
    if len(names) == 2:
        raise DataError(f'{path}:{lineno}: give "perturbed_answers" or "perturbed_answer", not both')
    name = names[0]
    value = rec[name]
    if csv_file and isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)  # a CSV cell holds the list as JSON: ["wrong 1", "wrong 2"]
        except json.JSONDecodeError:
            raise DataError(f'{path}:{lineno}: field "{name}" must be a JSON list of strings in a CSV cell, '
                            f'e.g. ["wrong 1", "wrong 2"]') from None
    if not isinstance(value, list):
        raise DataError(f'{path}:{lineno}: field "{name}" must be a list of strings, got a JSON {_kind(value)}')
    if not value:
        raise DataError(f'{path}:{lineno}: field "{name}" is an empty list')
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise DataError(f'{path}:{lineno}: field "{name}" item {i} must be a string, got a JSON {_kind(v)}')
        if not v.strip():
            raise DataError(f'{path}:{lineno}: field "{name}" item {i} is empty')
    return tuple(value)


def read_qa_items(path: Path, required: tuple = ("question", "answer")) -> list[QAItem]:
    """The items of `read_qa_lines`, without their line numbers."""
    return [it for _, it in read_qa_lines(path, required)]


def read_qa_lines(path: Path, required: tuple = ("question", "answer")) -> list[tuple[int, QAItem]]:
    """Read a user file of question/answer records or raw-text records into (1-based line, `QAItem`).

    A record is either `{"question", "answer"}` with optional `paraphrased_question`,
    `paraphrased_answer`, `perturbed_answers` (a list of wrong answers; TOFU's name
    `perturbed_answer` is accepted too; in a CSV cell, a JSON list), `keyword` and `subject`,
    or `{"text"}` (optional `subject`), which becomes `QAItem(question=None, answer=text)`.
    Other fields (ids, ...) are ignored. `required` names the fields every question/answer
    record must have (`perturbed_answer` counts as `perturbed_answers`); text records are
    accepted only when `required` asks for nothing beyond question and answer.
    Empty optional CSV cells mean "not given"; anywhere else an empty string is an error.
    """
    path = Path(path)
    csv_file = path.suffix.lower() == ".csv"
    required = tuple("perturbed_answers" if r == "perturbed_answer" else r for r in required)
    unknown = [r for r in required if r not in (*_STR_FIELDS, "perturbed_answers")]
    if unknown:
        raise ValueError(f"read_qa_lines: unknown required field(s) {unknown}")
    allow_text = set(required) <= _QA_FIELDS
    items = []
    for lineno, rec in read_records(path):
        # Empty CSV cells do not count: a CSV file may mix text rows and question/answer rows.
        present = {k for k, v in rec.items() if not (csv_file and isinstance(v, str) and not v.strip())}
        has_text = "text" in present
        qa_fields = sorted(_QA_FIELDS & present)
        if has_text and qa_fields:
            raise DataError(f'{path}:{lineno}: the record mixes a raw text ("text") with a question/answer '
                            f'({", ".join(repr(n) for n in qa_fields)}); give one or the other')
        if has_text:
            if not allow_text:
                raise DataError(f'{path}:{lineno}: a raw "text" record is not accepted here; fields '
                                f'{", ".join(required)} are required')
            text = _string(path, lineno, rec, "text", csv_file=csv_file)
            if text is None:
                raise DataError(f'{path}:{lineno}: field "text" is null')
            items.append((lineno, QAItem(question=None, answer=text,
                                         subject=_string(path, lineno, rec, "subject", csv_file=csv_file))))
            continue
        if not qa_fields:
            raise DataError(f'{path}:{lineno}: the record has neither "question"/"answer" nor "text" '
                            f'(fields: {", ".join(sorted(present)) or "none"})')
        values = {n: _string(path, lineno, rec, n, csv_file=csv_file) for n in _STR_FIELDS}
        values["perturbed_answers"] = _perturbed(path, lineno, rec, csv_file=csv_file)
        for name in ("question", "answer", *required):
            if values.get(name) is None:
                what = "is null" if rec.get(name, 0) is None else "is missing"
                raise DataError(f'{path}:{lineno}: field "{name}" {what}')
        values["perturbed_answers"] = values["perturbed_answers"] or ()
        items.append((lineno, QAItem(**values)))
    return items


def load_user_task(forget: Path, retain: Path, holdout: Path | None = None, name: str = "custom") -> ForgetTask:
    """A `ForgetTask` from the user's own files (see `read_qa_items` for the record format).

    The forget items are also the forget evaluation set; the retain evaluation set is the first
    `RETAIN_EVAL_MAX` (200) retain items at most, so evaluation stays cheap on a large retain set.
    `holdout` (optional) holds items of the same kind the model was never trained on (for
    membership inference); it must not share an item with the forget or retain set.
    Raises `DataError` for bad files, an empty forget/retain set, or overlapping sets.
    """
    forget_lines = read_qa_lines(Path(forget))
    retain_lines = read_qa_lines(Path(retain))
    holdout_lines = read_qa_lines(Path(holdout)) if holdout is not None else []
    _check_disjoint(forget, forget_lines, "retain", retain, retain_lines)
    for other, path, lines in (("forget", forget, forget_lines), ("retain", retain, retain_lines)):
        _check_disjoint(holdout, holdout_lines, other, path, lines)
    forget_items, retain_items = [it for _, it in forget_lines], [it for _, it in retain_lines]
    task = ForgetTask(name=name, forget=forget_items, retain=retain_items, forget_eval=list(forget_items),
                      retain_eval=retain_items[:RETAIN_EVAL_MAX], holdout=[it for _, it in holdout_lines])
    task.validate()
    return task


def _check_disjoint(path: Path | None, lines: list[tuple[int, QAItem]], other: str, other_path: Path,
                    other_lines: list[tuple[int, QAItem]]) -> None:
    """No item of `path` may also be in `other_path`: the error names both files and lines (1-based)."""
    seen: dict[tuple, int] = {}
    for lineno, it in other_lines:
        seen.setdefault((it.question, it.answer), lineno)
    for lineno, it in lines:
        at = seen.get((it.question, it.answer))
        if at is not None:
            q = it.question if it.question is not None else it.answer[:60]
            raise DataError(f"{path}:{lineno}: this item is also in the {other} set ({other_path}:{at}): {q!r}")
