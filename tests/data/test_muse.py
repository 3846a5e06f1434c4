"""MUSE-News: loaders on the real published files, their errors, and the VerbMem / KnowMem /
PrivLeak metrics (pure parts on hand-made strings, model-running parts on the tiny model)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from obliviate.data.muse import (
    CORPUS_SEPARATOR,
    VerbMemItem,
    chunk_texts,
    load_muse,
    load_muse_probes,
    load_qa,
    load_texts,
    load_verbmem,
    raw_articles,
)
from obliviate.data.task import DataError, QAItem
from obliviate.metrics import muse as MM

DATA = Path(os.environ.get("OBLIVIATE_SHARED_DATA")
            or Path(__file__).resolve().parents[2].parent / "shared" / "data")
MUSE = DATA / "muse-news"
needs_muse = pytest.mark.skipif(not MUSE.is_dir(), reason=f"MUSE-News files not found at {MUSE}")


# ---------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def task():
    return load_muse(MUSE)


@pytest.fixture(scope="module")
def probes():
    return load_muse_probes(MUSE)


@needs_muse
def test_real_probes(probes):
    assert {k: len(v) for k, v in probes.items()} == {"verbmem": 100, "knowmem_forget": 100, "knowmem_retain": 100,
                                                      "icl_forget": 10, "icl_retain": 10}
    first = json.loads((MUSE / "knowmem/forget_qa.json").read_text())[0]
    assert probes["knowmem_forget"][0] == QAItem(question=first["question"], answer=first["answer"])
    assert probes["knowmem_forget"][0].answer == "1472"
    assert all(not it.is_text and it.question.strip() and it.answer.strip()
               for k in ("knowmem_forget", "knowmem_retain", "icl_forget", "icl_retain") for it in probes[k])
    vm = json.loads((MUSE / "verbmem/forget.json").read_text())
    assert probes["verbmem"][3] == VerbMemItem(prompt=vm[3]["prompt"], gt=vm[3]["gt"])


@needs_muse
def test_real_task(task):
    articles = raw_articles(MUSE)
    assert len(articles) == 889
    assert sum(1 for a in articles if not a.strip()) == 1  # the published file has one empty article
    assert len(task.forget) == 888
    assert all(it.is_text for it in task.forget + task.retain + task.forget_eval + task.holdout)
    assert task.forget[0].answer == articles[0] and task.forget[0].subject == "article_0"
    assert (len(task.retain), len(task.forget_eval), len(task.retain_eval), len(task.holdout)) == (100, 100, 100, 100)
    assert [it.answer for it in task.retain] == load_texts(MUSE / "privleak/retain2.json")
    assert [it.answer for it in task.holdout] == load_texts(MUSE / "privleak/holdout.json")
    # Every privleak forget text is a window of the articles joined as MUSE joined them.
    corpus = CORPUS_SEPARATOR.join(articles)  # the empty article included
    assert all(it.answer in corpus for it in task.forget_eval)
    assert not any(it.answer in corpus for it in task.holdout[:10])
    assert task.name == "muse_news" and len(task.fingerprint()) == 16


@needs_muse
def test_real_task_chunked(tiny_tokenizer):
    task = load_muse(MUSE, tiny_tokenizer, chunk_length=200)
    articles = raw_articles(MUSE)
    # Exact substrings of the corpus that give it back whole (no chunk is blank here).
    assert "".join(it.answer for it in task.forget) == CORPUS_SEPARATOR.join(articles)
    lengths = [len(tiny_tokenizer(it.answer, add_special_tokens=False)["input_ids"]) for it in task.forget[:50]]
    assert all(190 <= n <= 210 for n in lengths)
    assert task.forget[1].subject == "chunk_1"
    with pytest.raises(ValueError, match="tokenizer"):
        load_muse(MUSE, chunk_length=200)


def test_chunk_texts(tiny_tokenizer):
    texts = ["Question: who was born in the city? " * 20, "short", "   "]
    chunks = chunk_texts(tiny_tokenizer, texts, 16)
    n0 = len(tiny_tokenizer(texts[0], add_special_tokens=False)["input_ids"])
    assert len(chunks) == math.ceil(n0 / 16) + 1  # the blank text gives no chunk
    assert "".join(chunks[:-1]) == texts[0] and chunks[-1] == "short"
    with pytest.raises(ValueError):
        chunk_texts(tiny_tokenizer, texts, 0)


def test_missing_dir(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        load_muse(tmp_path / "nope")
    with pytest.raises(DataError, match="no such directory"):
        load_muse_probes(tmp_path / "nope")


@needs_muse
def test_bad_element_in_real_copy(tmp_path):
    copy = tmp_path / "muse-news"
    shutil.copytree(MUSE, copy)
    qa = copy / "knowmem/retain2_qa.json"
    qa.chmod(0o644)
    data = json.loads(qa.read_text())
    del data[37]["answer"]
    qa.write_text(json.dumps(data))
    with pytest.raises(DataError) as e:
        load_muse_probes(copy)
    assert str(e.value) == f'{qa}:37: field "answer" is missing'
    hold = copy / "privleak/holdout.json"
    hold.chmod(0o644)
    texts = json.loads(hold.read_text())
    texts[5] = 42
    hold.write_text(json.dumps(texts))
    with pytest.raises(DataError, match=r"holdout\.json:5: expected a string \(a text\), got a JSON number"):
        load_muse(copy)


def _write(tmp_path: Path, data, name: str = "f.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


@pytest.mark.parametrize("data, loader, message", [
    ([{"question": "q", "answer": "a"}, {"question": "q2"}], load_qa, ':1: field "answer" is missing'),
    ([{"question": "q", "answer": "a"}, {"question": "q2", "answer": 3}], load_qa,
     ':1: field "answer" must be a string, got a JSON number'),
    ([{"question": " ", "answer": "a"}], load_qa, ':0: field "question" is empty'),
    ([{"question": None, "answer": "a"}], load_qa, ':0: field "question" is null'),
    ([{"question": "q", "answer": "a"}, "text"], load_qa, ":1: expected a JSON object, got a JSON string"),
    ([{"prompt": "p", "gt": "g"}, {"prompt": "p"}], load_verbmem, ':1: field "gt" is missing'),
    (["a", "b", ""], load_texts, ":2: the text is empty"),
    (["a", ["b"]], load_texts, ":1: expected a string (a text), got a JSON array"),
    (["a", {"txt": "b"}], load_texts, ':1: field "text" is missing'),
    ({"question": "q", "answer": "a"}, load_qa, "expected a JSON array, got a JSON object"),
    ([], load_qa, "the file is empty"),
    ('[{"question": "q", "answer": "a"},\n oops]', load_qa, ":2: invalid JSON"),
])
def test_bad_records(tmp_path, data, loader, message):
    p = _write(tmp_path, data)
    with pytest.raises(DataError) as e:
        loader(p)
    assert str(e.value).startswith(str(p)) and message in str(e.value)


def test_text_records(tmp_path):
    p = _write(tmp_path, ["a", {"text": "b"}, ""])
    assert load_texts(p, allow_empty=True) == ["a", "b", ""]
    with pytest.raises(DataError, match="no such file"):
        load_texts(tmp_path / "missing.json")


# ---------------------------------------------------------------- pure functions


ICL = [QAItem(question="Who won?", answer="Ann"), ("Where?", "Paris")]


def test_knowmem_prompt():
    assert MM.icl_prefix(ICL) == "Question: Who won?\nAnswer: Ann\n\nQuestion: Where?\nAnswer: Paris\n\n"
    assert MM.knowmem_prompt("When?", ICL) == (
        "Question: Who won?\nAnswer: Ann\n\nQuestion: Where?\nAnswer: Paris\n\nQuestion: When?\nAnswer:")
    assert MM.knowmem_prompt("When?") == "Question: When?\nAnswer:"
    with pytest.raises(ValueError):
        MM.icl_prefix([QAItem(question=None, answer="text")])


@pytest.mark.parametrize("text, expected", [
    (" 1472\n\nQuestion: next?", "1472"),
    (" 1472 Question: next?", "1472"),
    (" 10 women and 10 men\nmore", "10 women and 10 men\nmore"),
    ("\n\n1472", ""),
    ("Question", ""),
    ("  plain  ", "plain"),
    ("", ""),
])
def test_cut_at_stop(text, expected):
    assert MM.cut_at_stop(text) == expected
    assert MM.cut_at_stop(MM.cut_at_stop(text)) == expected


def test_scores_on_given_generations():
    f1 = MM.knowmem_scores([" 1472\n\nQuestion: x", "the year 1472", "nothing", "10 women\n\nand 10 men"],
                           ["1472", "1472", "1472", "10 women and 10 men"])
    assert f1[0] == 1.0 and f1[2] == 0.0
    assert f1[1] == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))  # P = 1/3, R = 1
    assert f1[3] == pytest.approx(2 * 1 * 0.4 / 1.4)  # "10 women" vs 5 reference tokens
    vm = MM.verbmem_scores(["the cat sat on the mat", "dogs"], ["the cat sat on the mat", "the cat"])
    assert vm.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError):
        MM.verbmem_scores(["a"], ["a", "b"])


def test_privleak_from_aucs():
    assert MM.privleak_from_aucs(0.5, 0.5) == 0.0
    assert MM.privleak_from_aucs(1.0, 0.5) == pytest.approx(-100.0)  # members perfectly detectable: leaks
    assert MM.privleak_from_aucs(0.25, 0.5) == pytest.approx(50.0)  # over-unlearned
    assert math.isnan(MM.privleak_from_aucs(0.7, 1.0))


def test_fit_prompt():
    assert MM.fit_prompt([1, 5, 6, 7, 8], 10, keep=1) == [1, 5, 6, 7, 8]
    assert MM.fit_prompt([1, 5, 6, 7, 8], 3, keep=1) == [1, 7, 8]
    assert MM.fit_prompt([5, 6, 7, 8], 2) == [7, 8]
    with pytest.raises(ValueError):
        MM.fit_prompt([1, 5, 6], 1, keep=1)


# ---------------------------------------------------------------- on the tiny model


def test_run_verbmem_and_knowmem(tiny_model, tiny_tokenizer, small_world):
    ctx = MM.context_length(tiny_model)
    assert ctx == 256
    long_prompt = " ".join(it.question for it in small_world.retain) * 3  # far more than 256 tokens
    items = [VerbMemItem(prompt=long_prompt, gt=small_world.retain[0].answer),
             VerbMemItem(prompt=small_world.forget[0].question, gt=small_world.forget[0].answer)]
    assert len(tiny_tokenizer(long_prompt)["input_ids"]) > ctx
    res = MM.run_verbmem(tiny_model, tiny_tokenizer, items, max_new_tokens=8, batch_size=2)
    assert res.scores.shape == (2,) and np.all((res.scores >= 0) & (res.scores <= 1))
    assert len(res.generations) == 2 and all(isinstance(g, str) for g in res.generations)
    assert res.n_truncated == 1 and 0 <= res.mean <= 1

    qa = [QAItem(question=it.question, answer=it.answer) for it in small_world.forget[:3]]
    icl = [QAItem(question=it.question, answer=it.answer) for it in small_world.retain[:40]]
    res = MM.run_knowmem(tiny_model, tiny_tokenizer, qa, icl, max_new_tokens=6, batch_size=2)
    assert res.scores.shape == (3,) and np.all((res.scores >= 0) & (res.scores <= 1))
    assert res.n_truncated == 3  # 40 examples do not fit in 256 - 6 tokens
    assert all(g == MM.cut_at_stop(g) for g in res.generations)
    assert res.prompts[0].endswith(f"Question: {qa[0].question}\nAnswer:")
    # A short few-shot prompt fits and is not truncated; max_length lowers the limit.
    assert MM.run_knowmem(tiny_model, tiny_tokenizer, qa[:1], icl[:1], max_new_tokens=4).n_truncated == 0
    assert MM.run_knowmem(tiny_model, tiny_tokenizer, qa[:1], icl[:1], max_new_tokens=4, max_length=20).n_truncated == 1
    with pytest.raises(ValueError, match="cannot hold"):
        MM.run_verbmem(tiny_model, tiny_tokenizer, items, max_new_tokens=256)


def test_generate_texts_stay_in_context(tiny_model, tiny_tokenizer, small_world):
    calls = []
    generate = tiny_model.generate

    def spy(**kw):
        calls.append(kw["input_ids"].shape[1] + kw["max_new_tokens"])
        return generate(**kw)

    tiny_model.generate = spy
    prompts = [" ".join(it.answer for it in small_world.retain) * 4, "Question: where?"]
    gens, n_trunc = MM.generate_texts(tiny_model, tiny_tokenizer, prompts, max_new_tokens=40, max_length=64)
    assert n_trunc == 1 and len(gens) == 2 and calls and max(calls) <= 64


def test_run_privleak(tiny_model, trained_model, tiny_tokenizer, small_world):
    forget = [f"{it.question} {it.answer}" for it in small_world.forget[:4]]
    holdout = [f"{it.question} {it.answer}" for it in small_world.holdout[:4]]
    long_text = " ".join(forget) * 20  # longer than the 256-token context: right-truncated
    scores = MM.min_k_text_scores(trained_model, tiny_tokenizer, forget + [long_text], batch_size=2)
    assert scores.shape == (5,) and np.all(np.isfinite(scores)) and np.all(scores >= 0)
    oracle = MM.privleak_auc(tiny_model, tiny_tokenizer, forget, holdout)
    assert 0 <= oracle["auc"] <= 1 and oracle["forget_scores"].shape == (4,)
    res = MM.run_privleak(trained_model, tiny_tokenizer, forget, holdout, auc_oracle=oracle["auc"])
    assert 0 <= res["auc"] <= 1
    assert res["privleak"] == pytest.approx(MM.privleak_from_aucs(res["auc"], oracle["auc"]), nan_ok=True)
    same = MM.run_privleak(trained_model, tiny_tokenizer, forget, holdout, oracle=tiny_model)
    assert same["auc_oracle"] == pytest.approx(oracle["auc"])
    none = MM.run_privleak(trained_model, tiny_tokenizer, forget, holdout)
    assert math.isnan(none["privleak"]) and math.isnan(none["auc_oracle"])
