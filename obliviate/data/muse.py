"""MUSE-News (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language Models").

The published files (Hugging Face `muse-bench/MUSE-News`), each a JSON array:

- `raw/forget.json`: 889 BBC articles (strings), the forget corpus. Element 821 of the
  published file is an empty string and some articles occur twice: empty articles are skipped,
  duplicates kept (the target model saw the corpus as published);
- `verbmem/forget.json`: 100 `{prompt, gt}` (VerbMem, C1: continue the prompt, compare with gt);
- `knowmem/forget_qa.json`, `knowmem/retain2_qa.json`: 100 `{question, answer}` each (KnowMem,
  C2 on the forget side, utility C4 on the retain side), and `*_qa_icl.json`: the few-shot
  examples placed before every question of that split;
- `privleak/forget.json`, `retain2.json`, `holdout.json`: 100 texts each (~8,000 characters,
  windows of the corpora; PrivLeak, C3: Min-K% AUC forget vs holdout).

`load_muse` maps them onto a `ForgetTask`:

- `forget`: the raw forget articles as text items (`QAItem(question=None, answer=article,
  subject="article_{i}")`). The unlearning loop trains on a text item as BOS + its tokens + EOS
  cut to `max_length` tokens, so a whole article longer than that is only trained on its head.
  To train on all of it, pass a tokenizer and `chunk_length`: every article (the empty one
  included) is then joined with "\\n\\n" (as MUSE built its corpus: every privleak forget text
  is a window of that join, one of them spanning the empty article) and cut
  into windows of `chunk_length` tokens (`chunk_texts`); use `chunk_length` <= max_length - 2
  (BOS and EOS), with a little slack, as re-tokenizing a window can differ by a token;
- `retain`: the privleak `retain2` texts. MUSE's raw retain corpora (`retain1`, `retain2`) are
  not shipped here, so the only retain text at hand is this 100-text sample of retain2; it is
  also `retain_eval`, so the retain loss trains on what the retain text metrics score;
- `forget_eval`: the privleak forget texts (windows of the forget corpus);
- `retain_eval`: the privleak retain2 texts; `holdout`: the privleak holdout texts (never
  trained on), so the evaluator's Min-K% AUC forget vs holdout is MUSE's PrivLeak AUC.

VerbMem and KnowMem need their own prompts (`obliviate.metrics.muse`); `load_muse_probes` reads them.

Errors are `DataError`s naming the file, the element and the field: `{path}:{i}: field "answer"
is missing`, where `i` is the element's 0-based index in the JSON array (the files are
single-line arrays, so the index stands where other loaders give a line number).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from obliviate.data.jsonl import _check_exists, _kind, _read_text
from obliviate.data.task import DataError, ForgetTask, QAItem

NAME = "muse_news"
RAW_FORGET = "raw/forget.json"
VERBMEM = "verbmem/forget.json"
KNOWMEM_FORGET = "knowmem/forget_qa.json"
KNOWMEM_FORGET_ICL = "knowmem/forget_qa_icl.json"
KNOWMEM_RETAIN = "knowmem/retain2_qa.json"
KNOWMEM_RETAIN_ICL = "knowmem/retain2_qa_icl.json"
PRIVLEAK_FORGET = "privleak/forget.json"
PRIVLEAK_RETAIN = "privleak/retain2.json"
PRIVLEAK_HOLDOUT = "privleak/holdout.json"
FILES = (RAW_FORGET, VERBMEM, KNOWMEM_FORGET, KNOWMEM_FORGET_ICL, KNOWMEM_RETAIN, KNOWMEM_RETAIN_ICL,
         PRIVLEAK_FORGET, PRIVLEAK_RETAIN, PRIVLEAK_HOLDOUT)
# How MUSE joined the raw articles into one corpus (the privleak forget texts are windows of it).
CORPUS_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class VerbMemItem:
    """One VerbMem probe: the model continues `prompt`; the continuation is compared with `gt`."""

    prompt: str
    gt: str


def read_json_array(path: Path) -> list:
    """The elements of a file holding one non-empty JSON array."""
    path = Path(path)
    _check_exists(path)
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno}); expected a JSON array") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array, got a JSON {_kind(data)}")
    if not data:
        raise DataError(f"{path}: the file is empty (no records)")
    return data


def _string_field(path: Path, i: int, rec: object, name: str) -> str:
    if not isinstance(rec, dict):
        raise DataError(f"{path}:{i}: expected a JSON object, got a JSON {_kind(rec)}")
    if name not in rec:
        raise DataError(f'{path}:{i}: field "{name}" is missing')
    value = rec[name]
    if value is None:
        raise DataError(f'{path}:{i}: field "{name}" is null')
    if not isinstance(value, str):
        raise DataError(f'{path}:{i}: field "{name}" must be a string, got a JSON {_kind(value)}')
    if not value.strip():
        raise DataError(f'{path}:{i}: field "{name}" is empty')
    return value


def load_texts(path: Path, allow_empty: bool = False) -> list[str]:
    """A JSON array of texts: strings (as published) or `{"text": ...}` objects.

    Every element is returned, in order; an empty or blank text is an error unless
    `allow_empty` (the published `raw/forget.json` holds one empty article).
    """
    path = Path(path)
    texts = []
    for i, rec in enumerate(read_json_array(path)):
        if isinstance(rec, dict):
            if "text" not in rec:
                raise DataError(f'{path}:{i}: field "text" is missing (expected a string or an object with "text")')
            rec = rec["text"]
            if not isinstance(rec, str):
                raise DataError(f'{path}:{i}: field "text" must be a string, got a JSON {_kind(rec)}')
        if not isinstance(rec, str):
            raise DataError(f"{path}:{i}: expected a string (a text), got a JSON {_kind(rec)}")
        if not allow_empty and not rec.strip():
            raise DataError(f"{path}:{i}: the text is empty")
        texts.append(rec)
    return texts


def load_qa(path: Path) -> list[QAItem]:
    """A JSON array of `{question, answer}` objects (KnowMem QA or its ICL examples); other fields ignored."""
    path = Path(path)
    return [QAItem(question=_string_field(path, i, rec, "question"), answer=_string_field(path, i, rec, "answer"))
            for i, rec in enumerate(read_json_array(path))]


def load_verbmem(path: Path) -> list[VerbMemItem]:
    """A JSON array of `{prompt, gt}` objects (VerbMem)."""
    path = Path(path)
    return [VerbMemItem(prompt=_string_field(path, i, rec, "prompt"), gt=_string_field(path, i, rec, "gt"))
            for i, rec in enumerate(read_json_array(path))]


def _dir(data_dir: Path) -> Path:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such directory (expected the MUSE-News files: {', '.join(FILES)})")
    return data_dir


def raw_articles(data_dir: Path) -> list[str]:
    """Every element of `raw/forget.json` (889 in the published file, one of them empty)."""
    return load_texts(_dir(data_dir) / RAW_FORGET, allow_empty=True)


def chunk_texts(tokenizer, texts: list[str], length: int) -> list[str]:
    """Cut each text into consecutive windows of `length` tokens (the last one shorter).

    Each text is tokenized without special tokens. With a fast tokenizer the windows are cut
    at the character offsets of their first tokens, so they are exact substrings of the text
    and together give it back whole; otherwise each window is its tokens decoded. Windows with
    no visible character are dropped. Re-tokenizing a window can give a token more or less
    than `length` (a word split at its edge).
    """
    if length < 1:
        raise ValueError(f"chunk length must be >= 1, got {length}")
    chunks: list[str] = []
    fast = bool(getattr(tokenizer, "is_fast", False))
    for text in texts:
        if fast:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            starts = [0] + [offsets[j][0] for j in range(length, len(offsets), length)]
            ends = starts[1:] + [len(text)]
            pieces = [text[s:e] for s, e in zip(starts, ends, strict=True)]
        else:
            ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
            pieces = [tokenizer.decode(ids[j: j + length], skip_special_tokens=True)
                      for j in range(0, len(ids), length)]
        chunks += [p for p in pieces if p.strip()]
    return chunks


def _text_items(texts: list[str], prefix: str | None = None) -> list[QAItem]:
    return [QAItem(question=None, answer=t, subject=f"{prefix}_{i}" if prefix else None) for i, t in enumerate(texts)]


def load_muse(data_dir: Path, tokenizer=None, chunk_length: int | None = None, name: str = NAME) -> ForgetTask:
    """MUSE-News as a `ForgetTask` (see the module docstring for the mapping).

    Without `chunk_length`: one forget text item per non-empty raw article (`subject`
    "article_{i}", i its index in `raw/forget.json`). With `tokenizer` and `chunk_length`: the
    articles joined with "\\n\\n" and cut into `chunk_length`-token windows (`subject` "chunk_{i}").
    """
    data_dir = _dir(data_dir)
    if chunk_length is not None and tokenizer is None:
        raise ValueError("load_muse: chunk_length needs a tokenizer")
    articles = raw_articles(data_dir)
    if chunk_length is None:
        forget = [QAItem(question=None, answer=a, subject=f"article_{i}") for i, a in enumerate(articles) if a.strip()]
    else:
        corpus = CORPUS_SEPARATOR.join(articles)  # the empty article too, as MUSE joined them
        forget = _text_items(chunk_texts(tokenizer, [corpus], chunk_length), "chunk")
    retain = _text_items(load_texts(data_dir / PRIVLEAK_RETAIN))
    task = ForgetTask(name=name, forget=forget, retain=retain,
                      forget_eval=_text_items(load_texts(data_dir / PRIVLEAK_FORGET)),
                      retain_eval=list(retain),
                      holdout=_text_items(load_texts(data_dir / PRIVLEAK_HOLDOUT)))
    task.validate()
    trained = {it.answer for it in task.forget + task.retain}
    for i, it in enumerate(task.holdout):
        if it.answer in trained:
            raise DataError(f"task {name!r}: holdout text {i} ({data_dir / PRIVLEAK_HOLDOUT}) is also a forget "
                            f"or retain text: {it.answer[:60]!r}")
    return task


def load_muse_probes(data_dir: Path) -> dict:
    """The VerbMem and KnowMem probes:

    `{"verbmem": [VerbMemItem] (100), "knowmem_forget": [QAItem] (100), "knowmem_retain": [QAItem]
    (100), "icl_forget": [QAItem], "icl_retain": [QAItem]}`; `icl_forget` are the few-shot examples
    for the forget questions, `icl_retain` those for the retain questions.
    """
    data_dir = _dir(data_dir)
    return {
        "verbmem": load_verbmem(data_dir / VERBMEM),
        "knowmem_forget": load_qa(data_dir / KNOWMEM_FORGET),
        "knowmem_retain": load_qa(data_dir / KNOWMEM_RETAIN),
        "icl_forget": load_qa(data_dir / KNOWMEM_FORGET_ICL),
        "icl_retain": load_qa(data_dir / KNOWMEM_RETAIN_ICL),
    }
