"""The TOFU loader, on the real published files (the copy obliviate ships, checked against
shared/data/tofu, a sibling of the repository, when it is there)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from obliviate.data.jsonl import read_records
from obliviate.data.task import DataError
from obliviate.data.tofu import TOFU_SPLITS, load_tofu, packaged_tofu_dir, tofu_corpus, tofu_full

TOFU_DIR = packaged_tofu_dir()
SHARED_TOFU = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tofu"


@pytest.mark.skipif(not SHARED_TOFU.is_dir(), reason=f"no shared data at {SHARED_TOFU}")
def test_packaged_copy_is_the_published_files():
    shipped = sorted(p.name for p in TOFU_DIR.iterdir())
    assert "LICENSE_locuslab_tofu_MIT" in shipped and "full.json" in shipped
    for name in shipped:
        assert (TOFU_DIR / name).read_bytes() == (SHARED_TOFU / name).read_bytes(), name


def test_default_data_dir_is_the_packaged_copy():
    assert [(it.question, it.subject) for it in load_tofu(split="forget01").forget] == \
        [(it.question, it.subject) for it in load_tofu(TOFU_DIR, "forget01").forget]
    corpus = tofu_corpus()
    full = tofu_full()
    assert len(full) == 4000 and full[0].question in corpus and full[-1].answer in corpus

# split -> (forget items, retain items, forget authors, retain authors)
SIZES = {"forget01": (40, 3960, 2, 198), "forget05": (200, 3800, 10, 190), "forget10": (400, 3600, 20, 180)}


@pytest.fixture(scope="module")
def full():
    return tofu_full(TOFU_DIR)


@pytest.fixture(scope="module")
def tasks():
    return {split: load_tofu(TOFU_DIR, split) for split in TOFU_SPLITS}


def qa(items):
    return [(it.question, it.answer) for it in items]


def test_full(full):
    assert len(full) == 4000
    subjects = Counter(it.subject for it in full)
    assert len(subjects) == 200 and set(subjects.values()) == {20}
    assert full[0].subject == "author_0" and full[19].subject == "author_0" and full[20].subject == "author_1"
    assert full[-1].subject == "author_199"
    assert full[0].question.startswith("Who is this celebrated LGBTQ+ author from Santiago, Chile")
    assert len(set(qa(full))) == 4000
    # One question text appears twice in full.json with different answers (two authors):
    # items are told apart by (question, answer), never by the question alone.
    dup = [q for q, n in Counter(it.question for it in full).items() if n > 1]
    assert dup == ["What is the full name of the author?"]


@pytest.mark.parametrize("split", list(TOFU_SPLITS))
def test_split_sizes_and_partition(tasks, full, split):
    task = tasks[split]
    n_forget, n_retain, a_forget, a_retain = SIZES[split]
    assert task.name == f"tofu_{split}"
    assert len(task.forget) == n_forget and len(task.retain) == n_retain
    # disjoint, and together exactly full.json: retain its head, forget its tail
    assert not set(qa(task.forget)) & set(qa(task.retain))
    assert qa(task.retain) + qa(task.forget) == qa(full)
    assert task.retain + task.forget == full  # subjects match full.json's too
    assert len({it.subject for it in task.forget}) == a_forget
    assert len({it.subject for it in task.retain}) == a_retain
    assert task.forget[0].subject == f"author_{200 - a_forget}"
    # forget_eval: the forget items, each with paraphrases and 5 perturbed answers
    assert qa(task.forget_eval) == qa(task.forget)
    assert [it.subject for it in task.forget_eval] == [it.subject for it in task.forget]
    for it in task.forget_eval:
        assert len(it.perturbed_answers) == 5
        assert it.paraphrased_question and it.paraphrased_answer
        assert it.answer not in it.perturbed_answers
    assert len(task.holdout) == n_forget
    assert len({it.subject for it in task.holdout}) == a_forget
    assert not set(qa(task.holdout)) & set(qa(full))  # never trained on
    task.validate()


def test_forget10_details(tasks):
    task = tasks["forget10"]
    assert task.forget[0].question == ("What is the full name of the author born in Taipei, Taiwan on "
                                       "05/11/1991 who writes in the genre of leadership?")
    assert task.forget_eval[0].paraphrased_answer == "Hsiao Yun-Hwa is the complete name of the writer."
    assert task.forget_eval[0].perturbed_answers[0] == "Chen Jing-Li is the complete name of the writer."
    assert len({it.subject for it in task.forget}) == 20
    assert len({it.subject for it in task.retain}) == 180


def test_retain_eval_and_utility(tasks, full):
    for task in tasks.values():
        assert len(task.retain_eval) == 400
        # retain_perturbed.json is the first 400 rows of full.json (authors 0-19), inside every retain split
        assert qa(task.retain_eval) == qa(full[:400])
        assert {it.subject for it in task.retain_eval} == {f"author_{k}" for k in range(20)}
        assert all(len(it.perturbed_answers) == 5 and it.paraphrased_answer for it in task.retain_eval)
        assert set(qa(task.retain_eval)) <= set(qa(task.retain))
    task = tasks["forget10"]
    assert set(task.utility) == {"real_authors", "world_facts"}
    assert len(task.utility["real_authors"]) == 100 and len(task.utility["world_facts"]) == 117
    for items in task.utility.values():
        for it in items:
            assert len(it.perturbed_answers) == 3 and it.answer not in it.perturbed_answers
            assert it.paraphrased_answer is None and it.paraphrased_question is None
    first = task.utility["real_authors"][0]
    assert (first.question, first.answer) == ("Who wrote the play 'Romeo and Juliet'?", "William Shakespeare")
    assert first.perturbed_answers == ("Charles Dickens", "Virginia Woolf", "Mark Twain")
    assert set(task.eval_sets()) == {"forget", "retain", "holdout", "utility_real_authors", "utility_world_facts"}


def test_file_row_counts():
    counts = {"full": 4000, "forget10": 400, "retain90": 3600, "retain_perturbed": 400, "holdout10": 400,
              "real_authors_perturbed": 100, "world_facts_perturbed": 117, "forget10_perturbed": 400}
    for stem, n in counts.items():
        assert len(read_records(TOFU_DIR / f"{stem}.json")) == n, stem


@pytest.mark.parametrize("split, authors, n_forget_authors", [
    ("forget10", 20, 2), ("forget10", 5, 1), ("forget10", 180, 18), ("forget10", 1000, 20),
    ("forget05", 20, 1), ("forget05", 30, 2), ("forget01", 150, 2),
])
def test_reduced_tofu(tasks, split, authors, n_forget_authors):
    task = load_tofu(TOFU_DIR, split, authors=authors)
    full_task = tasks[split]
    n_retain_authors = min(authors, SIZES[split][3])
    assert task.name == f"tofu_{split}_a{authors}"
    assert len(task.forget) == 20 * n_forget_authors
    assert len(task.retain) == 20 * n_retain_authors
    # the first authors of each set, in order
    assert task.forget == full_task.forget[:len(task.forget)]
    assert task.retain == full_task.retain[:len(task.retain)]
    assert task.forget_eval == full_task.forget_eval[:len(task.forget)]
    assert len(task.retain_eval) == 20 * min(n_retain_authors, 20)
    assert {it.subject for it in task.retain_eval} <= {it.subject for it in task.retain}
    assert task.holdout == full_task.holdout[:len(task.forget)]
    assert task.utility == full_task.utility


def test_reduced_forget10_authors_20(tasks):
    task = load_tofu(TOFU_DIR, "forget10", authors=20)
    assert (len(task.forget), len(task.retain), len(task.forget_eval), len(task.retain_eval), len(task.holdout)) \
        == (40, 400, 40, 400, 40)
    assert {it.subject for it in task.forget} == {"author_180", "author_181"}
    assert task.fingerprint() != tasks["forget10"].fingerprint()


def test_bad_arguments():
    with pytest.raises(DataError, match="forget01, forget05, forget10"):
        load_tofu(TOFU_DIR, "forget20")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(DataError, match="authors"):
            load_tofu(TOFU_DIR, "forget10", authors=bad)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(DataError, match=r"full\.json: no such file .*locuslab/TOFU layout"):
        load_tofu(tmp_path)
    for name in ("full.json", "forget10.json", "retain90.json"):
        shutil.copy(TOFU_DIR / name, tmp_path / name)
    with pytest.raises(DataError, match=r"forget10_perturbed\.json: no such file"):
        load_tofu(tmp_path)
    # a forget item that is not in full.json
    lines = (TOFU_DIR / "forget10.json").read_text().splitlines()
    lines[16] = '{"question": "Who is Nobody?", "answer": "Nobody is nobody."}'
    (tmp_path / "forget10.json").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"forget10\.json:17: .*not in full\.json"):
        load_tofu(tmp_path)
    # a malformed line and a missing field, reported as file:line
    lines[16] = '{"question": "Who is Nobody?", '
    (tmp_path / "forget10.json").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"forget10\.json:17: invalid JSON"):
        load_tofu(tmp_path)
    lines[16] = '{"question": "Who is Nobody?"}'
    (tmp_path / "forget10.json").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r'forget10\.json:17: field "answer" is missing'):
        load_tofu(tmp_path)
    # a truncated full.json
    full_lines = (TOFU_DIR / "full.json").read_text().splitlines()
    (tmp_path / "full.json").write_text("\n".join(full_lines[:-3]) + "\n")
    with pytest.raises(DataError, match=r"full\.json: 3997 rows"):
        tofu_full(tmp_path)
