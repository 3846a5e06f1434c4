"""SemEval-2025 Task 4: the loader on hand-made fixture files in the published layout, its errors,
and the scoring on hand-computed numbers."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path

import pytest

from obliviate.data.semeval import (
    KNOWLEDGE,
    REGURGITATION,
    SemEvalTask,
    canonical_task,
    document_id,
    item_kind,
    load_semeval,
)
from obliviate.data.task import DataError, ForgetTask
from obliviate.metrics.semeval import (
    MMLU_THRESHOLD_7B,
    harmonic_mean,
    item_scores,
    knowledge_match,
    mia_score,
    semeval_scores,
    semeval_scores_from_generations,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "semeval"
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
SPLIT_FILES = ("forget_train", "forget_validation", "retain_train", "retain_validation")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _copy(tmp_path: Path) -> Path:
    d = tmp_path / "semeval"
    shutil.copytree(FIXTURE, d)
    return d


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# --- ids ------------------------------------------------------------------------------------


def test_item_kind_and_document_id():
    assert item_kind("a3f0-11d2sc1") == REGURGITATION
    assert item_kind("a3f0-11d2qa0") == KNOWLEDGE
    assert item_kind("a3f0-11d2sc") == REGURGITATION  # no digit: still sentence completion
    assert item_kind("a3f0-11d2sc12") == REGURGITATION
    assert item_kind("a3f0-11d2") is None
    assert item_kind("disc") == REGURGITATION and item_kind("xyz1") is None
    assert document_id("a3f0-11d2sc1") == document_id("a3f0-11d2qa0") == "a3f0-11d2"
    assert document_id("plain-id") == "plain-id"
    assert [canonical_task(s) for s in ("Task1", "task2", "Task 3", "TASK_1", "Task4", "x")] == \
        ["Task1", "Task2", "Task3", "Task1", None, None]


# --- the loader -----------------------------------------------------------------------------


def test_load_counts_and_mapping():
    task = load_semeval(FIXTURE)
    assert isinstance(task, ForgetTask) and isinstance(task, SemEvalTask)
    assert task.name == "semeval25"
    sizes = {k: len(getattr(task, k)) for k in ("forget", "retain", "forget_eval", "retain_eval", "holdout",
                                                "mia_member")}
    assert sizes == {"forget": 6, "retain": 6, "forget_eval": 4, "retain_eval": 4, "holdout": 3, "mia_member": 3}
    assert task.sources["forget_eval"][0].endswith("forget_validation.jsonl")

    raw = _lines(FIXTURE / "forget_train.jsonl")
    for rec, item, r in zip(raw, task.forget, task.records["forget"], strict=True):
        assert item.question == rec["input"] and item.answer == rec["output"]
        assert item.subject == f"{rec['task']}/{rec['id'][:-3]}"
        assert (r.id, r.task, r.split, r.item) == (rec["id"], rec["task"], "forget", item)
        assert r.kind == (REGURGITATION if rec["id"][-3:-1] == "sc" else KNOWLEDGE)
    assert task.labels("forget") == [("Task1", REGURGITATION), ("Task1", KNOWLEDGE), ("Task2", REGURGITATION),
                                     ("Task2", KNOWLEDGE), ("Task3", REGURGITATION), ("Task3", KNOWLEDGE)]
    # sc and qa items of one document share a subject (recovery attacks split by it)
    assert task.forget[0].subject == task.forget[1].subject != task.forget[2].subject
    assert {r.task for r in task.records["retain"]} == {"Task1", "Task2", "Task3"}
    assert task.holdout[0].question == _lines(FIXTURE / "mia_data" / "nonmember.jsonl")[0]["input"]
    assert [r.kind for r in task.records["holdout"]] == [None, None, None]
    assert len(task.fingerprint()) == 16 and task.fingerprint() == load_semeval(FIXTURE).fingerprint()


def test_eval_falls_back_to_train_without_validation(tmp_path):
    d = _copy(tmp_path)
    (d / "forget_validation.jsonl").unlink()
    task = load_semeval(d)
    assert task.forget_eval == task.forget and len(task.retain_eval) == 4
    assert task.sources["forget_eval"] == task.sources["forget"]
    assert load_semeval(FIXTURE, eval_fold="train").retain_eval == load_semeval(FIXTURE).retain
    with pytest.raises(DataError, match="no forget_validation file"):
        load_semeval(d, eval_fold="validation")


def test_no_mia_dir_and_hub_layout(tmp_path):
    d = _copy(tmp_path)
    shutil.rmtree(d / "mia_data")
    task = load_semeval(d)
    assert task.holdout == [] and task.mia_member == []
    # The Hub snapshot layout: split files under data/, mia_data/ beside it.
    hub = tmp_path / "hub"
    (hub / "data").mkdir(parents=True)
    for name in SPLIT_FILES:
        shutil.copy(FIXTURE / f"{name}.jsonl", hub / "data")
    shutil.copytree(FIXTURE / "mia_data", hub / "mia_data")
    for root in (hub, hub / "data"):
        t = load_semeval(root)
        assert (len(t.forget), len(t.holdout), len(t.mia_member)) == (6, 3, 3)


def test_tasks_filter():
    task = load_semeval(FIXTURE, tasks=["task2"])
    assert task.name == "semeval25_task2"
    assert {r.task for name in ("forget", "retain", "forget_eval", "retain_eval", "holdout")
            for r in task.records[name]} == {"Task2"}
    assert (len(task.forget), len(task.retain), len(task.holdout)) == (2, 2, 1)
    with pytest.raises(DataError, match="valid tasks are Task1, Task2, Task3"):
        load_semeval(FIXTURE, tasks=["Task9"])


def test_mia_document_records(tmp_path):
    d = _copy(tmp_path)
    _write(d / "mia_data" / "nonmember.jsonl", [{"id": "doc-9", "document": "An unseen document."},
                                                 {"id": "doc-10", "document": "Another one.", "task": "Task3"}])
    task = load_semeval(d)
    assert [it.is_text for it in task.holdout] == [True, True]
    assert [it.subject for it in task.holdout] == ["doc-9", "Task3/doc-10"]
    _write(d / "mia_data" / "nonmember.jsonl", [{"id": "doc-9"}])
    with pytest.raises(DataError, match=r'nonmember\.jsonl:1: field "document" is missing'):
        load_semeval(d)
    (d / "mia_data" / "nonmember.jsonl").unlink()
    with pytest.raises(DataError, match=r"no nonmember\.jsonl"):
        load_semeval(d)


GOOD = {"id": "77aa-bbsc1", "input": "Once upon a time", "output": " there was a fox.", "task": "Task1",
        "split": "forget"}


@pytest.mark.parametrize("bad, message", [
    ({k: v for k, v in GOOD.items() if k != "output"}, 'field "output" is missing'),
    ({k: v for k, v in GOOD.items() if k != "id"}, 'field "id" is missing'),
    ({**GOOD, "input": None}, 'field "input" is null'),
    ({**GOOD, "input": "  "}, 'field "input" is empty'),
    ({**GOOD, "output": 7}, 'field "output" must be a string, got a number'),
    ({**GOOD, "task": "Task4"}, 'field "task" must be one of Task1, Task2, Task3'),
    ({**GOOD, "id": "77aa-bb1"}, 'field "id" must end in "sc<n>"'),
    ({**GOOD, "split": "retain"}, "field \"split\" is 'retain' in a forget file"),
    ({**GOOD, "split": "train"}, 'field "split" must be "forget" or "retain"'),
])
def test_bad_record_names_file_line_field(tmp_path, bad, message):
    d = _copy(tmp_path)
    recs = _lines(d / "forget_train.jsonl")
    recs.insert(2, bad)
    _write(d / "forget_train.jsonl", recs)
    with pytest.raises(DataError) as e:
        load_semeval(d)
    assert str(e.value).startswith(f"{d / 'forget_train.jsonl'}:3: ")
    assert message in str(e.value)


def test_file_level_errors(tmp_path):
    d = _copy(tmp_path)
    with (d / "retain_validation.jsonl").open("a") as f:
        f.write("{not json\n")
    with pytest.raises(DataError, match=r"retain_validation\.jsonl:5: invalid JSON"):
        load_semeval(d)

    d = _copy(tmp_path / "dup")
    recs = _lines(d / "retain_train.jsonl")
    _write(d / "retain_train.jsonl", recs + [recs[0]])
    with pytest.raises(DataError, match=r'retain_train\.jsonl:7: field "id" .* already given at .*retain_train\.jsonl:1'):
        load_semeval(d)

    # an id in both the forget and the retain data
    _write(d / "retain_train.jsonl", recs + [{**_lines(d / "forget_train.jsonl")[0], "split": "retain",
                                              "output": " something else."}])
    with pytest.raises(DataError, match=r"retain_train\.jsonl:7: .* also in the forget data"):
        load_semeval(d)

    d = _copy(tmp_path / "missing")
    (d / "retain_train.jsonl").unlink()
    with pytest.raises(DataError, match="no retain_train file"):
        load_semeval(d)
    with pytest.raises(DataError, match="no such directory"):
        load_semeval(tmp_path / "nowhere")

    d = _copy(tmp_path / "both")
    (d / "forget_train-00000-of-00001.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match="given twice"):
        load_semeval(d)


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    d = _copy(tmp_path)
    (d / "forget_train.jsonl").unlink()
    (d / "forget_train-00000-of-00001.parquet").write_bytes(b"PAR1")
    for mod in ("pyarrow", "pyarrow.parquet", "pandas"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes `import mod` raise ImportError
    with pytest.raises(DataError, match=r"forget_train-00000-of-00001\.parquet: .*pip install pyarrow"):
        load_semeval(d)


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed")
def test_parquet_round_trip(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "pq"
    (d / "data").mkdir(parents=True)
    for name in SPLIT_FILES:
        pq.write_table(pa.Table.from_pylist(_lines(FIXTURE / f"{name}.jsonl")),
                       d / "data" / f"{name}-00000-of-00001.parquet")
    shutil.copytree(FIXTURE / "mia_data", d / "mia_data")
    a, b = load_semeval(d), load_semeval(FIXTURE)
    for name in ("forget", "retain", "forget_eval", "retain_eval", "holdout", "mia_member"):
        assert getattr(a, name) == getattr(b, name)
        assert a.labels(name) == b.labels(name)
    assert a.fingerprint() == b.fingerprint()
    # a bad row names the file, the row and the field
    recs = _lines(FIXTURE / "retain_train.jsonl")
    recs[1] = {**recs[1], "task": "Task7"}
    pq.write_table(pa.Table.from_pylist(recs), d / "data" / "retain_train-00000-of-00001.parquet")
    with pytest.raises(DataError, match=r'retain_train-00000-of-00001\.parquet: row 2: field "task"'):
        load_semeval(d)


# --- scoring --------------------------------------------------------------------------------


def test_harmonic_mean_by_hand():
    assert harmonic_mean([0.5, 1.0, 0.25]) == pytest.approx(3 / (2 + 1 + 4))
    assert harmonic_mean([0.8] * 12) == pytest.approx(0.8)
    assert harmonic_mean([0.9, 0.0, 0.7]) == 0.0  # a zero term: harmonic mean 0
    assert math.isnan(harmonic_mean([]))
    with pytest.raises(ValueError):
        harmonic_mean([0.5, -0.1])
    with pytest.raises(ValueError):
        harmonic_mean([0.5, float("nan")])


def test_mia_score():
    assert mia_score(0.5) == 1.0
    assert mia_score(1.0) == 0.0
    assert mia_score(0.0) == 0.0
    assert mia_score(0.75) == pytest.approx(0.5) and mia_score(0.25) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mia_score(1.2)


# Per-cell values chosen by hand: forget cells (T1 reg, T1 kn, T2 reg, T2 kn, T3 reg, T3 kn).
FORGET = [("Task1", REGURGITATION, 0.25), ("Task1", REGURGITATION, 0.75), ("Task1", KNOWLEDGE, 0.0),
          ("Task2", REGURGITATION, 0.75), ("Task2", KNOWLEDGE, 1.0), ("Task2", KNOWLEDGE, 0.0),
          ("Task3", REGURGITATION, 0.0), ("Task3", KNOWLEDGE, 0.5)]
RETAIN = [("Task1", REGURGITATION, 1.0), ("Task1", KNOWLEDGE, 0.5), ("Task2", REGURGITATION, 1.0),
          ("Task2", KNOWLEDGE, 0.0), ("Task2", KNOWLEDGE, 0.5), ("Task3", REGURGITATION, 0.5),
          ("Task3", KNOWLEDGE, 1.0)]


def test_task_aggregate_with_forget_inversion():
    s = semeval_scores(FORGET, RETAIN)
    # forget cell means 0.5, 0, 0.75, 0.5, 0, 0.5 -> terms 1 - x = 0.5, 1, 0.25, 0.5, 1, 0.5 (1/x sum 12)
    # retain cell means 1, 0.5, 1, 0.25, 0.5, 1 -> terms as they are (1/x sum 1+2+1+4+2+1 = 11)
    assert s["cells"]["forget"]["Task1"] == {REGURGITATION: 0.5, KNOWLEDGE: 0.0}
    assert s["counts"]["forget"]["Task2"] == {REGURGITATION: 1, KNOWLEDGE: 2}
    assert s["terms"]["forget/Task2/regurgitation"] == pytest.approx(0.25)
    assert s["terms"]["retain/Task2/knowledge"] == pytest.approx(0.25)
    assert len(s["terms"]) == 12 and s["missing"] == []
    assert s["task_aggregate"] == pytest.approx(12 / 23)
    assert s["overall"]["forget"][REGURGITATION] == pytest.approx((0.25 + 0.75 + 0.75 + 0.0) / 4)
    # no MIA, no MMLU: final is the task aggregate alone, and not the challenge's final score
    assert s["final"] == s["task_aggregate"] and s["final_components"] == ["task_aggregate"]
    assert s["mia_score"] is None and s["mmlu"] is None and s["complete"] is False
    json.dumps(s)  # JSON-ready


def test_final_score_with_mia_and_mmlu():
    s = semeval_scores(FORGET, RETAIN, auc=0.75, mmlu=0.4, mmlu_threshold=MMLU_THRESHOLD_7B)
    assert s["mia_score"] == pytest.approx(0.5)
    assert s["final"] == pytest.approx((12 / 23 + 0.5 + 0.4) / 3)
    assert s["final_components"] == ["task_aggregate", "mia_score", "mmlu"] and s["complete"] is True
    assert s["mmlu_below_threshold"] is False
    assert semeval_scores(FORGET, RETAIN, mmlu=0.3, mmlu_threshold=0.371)["mmlu_below_threshold"] is True
    # MIA from losses: members all lower loss than non-members -> AUC 1 -> score 0
    s = semeval_scores(FORGET, RETAIN, member_loss=[0.1, 0.2], nonmember_loss=[1.0, 2.0])
    assert s["mia_auc"] == 1.0 and s["mia_score"] == 0.0
    assert s["final"] == pytest.approx((12 / 23 + 0.0) / 2)
    # members all higher loss -> AUC 0 -> score 0; indistinguishable -> AUC 0.5 -> score 1
    assert semeval_scores(FORGET, RETAIN, member_loss=[3.0, 4.0], nonmember_loss=[1.0, 2.0])["mia_score"] == 0.0
    assert semeval_scores(FORGET, RETAIN, member_loss=[1.0, 2.0], nonmember_loss=[1.0, 2.0])["mia_score"] == 1.0
    with pytest.raises(ValueError, match="not both"):
        semeval_scores(FORGET, RETAIN, auc=0.5, member_loss=[1.0], nonmember_loss=[2.0])
    with pytest.raises(ValueError, match="MMLU"):
        semeval_scores(FORGET, RETAIN, mmlu=1.5)


def test_zero_term_gives_zero_aggregate():
    # the forget Task1 regurgitation cell fully regurgitated: term 1 - 1 = 0
    forget = [t for t in FORGET if t[:2] != ("Task1", REGURGITATION)] + [("Task1", REGURGITATION, 1.0)]
    s = semeval_scores(forget, RETAIN, auc=0.5, mmlu=0.6)
    assert s["terms"]["forget/Task1/regurgitation"] == 0.0
    assert s["task_aggregate"] == 0.0
    assert s["final"] == pytest.approx((0.0 + 1.0 + 0.6) / 3)


def test_missing_cells_are_recorded_and_left_out():
    forget = [t for t in FORGET if t[0] != "Task3"]
    retain = [t for t in RETAIN if t[0] != "Task3"] + [("Task3", REGURGITATION, 0.5)]
    s = semeval_scores(forget, retain)
    assert s["missing"] == ["forget/Task3/regurgitation", "forget/Task3/knowledge", "retain/Task3/knowledge"]
    assert s["cells"]["forget"]["Task3"] == {REGURGITATION: None, KNOWLEDGE: None}
    assert s["counts"]["retain"]["Task3"][KNOWLEDGE] == 0
    # terms left: forget 0.5, 1, 0.25, 0.5 (1/x: 2+1+4+2 = 9); retain 1, 0.5, 1, 0.25, 0.5 (1+2+1+4+2 = 10)
    assert len(s["terms"]) == 9
    assert s["task_aggregate"] == pytest.approx(9 / 19)
    assert s["complete"] is False
    with pytest.raises(ValueError, match="no forget or retain item"):
        semeval_scores([], [])
    with pytest.raises(ValueError, match="not in"):
        semeval_scores([("Task1", REGURGITATION, 1.5)], [])
    with pytest.raises(ValueError, match="kind"):
        semeval_scores([("Task1", "other", 0.5)], [])


def test_knowledge_match_and_item_scores():
    assert knowledge_match(["  Paris \n", "paris.", "The Tallow"], ["paris", "Paris", "the tallow"]).tolist() == \
        [1.0, 0.0, 1.0]
    assert knowledge_match(["paris.", "Tallow"], ["Paris", "The Tallow"], match="squad").tolist() == [1.0, 1.0]
    with pytest.raises(ValueError):
        knowledge_match(["a"], ["a"], match="fuzzy")
    v = item_scores([REGURGITATION, KNOWLEDGE, REGURGITATION],
                    ["a map drawn in silver ink", "A map", "nothing"],
                    ["a map drawn in silver ink.", "a map", "a map drawn in silver ink"])
    assert v.tolist() == [1.0, 1.0, 0.0]
    # ROUGE-L recall: 3 of the reference's 6 tokens in order
    assert item_scores([REGURGITATION], ["a map in"], ["a map drawn in silver ink"])[0] == pytest.approx(0.5)


def test_scores_from_generations_on_fixture():
    task = load_semeval(FIXTURE, eval_fold="train")
    # a perfect unlearner: says nothing about the forget set, reproduces the retain set exactly
    s = semeval_scores_from_generations(task, [""] * len(task.forget_eval),
                                        [it.answer for it in task.retain_eval], auc=0.5, mmlu=0.5)
    assert s["per_item"] == {"forget": [0.0] * 6, "retain": [1.0] * 6}
    assert s["missing"] == [] and s["task_aggregate"] == 1.0
    assert s["final"] == pytest.approx((1.0 + 1.0 + 0.5) / 3) and s["complete"] is True
    # the validation folds of the fixture lack some cells (forget Task3, retain Task1)
    val = load_semeval(FIXTURE)
    s = semeval_scores_from_generations(val, [it.answer for it in val.forget_eval],
                                        [it.answer for it in val.retain_eval])
    assert s["task_aggregate"] == 0.0  # the forget set fully regurgitated
    assert sorted(s["missing"]) == ["forget/Task3/knowledge", "forget/Task3/regurgitation",
                                    "retain/Task1/knowledge", "retain/Task1/regurgitation"]
    with pytest.raises(ValueError, match="4 forget_eval items"):
        semeval_scores_from_generations(val, ["x"], ["y"] * 4)
