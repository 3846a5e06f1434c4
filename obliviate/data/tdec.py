"""Training Data Extraction Challenge forget sets (Jang et al. 2022 setup; SPEC section 3, `ma`/`el10`).

- `lm_extraction_32_{0..4}.csv` {doc_id, corpus, text}: five random 32-sample forget sets of
  The Pile, read as raw-text items `QAItem(question=None, answer=text, subject=doc_id)`;
- `validation/{lambada,wikitext,pile}.csv`: utility text (each has a `text` column; the other
  columns differ and are ignored), read as raw-text items (`subject` = `doc_id`/`id` when present).

Read with `obliviate.data.jsonl.read_records`: errors name the file and the line.
"""

from __future__ import annotations

from pathlib import Path

from obliviate.data.jsonl import _check_exists, _read_csv, _read_text, read_records
from obliviate.data.task import DataError, QAItem

VALIDATION_SETS = ("lambada", "wikitext", "pile")


def _records(path: Path) -> list[tuple[int, dict]]:
    """`read_records`, except that an empty first header cell (the unnamed index column pandas
    writes, as in `validation/wikitext.csv`) is named "index" instead of being an error."""
    if path.suffix.lower() == ".csv":
        _check_exists(path)
        text = _read_text(path)
        if text.startswith(","):
            records = _read_csv(path, "index" + text)  # same lines: the line numbers still hold
            if not records:
                raise DataError(f"{path}: the file is empty (no records)")
            return records
    return read_records(path)


def _text_items(path: Path, id_fields: tuple[str, ...], require_id: bool) -> list[QAItem]:
    items = []
    for lineno, rec in _records(path):
        text = rec.get("text")
        if text is None:
            raise DataError(f'{path}:{lineno}: field "text" is missing')
        if not isinstance(text, str) or not text.strip():
            raise DataError(f'{path}:{lineno}: field "text" is empty')
        subject = next((str(rec[f]).strip() for f in id_fields if str(rec.get(f) or "").strip()), None)
        if require_id and subject is None:
            raise DataError(f'{path}:{lineno}: field "{id_fields[0]}" is missing')
        items.append(QAItem(question=None, answer=text, subject=subject))
    return items


def load_tdec_forget(path: Path) -> list[QAItem]:
    """One forget set (`lm_extraction_32_k.csv`): raw-text items, `subject` = the `doc_id`."""
    return _text_items(Path(path), ("doc_id",), require_id=True)


def load_tdec_validation(directory: Path) -> dict[str, list[QAItem]]:
    """`{"lambada": [...], "wikitext": [...], "pile": [...]}` from `directory/{name}.csv`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory (expected {', '.join(v + '.csv' for v in VALIDATION_SETS)})")
    return {name: _text_items(directory / f"{name}.csv", ("doc_id", "id"), require_id=False)
            for name in VALIDATION_SETS}
