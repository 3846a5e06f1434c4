"""`audit.Knowledge`: which probes an attack's units select, and when a K measure does not apply."""

from __future__ import annotations

import numpy as np
import pytest

from obliviate.attacks import Attacked, AttackUnavailable
from obliviate.audit import Knowledge
from obliviate.data.task import QAItem

UNITS = [QAItem(None, f"window {i}", subject=f"w{i}") for i in range(4)]
# probes tied to units by subject (MUSE: a VerbMem probe lies in a forget window)
PROBES = [QAItem("p0", "a", subject="w0"), QAItem("p1", "b", subject="w1"), QAItem("p3", "c", subject="w3"),
          QAItem("p?", "d", subject=None)]


def _len_score(model, tok, items, prompts):
    return np.array([len(it.answer) / 10 for it in items], dtype=float)


def test_select_by_unit_or_subject():
    k = Knowledge("K", PROBES, [], _len_score)
    assert k.select(None) == [0, 1, 2, 3]
    assert k.select([UNITS[1], UNITS[3]]) == [1, 2]  # the held-out windows' probes; the untied one never
    same = Knowledge("K", UNITS, [], _len_score, by_subject=False)
    assert same.select([UNITS[2]]) == [2]


def test_call_measures_the_selected_probes_and_the_retain_set():
    k = Knowledge("K", PROBES, [QAItem("r", "xyz")], _len_score)
    index, forget, retain = k(object(), None, Attacked(model=object(), forget_items=[UNITS[0], UNITS[3]]))
    assert index == [0, 2] and forget.tolist() == [0.1, 0.1] and retain.tolist() == pytest.approx([0.3])


def test_prompt_attacks_apply_only_to_question_measures():
    prompts = Attacked(model=object(), forget_items=PROBES, forget_prompts=[[1]] * 4)
    with pytest.raises(AttackUnavailable, match="only changes question prompts"):
        Knowledge("VerbMem", PROBES, [], _len_score)(None, None, prompts)
    seen = []
    qa = Knowledge("acc", PROBES, [], lambda m, t, items, p: seen.append(p) or np.zeros(len(items)), prompts=True)
    qa(None, None, prompts)
    assert seen == [[[1]] * 4]
    with pytest.raises(AttackUnavailable, match="no K probe"):
        Knowledge("K", PROBES[:1], [], _len_score)(None, None, Attacked(model=None, forget_items=[UNITS[2]]))
