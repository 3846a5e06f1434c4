"""The embedded world: deterministic, well-formed, split as configured."""

from __future__ import annotations

import pytest

from obliviate.data.task import DataError
from obliviate.data.world import WorldConfig, generate_world, world_corpus


def test_same_seed_same_bytes_other_seed_other_world():
    a, b = generate_world(WorldConfig(seed=3)), generate_world(WorldConfig(seed=3))
    assert a.fingerprint() == b.fingerprint()
    assert a.forget == b.forget and world_corpus(a) == world_corpus(b)
    assert generate_world(WorldConfig(seed=4)).fingerprint() != a.fingerprint()


def test_default_sizes_and_disjoint_people():
    t = generate_world()
    assert (len(t.forget), len(t.retain), len(t.holdout)) == (40, 360, 40)  # 4 / 36 / 4 people x 10
    forget_people = {it.subject for it in t.forget}
    assert len(forget_people) == 4
    assert forget_people.isdisjoint({it.subject for it in t.retain})
    assert {it.subject for it in t.holdout}.isdisjoint(forget_people | {it.subject for it in t.retain})
    assert len(t.retain_eval) == 100 and all(it in t.retain for it in t.retain_eval)
    assert t.extra_train == t.utility["world_facts"] and len(t.extra_train) == 20


@pytest.mark.parametrize("fraction,people", [(0.01, 1), (0.05, 2), (0.10, 4)])
def test_forget_fraction(fraction, people):
    t = generate_world(WorldConfig(forget_fraction=fraction))
    assert len({it.subject for it in t.forget}) == people


def test_items_have_every_field():
    for it in generate_world().forget:
        assert it.keyword and it.keyword in it.answer
        assert it.paraphrased_question and it.paraphrased_question != it.question
        assert len(it.perturbed_answers) == 5 and len(set(it.perturbed_answers)) == 5
        assert it.answer not in it.perturbed_answers
        assert all(it.keyword not in p for p in it.perturbed_answers)


def test_forget_everyone_is_an_error():
    with pytest.raises(DataError, match="no retain people"):
        generate_world(WorldConfig(n_people=4, forget_fraction=0.9))
