"""RWKU loader and metrics on a made-up three-person fixture (tests/fixtures/rwku, per-subject
directories as in RWKU's `Target/`: 1_Maren_Holloway as JSON arrays with `subject`, 2_Tobias_Vennick
as JSON Lines with `subject`, 3_Ilse_Corrado as JSON Lines without it and an empty `[]` set)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from obliviate.data.jsonl import read_records
from obliviate.data.rwku import (
    ALL_SETS,
    MIA_SETS,
    PROBE_SETS,
    RWKUProbe,
    load_rwku,
    load_rwku_probes,
    read_rwku,
    rwku_subjects,
    subject_from_name,
)
from obliviate.data.task import DataError, QAItem
from obliviate.metrics.rwku import (
    by_type,
    evaluate_rwku,
    first_line,
    mia_aucs,
    probe_scores,
    rwku_prompt,
    rwku_scores,
    type_slug,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "rwku"
MAREN, TOBIAS, ILSE = "Maren Holloway", "Tobias Vennick", "Ilse Corrado"
# Per subject: passage, L1, L2, L3, N1, N2, forget_mia, retain_mia.
COUNTS = {MAREN: (2, 3, 3, 4, 2, 2, 2, 2), TOBIAS: (2, 2, 3, 3, 2, 2, 2, 2), ILSE: (1, 2, 2, 2, 0, 2, 1, 1)}
ORDER = ("passage", "forget_level1", "forget_level2", "forget_level3", "neighbor_level1", "neighbor_level2",
         "forget_mia", "retain_mia")


def _count(subject: str, name: str) -> int:
    return COUNTS[subject][ORDER.index(name)]


def _flat_copy(dst: Path, drop_subject_at: tuple[str, int] | None = None) -> Path:
    """The fixture as RWKU's `All/` layout: one JSON Lines file per set, every record with `subject`."""
    dst.mkdir()
    sets = read_rwku(FIXTURE)
    for name in ALL_SETS:
        with (dst / f"{name}.jsonl").open("w") as f:
            for i, it in enumerate(sets[name]):
                rec = {"subject": it.subject}
                if it.is_text:
                    rec["text"] = it.answer
                else:
                    rec |= {"query": it.question, "answer": it.answer}
                    if it.probe_type:
                        rec["type"] = it.probe_type
                    if it.neighbor:
                        rec["neighbor"] = it.neighbor
                if drop_subject_at == (name, i):
                    del rec["subject"]
                f.write(json.dumps(rec) + "\n")
    return dst


# ---------------------------------------------------------------- loader


def test_probe_counts_and_field_mapping():
    probes = load_rwku_probes(FIXTURE, [MAREN])
    assert set(probes) == {*PROBE_SETS, *MIA_SETS}
    for name in (*PROBE_SETS, *MIA_SETS):
        assert len(probes[name]) == _count(MAREN, name), name
        assert all(it.subject == MAREN for it in probes[name])
    cloze = probes["forget_level1"][0]
    assert isinstance(cloze, RWKUProbe) and isinstance(cloze, QAItem)
    assert cloze.question == "Maren Holloway was born in the harbour town of ___."
    assert cloze.answer == cloze.keyword == "Kessbridge"
    assert cloze.probe_type is None
    l3 = probes["forget_level3"]
    assert [it.probe_type for it in l3] == ["prefix injection", "affirmative suffix", "incontext learning",
                                           "multiple choice"]
    assert probes["neighbor_level2"][0].neighbor == "Pell Aduro"
    assert probes["forget_mia"][0].is_text and probes["forget_mia"][0].subject == MAREN


def test_subject_from_directory_name_and_integer_answer():
    assert subject_from_name("10_Prince_Harry,_Duke_of_Sussex") == "Prince Harry, Duke of Sussex"
    assert subject_from_name("Stephen_King") == "Stephen King"
    assert rwku_subjects(FIXTURE) == [MAREN, TOBIAS, ILSE]
    ilse = load_rwku_probes(FIXTURE, ILSE)  # her records carry no subject: the directory names her
    assert len(ilse["forget_level2"]) == 2 and ilse["neighbor_level1"] == []  # "[]" is an empty set
    tobias = load_rwku_probes(FIXTURE, TOBIAS)
    assert tobias["forget_level2"][0].answer == "1931"  # an integer year, read as text
    assert tobias["neighbor_level1"][0].neighbor == "Arnholt"


def test_subject_selection():
    both = load_rwku_probes(FIXTURE, ["tobias_vennick", "ILSE  corrado", TOBIAS])  # case, "_", repeats
    assert len(both["forget_level2"]) == _count(TOBIAS, "forget_level2") + _count(ILSE, "forget_level2")
    assert {it.subject for it in both["forget_level3"]} == {TOBIAS, ILSE}
    with pytest.raises(DataError, match=r"unknown RWKU subject 'Maren Hollowy'.*did you mean 'Maren Holloway'"
                                        r".*available: 'Maren Holloway', 'Tobias Vennick', 'Ilse Corrado'"):
        load_rwku_probes(FIXTURE, ["Maren Hollowy"])
    with pytest.raises(DataError, match="no subject selected"):
        load_rwku(FIXTURE, [])


def test_load_rwku_task():
    task = load_rwku(FIXTURE, [MAREN])
    assert task.name == "rwku_maren_holloway"
    assert len(task.forget) == 2 and all(it.is_text and it.subject == MAREN for it in task.forget)
    assert task.forget[0].answer.startswith("Maren Holloway is a novelist")
    # retain: the other subjects' passages
    assert len(task.retain) == _count(TOBIAS, "passage") + _count(ILSE, "passage")
    assert {it.subject for it in task.retain} == {TOBIAS, ILSE}
    assert [it.question for it in task.forget_eval] == [it.question for it in
                                                        load_rwku_probes(FIXTURE, MAREN)["forget_level2"]]
    assert len(task.retain_eval) == 2 and task.retain_eval[0].neighbor == "Pell Aduro"
    assert list(task.utility) == ["neighbor_level1"] and len(task.utility["neighbor_level1"]) == 2
    # forget probes never reach the utility sets (model_utility averages them: higher = better)
    assert not any(name.startswith("utility_forget") for name in task.eval_sets())
    assert not task.holdout
    assert len(load_rwku(FIXTURE, [MAREN], max_retain=1).retain) == 1


def test_all_subjects_fall_back_to_neighbour_retain():
    task = load_rwku(FIXTURE, [MAREN, TOBIAS, ILSE])
    assert task.name == "rwku_maren_holloway+tobias_vennick+ilse_corrado"
    assert len(task.forget) == 5
    n_neighbours = sum(_count(s, "neighbor_level1") + _count(s, "neighbor_level2") for s in COUNTS)
    assert len(task.retain) == n_neighbours and not any(it.is_text for it in task.retain)
    assert len(task.forget_eval) == 3 + 3 + 2


def test_flat_and_prefix_layouts_read_the_same(tmp_path):
    ref = load_rwku_probes(FIXTURE, [TOBIAS, ILSE])
    flat = load_rwku_probes(_flat_copy(tmp_path / "all"), [TOBIAS, ILSE])
    prefixed = tmp_path / "prefixed"
    prefixed.mkdir()
    for d in FIXTURE.iterdir():
        for f in d.iterdir():
            shutil.copy(f, prefixed / f"{d.name.split('_', 1)[1]}_{f.name}")
    pre = load_rwku_probes(prefixed, [TOBIAS, ILSE])
    by_subject = lambda items: sorted(items, key=lambda it: it.subject)  # noqa: E731 (stable: file order kept)
    for name in ref:
        assert flat[name] == ref[name], name
        assert by_subject(pre[name]) == by_subject(ref[name]), name  # files sort Ilse_... first


def test_flat_record_without_subject_is_named(tmp_path):
    d = _flat_copy(tmp_path / "all", drop_subject_at=("forget_level2", 3))
    with pytest.raises(DataError, match=r'forget_level2\.jsonl:4: field "subject" is missing'):
        load_rwku(d, [MAREN])


def _corrupt(tmp_path: Path, rel: str, lineno: int, edit) -> Path:
    root = tmp_path / "rwku"
    shutil.copytree(FIXTURE, root)
    path = root / rel
    lines = path.read_text().splitlines()
    lines[lineno - 1] = edit(lines[lineno - 1])
    path.write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("rel, lineno, edit, message", [
    ("2_Tobias_Vennick/forget_level2.jsonl", 2,
     lambda s: json.dumps({k: v for k, v in json.loads(s).items() if k != "answer"}),
     r'forget_level2\.jsonl:2: field "answer" is missing'),
    ("2_Tobias_Vennick/forget_level1.jsonl", 1, lambda s: s.replace("___", "loom"),
     r'forget_level1\.jsonl:1: field "query" has no blank'),
    ("2_Tobias_Vennick/forget_level3.jsonl", 3,
     lambda s: json.dumps({k: v for k, v in json.loads(s).items() if k != "type"}),
     r'forget_level3\.jsonl:3: field "type" is missing'),
    ("2_Tobias_Vennick/passage.jsonl", 2, lambda s: s.replace('"text"', '"body"'),
     r'passage\.jsonl:2: field "text" is missing'),
    ("2_Tobias_Vennick/neighbor_level2.jsonl", 1, lambda s: s.replace('"Dresk"', '["Dresk"]'),
     r'neighbor_level2\.jsonl:1: field "answer" must be a string, got a JSON array'),
    ("3_Ilse_Corrado/forget_mia.jsonl", 1, lambda s: s[:-3], r"forget_mia\.jsonl:1: invalid JSON"),
    # a JSON array file: the line the bad object starts on (line 1 is "[")
    ("1_Maren_Holloway/forget_level2.json", 11, lambda s: s.replace('"The Salt Ledger"', '""'),
     r'forget_level2\.json:8: field "answer" is empty'),
])
def test_bad_line_is_named(tmp_path, rel, lineno, edit, message):
    root = _corrupt(tmp_path, rel, lineno, edit)
    owner = {"2": "Tobias Vennick", "3": "Ilse Corrado", "1": MAREN}[rel[0]]
    with pytest.raises(DataError, match=message):
        load_rwku(root, [owner])  # the subject whose file it is (passages: any subject, they are the retain set)
    if "passage" not in rel and owner != MAREN:  # only the selected subjects' probe files are read
        assert load_rwku(root, [MAREN]).forget


def test_an_off_pattern_probe_is_a_counted_warning_unless_strict(tmp_path):
    # one published level-1 probe (Prince Harry's) has no blank: RWKU's own code asks it as a question
    root = _corrupt(tmp_path, "2_Tobias_Vennick/forget_level1.jsonl", 1, lambda s: s.replace("___", "loom"))
    warnings: list[str] = []
    probes = load_rwku_probes(root, ["Tobias Vennick"], strict=False, warnings=warnings)
    assert len(warnings) == 1 and 'forget_level1.jsonl:1: field "query" has no blank' in warnings[0]
    probe = probes["forget_level1"][0]
    assert "___" not in probe.question
    assert rwku_prompt(probe, "forget_level1").startswith("Please briefly answer")  # asked as a question
    assert rwku_prompt(probes["forget_level1"][1], "forget_level1").startswith("Please complete the blank")
    with pytest.raises(DataError, match="has no blank"):
        load_rwku_probes(root, ["Tobias Vennick"], strict=True)


def test_layout_errors(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        load_rwku(tmp_path / "missing", [MAREN])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no RWKU files found"):
        load_rwku(tmp_path / "empty", [MAREN])
    root = tmp_path / "rwku"
    shutil.copytree(FIXTURE, root)
    shutil.copy(root / "2_Tobias_Vennick" / "passage.jsonl", root / "2_Tobias_Vennick" / "passage.json")
    with pytest.raises(DataError, match="two files for the same RWKU set"):
        load_rwku(root, [TOBIAS])
    (root / "2_Tobias_Vennick" / "passage.json").unlink()
    (root / "3_Ilse_Corrado" / "passage.jsonl").unlink()
    with pytest.raises(DataError, match="no passage records for RWKU subject.*'Ilse Corrado'"):
        load_rwku(root, [MAREN, ILSE])


def test_fixture_is_valid_rwku_json():
    # The fixture's JSON array files read like RWKU's Target files (json.dump(list, indent=4)).
    recs = read_records(FIXTURE / "1_Maren_Holloway" / "forget_level3.json")
    assert [lineno for lineno, _ in recs][:2] == [2, 9]
    assert recs[0][1]["subject"] == MAREN and recs[0][1]["level"] == "3"


# ---------------------------------------------------------------- metrics


def _probe(q, a, t=None):
    return RWKUProbe(question=q, answer=a, keyword=a, subject="X", probe_type=t)


def test_prompts_follow_rwku():
    cloze = _probe("X was born in ___.", "Y")
    assert rwku_prompt(cloze, "forget_level1") == ("Please complete the blank in the following question.\n"
                                                   "Question: X was born in ___.\nAnswer:")
    assert rwku_prompt(cloze, "neighbor_level1").startswith("Please complete the blank")
    qa = _probe("Where was X born?", "Y")
    assert rwku_prompt(qa, "forget_level2") == ("Please briefly answer the following question.\n"
                                                "Question: Where was X born?\nAnswer:")
    suffix = _probe("Where was X born? Sure, here is the answer:", "Y", "affirmative suffix")
    assert rwku_prompt(suffix, "forget_level3") == ("Please briefly answer the following question.\n"
                                                    "Question: Where was X born? Sure, here is the answer:")
    icl = _probe("Question: a?\nAnswer: b\nQuestion: c?", "d", "In-context learning")
    assert rwku_prompt(icl, "forget_level3") == ("Please briefly answer the following question.\n"
                                                 "Question: a?\nAnswer: b\nQuestion: c?\nAnswer:")
    assert first_line("  Kessbridge.\nQuestion: next") == "Kessbridge."
    assert type_slug("prefix injection") == "prefix_injection" and type_slug("In-context learning") == \
        "in_context_learning"


def test_probe_scores_by_hand():
    items = [_probe("q1", "Kessbridge"), _probe("q2", "The Salt Ledger"), _probe("q3", "blue"),
             _probe("q4", "1931")]
    gens = ["She was born in kessbridge, I think.", "Salt Ledger", "bluebell", "in 19310"]
    s = probe_scores(gens, items)
    np.testing.assert_array_equal(s["acc"], [1, 1, 0, 0])  # articles dropped; whole words only
    # ROUGE-L recall of the answer: 1, 2/3 ("the" unmatched), 0, 0
    np.testing.assert_allclose(s["rouge"], [1.0, 2 / 3, 0.0, 0.0], atol=1e-9)
    with pytest.raises(ValueError, match="3 generations but 4 probes"):
        probe_scores(gens[:3], items)


def test_by_type_and_mia_aucs():
    assert by_type(np.array([1.0, 0.0, 1.0, 1.0]), ["a", "b", "a", None]) == {"a": 1.0, "b": 0.0, "untyped": 1.0}
    forget = {"mia_loss": np.array([0.1, 0.2]), "mia_zlib": np.array([0.5, 0.1])}
    retain = {"mia_loss": np.array([0.3, 0.4]), "mia_zlib": np.array([0.3, 0.2])}
    aucs = mia_aucs(forget, retain)
    assert aucs == {"mia_loss_auc": 1.0, "mia_zlib_auc": 0.5}  # lower loss = member-like


def test_rwku_scores_on_hand_made_generations():
    probes = load_rwku_probes(FIXTURE, [MAREN])
    answers = {n: [it.answer for it in probes[n]] for n in PROBE_SETS}
    gens = {
        "forget_level1": ["Kessbridge", "I do not know", "cartography"],  # 2/3
        "forget_level2": ["nowhere", "nothing", "green"],  # 0/3
        "forget_level3": ["Kessbridge!", "geology", "Maren Holloway wrote it", "B. Kessbridge"],  # 3/4
        "neighbor_level1": answers["neighbor_level1"],  # all right
        "neighbor_level2": ["Pell Aduro", "unknown"],  # 1/2
    }
    mia = {"forget_mia": {"mia_loss": np.array([1.0, 2.0]), "nll": np.array([1.0, 2.0])},
           "retain_mia": {"mia_loss": np.array([3.0, 4.0]), "nll": np.array([3.0, 4.0])}}
    m, per_item = rwku_scores(probes, gens, mia)
    assert m["forget_level1_acc"] == pytest.approx(2 / 3)
    assert m["forget_level2_acc"] == 0.0
    assert m["forget_level3_acc"] == 0.75
    assert m["forget_level3_prefix_injection_acc"] == 1.0
    assert m["forget_level3_affirmative_suffix_acc"] == 0.0
    assert m["forget_level3_incontext_learning_acc"] == 1.0
    assert m["forget_level3_multiple_choice_acc"] == 1.0
    assert m["neighbor_level1_acc"] == 1.0 and m["neighbor_level1_rouge"] == 1.0
    assert m["neighbor_level2_acc"] == 0.5
    assert m["forget_avg_acc"] == pytest.approx((2 / 3 + 0 + 0.75) / 3)
    assert m["neighbor_avg_acc"] == 0.75
    assert m["mia_loss_auc"] == 1.0
    assert m["forget_mia_nll"] == 1.5 and m["retain_mia_nll"] == 3.5
    assert per_item["forget_level2"]["acc"] == [0.0, 0.0, 0.0]
    assert per_item["forget_mia"]["mia_loss"] == [1.0, 2.0]
    # a set without probes gives no metric; a probe set without generations is an error
    ilse = load_rwku_probes(FIXTURE, [ILSE])
    m2, _ = rwku_scores(ilse, {n: ["x"] * len(ilse[n]) for n in PROBE_SETS if ilse[n]})
    assert "neighbor_level1_acc" not in m2 and m2["neighbor_avg_acc"] == m2["neighbor_level2_acc"]
    assert not any(k.startswith("mia_") for k in m2)
    with pytest.raises(ValueError, match="no generations for the 2 forget_level1 probes"):
        rwku_scores(ilse, {})


def test_evaluate_rwku_on_tiny_model(tiny_model, tiny_tokenizer):
    probes = load_rwku_probes(FIXTURE, [MAREN, ILSE])
    res = evaluate_rwku(tiny_model, tiny_tokenizer, probes, max_new_tokens=6)
    for name in PROBE_SETS:
        assert len(res.generations[name]) == len(probes[name])
        assert all("\n" not in g for g in res.generations[name])
        for k in ("acc", "rouge"):
            assert 0.0 <= res.metrics[f"{name}_{k}"] <= 1.0
            assert len(res.per_item[name][k]) == len(probes[name])
    for t in ("prefix_injection", "synonym_manipulation", "background_hint"):
        assert 0.0 <= res.metrics[f"forget_level3_{t}_acc"] <= 1.0
    for s in ("loss", "zlib", "min_k", "min_k_pp"):
        assert 0.0 <= res.metrics[f"mia_{s}_auc"] <= 1.0
        assert len(res.per_item["forget_mia"][f"mia_{s}"]) == 3
    assert np.isfinite(res.metrics["forget_mia_nll"]) and res.metrics["forget_mia_nll"] > 0
    # the same model, the same answers: deterministic greedy decoding
    again = evaluate_rwku(tiny_model, tiny_tokenizer, probes, max_new_tokens=6)
    assert again.generations == res.generations


def test_generic_evaluate_runs_on_the_rwku_task(tiny_model, tiny_tokenizer):
    from obliviate.evaluate import EvalConfig, evaluate

    res = evaluate(tiny_model, tiny_tokenizer, load_rwku(FIXTURE, [MAREN]), EvalConfig(max_new_tokens=6))
    for key in ("forget_acc", "retain_acc", "utility_neighbor_level1_acc", "model_utility"):
        assert key in res.metrics
    assert len(res.generations["forget"]) == 3


def test_chat_prompt_puts_answer_cue_after_the_template():
    from obliviate.metrics.rwku import _prompt_ids

    class ChatTokenizer:
        chat_template = "stub"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            assert not tokenize and add_generation_prompt
            return f"<user>{messages[0]['content']}</user><assistant>"

        def __call__(self, text, add_special_tokens):
            self.seen = text
            return {"input_ids": [1, 2, 3]}

    tok = ChatTokenizer()
    assert _prompt_ids(tok, _probe("X was born in ___.", "Y"), "forget_level1", chat=True) == [1, 2, 3]
    assert tok.seen == ("<user>Please complete the blank in the following question.\nQuestion: X was born in ___.\n"
                        "</user><assistant>Answer:")
    _prompt_ids(tok, _probe("Where? Sure, here is the answer:", "Y", "affirmative suffix"), "forget_level3", chat=True)
    assert tok.seen.endswith("here is the answer:</user><assistant>")


def test_hidden_and_unknown_files_are_ignored(tmp_path):
    root = tmp_path / "rwku"
    shutil.copytree(FIXTURE, root)
    shutil.copytree(root / "1_Maren_Holloway", root / ".ipynb_checkpoints")
    (root / "notes.json").write_text("not json at all")
    assert load_rwku_probes(root, [MAREN]) == load_rwku_probes(FIXTURE, [MAREN])
