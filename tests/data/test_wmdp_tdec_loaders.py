"""WMDP and TDEC loaders on the real files, and their errors on bad records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from obliviate.data.task import DataError
from obliviate.data.tdec import load_tdec_forget, load_tdec_validation
from obliviate.data.wmdp import MCItem, load_wmdp, load_wmdp_dir

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
WMDP = DATA / "wmdp"
TDEC = DATA / "tdec"
needs_wmdp = pytest.mark.skipif(not WMDP.is_dir(), reason=f"WMDP files not found at {WMDP}")
needs_tdec = pytest.mark.skipif(not TDEC.is_dir(), reason=f"TDEC files not found at {TDEC}")


@needs_wmdp
def test_wmdp_real_files():
    sets = load_wmdp_dir(WMDP)
    assert {k: len(v) for k, v in sets.items()} == {"bio": 1520, "chem": 412, "cyber": 2225}
    for items in sets.values():
        assert all(isinstance(it, MCItem) and len(it.choices) == 4 and 0 <= it.answer <= 3 for it in items)
    first = json.loads((WMDP / "wmdp-bio.json").read_text())[0]
    assert sets["bio"][0] == MCItem(first["question"], tuple(first["choices"]), first["answer"])
    assert len(load_wmdp(WMDP / "wmdp-chem.json", limit=5)) == 5


@needs_tdec
def test_tdec_real_files():
    for k in range(5):
        items = load_tdec_forget(TDEC / f"lm_extraction_32_{k}.csv")
        assert len(items) == 32
        assert all(it.is_text and it.answer.strip() and it.subject for it in items)
    val = load_tdec_validation(TDEC / "validation")
    assert set(val) == {"lambada", "wikitext", "pile"}
    assert all(len(v) > 0 and all(it.is_text for it in v) for v in val.values())


def _write(tmp_path: Path, records) -> Path:
    p = tmp_path / "wmdp-bad.json"
    p.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    return p


GOOD = {"question": "q?", "choices": ["a", "b", "c", "d"], "answer": 1}


@pytest.mark.parametrize("bad, field", [
    ({"question": "q?", "choices": ["a", "b", "c", "d"]}, '"answer" is missing'),
    ({"choices": ["a", "b", "c", "d"], "answer": 0}, '"question" is missing'),
    ({**GOOD, "choices": ["a", "b", "c"]}, '"choices" must be a list of 4 strings'),
    ({**GOOD, "choices": "abcd"}, '"choices" must be a list of 4 strings'),
    ({**GOOD, "choices": ["a", "b", 3, "d"]}, '"choices" item 2'),
    ({**GOOD, "answer": 4}, '"answer" must be an integer in 0..3'),
    ({**GOOD, "answer": "1"}, '"answer" must be an integer in 0..3'),
    ({**GOOD, "answer": True}, '"answer" must be an integer in 0..3'),
])
def test_wmdp_bad_record_names_file_line_and_field(tmp_path, bad, field):
    p = _write(tmp_path, [GOOD, bad])
    with pytest.raises(DataError) as e:
        load_wmdp(p)
    assert f"{p}:3:" in str(e.value) and field in str(e.value)


def test_tdec_bad_records(tmp_path):
    p = tmp_path / "forget.csv"
    p.write_text('doc_id,corpus,text\n1,pile,"some text"\n2,pile,\n')
    with pytest.raises(DataError, match=r'forget\.csv:3: field "text"'):
        load_tdec_forget(p)
    p.write_text('corpus,text\npile,"some text"\n')
    with pytest.raises(DataError, match=r'forget\.csv:2: field "doc_id" is missing'):
        load_tdec_forget(p)
    with pytest.raises(DataError, match="no such directory"):
        load_tdec_validation(tmp_path / "nope")


def test_tdec_validation_index_column(tmp_path):
    """An unnamed pandas index column (as in validation/wikitext.csv) is accepted."""
    for name in ("lambada", "wikitext", "pile"):
        (tmp_path / f"{name}.csv").write_text(',text\n0,"hello there"\n1,"second"\n')
    val = load_tdec_validation(tmp_path)
    assert [it.answer for it in val["wikitext"]] == ["hello there", "second"]
