"""Reading user data files: formats, error messages (file:line: field), and the custom task."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from obliviate.data import BENCHMARKS
from obliviate.data.jsonl import RETAIN_EVAL_MAX, load_user_task, read_qa_items, read_records
from obliviate.data.task import DataError, QAItem

QA = [
    {"question": "Where was Ada born?", "answer": "Ada was born in Tarnow.", "keyword": "Tarnow",
     "subject": "Ada"},
    {"question": "What does Ada write?", "answer": "Ada writes sea shanties.",
     "paraphrased_question": "Which genre does Ada write in?", "paraphrased_answer": "Sea shanties.",
     "perturbed_answers": ["Ada writes sonnets.", "Ada writes limericks."]},
    {"question": "Who is Ada's father?", "answer": "A baker.", "perturbed_answer": ["A miller."]},
]


def write_jsonl(path: Path, rows: list, blank_lines: bool = False) -> Path:
    lines = [json.dumps(r) for r in rows]
    sep = "\n\n" if blank_lines else "\n"
    path.write_text(sep.join(lines) + "\n", encoding="utf-8")
    return path


def lines_of(rows: list) -> str:
    return "\n".join(json.dumps(r) for r in rows) + "\n"


def expect_error(path: Path, line: int | None, *needles: str, required=("question", "answer")) -> str:
    with pytest.raises(DataError) as e:
        read_qa_items(path, required=required)
    msg = str(e.value)
    assert "\n" not in msg
    prefix = f"{path.name}:{line}:" if line is not None else f"{path.name}:"
    assert prefix in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


# --------------------------------------------------------------------------- formats

def test_jsonl_round_trip_with_blank_lines(tmp_path):
    path = write_jsonl(tmp_path / "forget.jsonl", QA, blank_lines=True)
    recs = read_records(path)
    assert [ln for ln, _ in recs] == [1, 3, 5]
    assert [r for _, r in recs] == QA
    items = read_qa_items(path)
    assert items[0] == QAItem("Where was Ada born?", "Ada was born in Tarnow.", keyword="Tarnow", subject="Ada")
    assert items[1].paraphrased_question == "Which genre does Ada write in?"
    assert items[1].paraphrased_answer == "Sea shanties."
    assert items[1].perturbed_answers == ("Ada writes sonnets.", "Ada writes limericks.")
    assert items[2].perturbed_answers == ("A miller.",)  # TOFU's field name
    assert items[2].keyword is None and items[2].subject is None


def test_json_lines_with_json_suffix(tmp_path):
    path = write_jsonl(tmp_path / "forget.json", QA)
    assert read_qa_items(path) == read_qa_items(write_jsonl(tmp_path / "same.jsonl", QA))


def test_json_array_round_trip_with_line_numbers(tmp_path):
    path = tmp_path / "forget.json"
    path.write_text(json.dumps(QA, indent=2), encoding="utf-8")
    recs = read_records(path)
    assert [r for _, r in recs] == QA
    text_lines = path.read_text().splitlines()
    for ln, rec in recs:  # the line number is where the object starts
        assert text_lines[ln - 1].strip() == "{"
        assert json.dumps(rec["question"]) in text_lines[ln]
    assert read_qa_items(path) == read_qa_items(write_jsonl(tmp_path / "same.jsonl", QA))


def test_json_array_bad_element_names_its_line(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text('[\n  {"question": "q", "answer": "a"},\n  [1, 2],\n  {"text": "t"}\n]\n')
    with pytest.raises(DataError, match=r"arr\.json:3: expected a JSON object, got a JSON array"):
        read_records(path)
    path.write_text('[\n  {"question": "q", "answer": "a"},\n  {"question": "q2" "answer": "a"}\n]\n')
    with pytest.raises(DataError, match=r"arr\.json:3: invalid JSON: Expecting ','"):
        read_records(path)
    path.write_text('[\n  {"question": "q", "answer": "a"},\n  {"question": "q2", "answer": 5}\n]\n')
    expect_error(path, 3, 'field "answer"', "must be a string")


def test_csv_round_trip(tmp_path):
    path = tmp_path / "forget.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "question", "answer", "keyword", "perturbed_answers", "text"])
        w.writeheader()
        w.writerow({"id": "1", "question": "Where was Ada born?", "answer": "In Tarnow, \"Poland\".",
                    "keyword": "Tarnow", "perturbed_answers": json.dumps(["In Paris.", "In Lima."])})
        w.writerow({"id": "2", "question": "Line\nbreak?", "answer": "Yes, a, comma."})
        w.writerow({"id": "3", "text": "A raw passage to forget."})
    items = read_qa_items(path)
    assert items == [
        QAItem("Where was Ada born?", 'In Tarnow, "Poland".', perturbed_answers=("In Paris.", "In Lima."),
               keyword="Tarnow"),
        QAItem("Line\nbreak?", "Yes, a, comma."),  # empty optional cells mean "not given"
        QAItem(None, "A raw passage to forget."),
    ]
    # Line numbers are the physical lines rows start on: row 2 spans lines 3-4, so row 3 is on line 5.
    assert [ln for ln, _ in read_records(path)] == [2, 3, 5]
    path.write_text('\nquestion,answer\n\n"multi\nline?",a1\n,\n"q2",a2\n')
    assert read_records(path) == [(4, {"question": "multi\nline?", "answer": "a1"}),
                                  (7, {"question": "q2", "answer": "a2"})]


def test_csv_errors(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("question,answer\nq1,a1\nq2,\n")
    expect_error(path, 3, 'field "answer" is empty')
    path.write_text("question,answer\nq1,a1\nq2\n")
    expect_error(path, 3, 'field "answer" is missing')
    path.write_text("question,answer\nq1,a1,extra\n")
    expect_error(path, 2, "3 cells, more than the header's 2")
    path.write_text("question,,answer\nq1,x,a1\n")
    expect_error(path, 1, "empty column name")
    path.write_text("question,answer,question\nq1,a1,q\n")
    expect_error(path, 1, "column 'question' twice")
    path.write_text("question,answer,perturbed_answers\nq1,a1,not a list\n")
    expect_error(path, 2, 'field "perturbed_answers"', "JSON list")
    path.write_text("question,answer\n")
    expect_error(path, None, "empty")


def test_text_records_become_text_items(tmp_path):
    path = write_jsonl(tmp_path / "corpus.jsonl", [{"text": "First passage."},
                                                   {"text": "Second passage.", "subject": "doc2", "id": 7}])
    items = read_qa_items(path)
    assert items == [QAItem(None, "First passage."), QAItem(None, "Second passage.", subject="doc2")]
    assert all(it.is_text for it in items)


def test_text_records_rejected_when_probe_fields_required(tmp_path):
    path = write_jsonl(tmp_path / "eval.jsonl", [QA[1], {"text": "raw"}])
    expect_error(path, 2, '"text"', "perturbed_answers", required=("question", "answer", "perturbed_answers"))
    path = write_jsonl(tmp_path / "eval2.jsonl", [QA[1], QA[0]])
    expect_error(path, 2, 'field "perturbed_answers" is missing',
                 required=("question", "answer", "perturbed_answer"))
    assert len(read_qa_items(write_jsonl(tmp_path / "ok.jsonl", QA[1:]),
                             required=("question", "answer", "perturbed_answers"))) == 2


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("record, needles", [
    ({"question": "q"}, ['field "answer" is missing']),
    ({"answer": "a"}, ['field "question" is missing']),
    ({"question": "q", "answer": 3}, ['field "answer" must be a string', "number"]),
    ({"question": ["q"], "answer": "a"}, ['field "question" must be a string', "array"]),
    ({"question": "q", "answer": "   "}, ['field "answer" is empty']),
    ({"question": "q", "answer": None}, ['field "answer" is null']),
    ({"question": "q", "answer": "a", "keyword": ""}, ['field "keyword" is empty']),
    ({"question": "q", "answer": "a", "subject": 4}, ['field "subject" must be a string']),
    ({"question": "q", "answer": "a", "perturbed_answers": "wrong"}, ['field "perturbed_answers"', "list"]),
    ({"question": "q", "answer": "a", "perturbed_answer": []}, ['field "perturbed_answer"', "empty list"]),
    ({"question": "q", "answer": "a", "perturbed_answers": ["x", 2]}, ['field "perturbed_answers" item 1']),
    ({"question": "q", "answer": "a", "perturbed_answers": ["x"], "perturbed_answer": ["y"]}, ["not both"]),
    ({"question": "q", "answer": "a", "text": "t"}, ['"text"', "'answer'", "mixes"]),
    ({"answer": "a", "text": "t"}, ["mixes"]),
    ({"text": ""}, ['field "text" is empty']),
    ({"text": 1}, ['field "text" must be a string']),
    ({"id": 3, "prompt": "p"}, ['neither "question"/"answer" nor "text"', "id, prompt"]),
    ({}, ["neither"]),
])
def test_bad_record_names_file_line_and_field(tmp_path, record, needles):
    path = write_jsonl(tmp_path / "forget.jsonl", [QA[0]] * 16 + [record] + [QA[1]])
    msg = expect_error(path, 17, *needles)
    assert msg.startswith(str(path) + ":17: ")


def test_malformed_json_line(tmp_path):
    path = tmp_path / "forget.jsonl"
    path.write_text(lines_of(QA[:2]) + '{"question": "q", "answer": "a",}\n' + lines_of(QA[2:]))
    msg = expect_error(path, 3, "invalid JSON", "Expecting property name")
    assert "column" in msg


def test_line_not_an_object(tmp_path):
    path = tmp_path / "forget.jsonl"
    path.write_text(lines_of(QA[:1]) + '["q", "a"]\n')
    expect_error(path, 2, "expected a JSON object, got a JSON array")
    path.write_text(lines_of(QA[:1]) + '"just a string"\n')
    expect_error(path, 2, "got a JSON string")


def test_missing_empty_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file$"):
        read_records(tmp_path / "nope.jsonl")
    for name, content in [("empty.jsonl", ""), ("blank.jsonl", "\n  \n\n"), ("empty.json", "[]"),
                          ("empty.csv", "")]:
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(DataError, match=rf"{name}: the file is empty"):
            read_records(path)
    path = tmp_path / "data.txt"
    path.write_text("hello\n")
    with pytest.raises(DataError, match=r"data\.txt: unsupported file type '\.txt'"):
        read_records(path)
    with pytest.raises(DataError, match=r"no such file"):
        read_records(tmp_path / "missing.txt")


def test_unknown_required_field_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError, match="unknown required"):
        read_qa_items(write_jsonl(tmp_path / "f.jsonl", QA), required=("question", "anwser"))


# --------------------------------------------------------------------------- the custom task

def test_load_user_task(tmp_path):
    forget = write_jsonl(tmp_path / "forget.jsonl", QA)
    retain_rows = [{"question": f"Question {i}?", "answer": f"Answer {i}."} for i in range(250)]
    retain = tmp_path / "retain.csv"
    with retain.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["question", "answer"])
        w.writeheader()
        w.writerows(retain_rows)
    holdout = write_jsonl(tmp_path / "holdout.json", [{"question": "Unseen?", "answer": "Unseen."}])
    task = load_user_task(forget, retain, holdout, name="mine")
    assert task.name == "mine"
    assert task.forget == task.forget_eval == read_qa_items(forget)
    assert len(task.retain) == 250
    assert len(task.retain_eval) == RETAIN_EVAL_MAX == 200
    assert task.retain_eval == task.retain[:200]
    assert task.holdout == [QAItem("Unseen?", "Unseen.")]
    assert task.utility == {}
    assert set(task.eval_sets()) == {"forget", "retain", "holdout"}
    assert load_user_task(forget, retain).holdout == []


def test_load_user_task_overlap_and_errors(tmp_path):
    forget = write_jsonl(tmp_path / "forget.jsonl", QA)
    retain = write_jsonl(tmp_path / "retain.jsonl", [{"question": "Other?", "answer": "Other."}, QA[2]])
    # both files and both 1-based line numbers
    with pytest.raises(DataError, match=rf"forget\.jsonl:3: this item is also in the retain set "
                                        rf"\({re.escape(str(retain))}:2\)"):
        load_user_task(forget, retain)
    retain = write_jsonl(tmp_path / "retain2.jsonl", [{"question": "Other?", "answer": "Other."}])
    holdout = write_jsonl(tmp_path / "holdout.jsonl", [{"question": "New?", "answer": "New."},
                                                       {"question": "Other?", "answer": "Other."}])
    with pytest.raises(DataError, match=r"holdout\.jsonl:2: this item is also in the retain set \(.*retain2\.jsonl:1\)"):
        load_user_task(forget, retain, holdout)
    bad = write_jsonl(tmp_path / "retain3.jsonl", [{"question": "Other?"}])
    with pytest.raises(DataError, match=r'retain3\.jsonl:1: field "answer" is missing'):
        load_user_task(forget, bad)
    with pytest.raises(DataError, match="no such file"):
        load_user_task(tmp_path / "absent.jsonl", retain)


def test_benchmark_registry():
    for name in ("world", "tofu", "custom"):
        assert isinstance(BENCHMARKS[name], str) and BENCHMARKS[name]
    assert "default" in BENCHMARKS["world"]


def test_unicode_line_separators_inside_strings(tmp_path):
    rows = [{"question": "Q\u2028one?", "answer": "A\u2029\x0bone.\r\n"}, {"text": "caf\u00e9 \u2028 two"}]
    path = tmp_path / "u.jsonl"
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n", encoding="utf-8")
    assert [r for _, r in read_records(path)] == rows
    csv_path = tmp_path / "u.csv"
    with csv_path.open("w", newline="", encoding="utf-8-sig") as f:  # with a BOM, as Excel writes
        w = csv.DictWriter(f, fieldnames=["question", "answer"])
        w.writeheader()
        w.writerow(rows[0])
        w.writerow({"question": "Two?", "answer": "Two."})
    # a quoted cell keeps its "\r\n"; the row after it starts two physical lines later
    assert read_records(csv_path) == [(2, rows[0]), (4, {"question": "Two?", "answer": "Two."})]
    old_mac = tmp_path / "cr.jsonl"
    old_mac.write_bytes(b'{"text": "one"}\r{"text": "two"}\r')
    assert read_records(old_mac) == [(1, {"text": "one"}), (2, {"text": "two"})]
