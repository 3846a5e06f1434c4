"""Relearning attacks (RTT, benign relearning) and probe attacks (in-context, paraphrase, format)."""

import dataclasses

import pytest
import torch

import obliviate.attacks.relearn as relearn
from obliviate.attacks import AttackContext, AttackUnavailable, get_attack
from obliviate.attacks.probes import PROMPT_FORMAT_TEMPLATE
from obliviate.attacks.relearn import split_forget_by_subject
from obliviate.data.collate import encode_prompt, format_prompt
from obliviate.data.task import QAItem
from obliviate.evaluate import greedy_accuracy


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_weights(model, before) -> bool:
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def _subjects(items) -> set:
    return {it.subject for it in items}


# --- split ----------------------------------------------------------------------------------


def test_split_is_disjoint_by_subject_covers_and_is_deterministic(small_world):
    items = small_world.forget + small_world.retain  # 12 subjects
    train, held_out = split_forget_by_subject(items, seed=0)
    assert train and held_out
    assert not _subjects(train) & _subjects(held_out)
    assert sorted(map(repr, train + held_out)) == sorted(map(repr, items))
    assert split_forget_by_subject(items, seed=0) == (train, held_out)
    splits = {tuple(sorted(_subjects(split_forget_by_subject(items, seed=s)[0]))) for s in range(6)}
    assert len(splits) > 1  # the seed matters


def test_split_of_subjectless_items_and_too_few_subjects():
    items = [QAItem(f"q{i}?", f"a{i}") for i in range(4)]  # no subject: each is its own
    train, held_out = split_forget_by_subject(items, seed=1)
    assert len(train) == 2 and len(held_out) == 2 and not set(train) & set(held_out)
    one_person = [QAItem(f"q{i}?", f"a{i}", subject="Ann") for i in range(4)]
    with pytest.raises(AttackUnavailable, match="at least 2 subjects"):
        split_forget_by_subject(one_person, seed=0)
    with pytest.raises(AttackUnavailable, match="at least 2 subjects"):
        split_forget_by_subject([], seed=0)


def test_split_two_subjects_gives_one_each():
    items = [QAItem("q1?", "a", subject="A"), QAItem("q2?", "b", subject="A"), QAItem("q3?", "c", subject="B")]
    for fraction in (0.1, 0.5, 0.9):
        train, held_out = split_forget_by_subject(items, seed=0, train_fraction=fraction)
        assert len(_subjects(train)) == 1 and len(_subjects(held_out)) == 1


# --- probes ---------------------------------------------------------------------------------


def _ctx(tokenizer, task, **params) -> AttackContext:
    return AttackContext(tokenizer=tokenizer, task=task, seed=0, params=params)


@pytest.mark.parametrize("k", [1, 3])
def test_in_context_prompts(k, small_world, tiny_tokenizer, tiny_model):
    tok, task = tiny_tokenizer, small_world
    before = _snapshot(tiny_model)
    out = get_attack("in_context").run(tiny_model, _ctx(tok, task, k=k))
    assert out.model is tiny_model and _same_weights(tiny_model, before)
    assert out.forget_items == task.forget_eval and out.retain_items == task.retain_eval
    bos = encode_prompt(tok, None)
    assert bos == [tok.bos_token_id]
    for items, prompts, pool in ((out.forget_items, out.forget_prompts, task.forget_eval),
                                 (out.retain_items, out.retain_prompts, task.retain)):
        assert len(prompts) == len(items)
        facts = {format_prompt(it.question) + " " + it.answer: it for it in pool}
        for it, ids in zip(items, prompts, strict=True):
            suffix = encode_prompt(tok, it.question)[len(bos):]
            assert ids[: len(bos)] == bos and ids.count(tok.bos_token_id) == 1
            assert ids[-len(suffix):] == suffix  # ends exactly like the training prompt
            text = tok.decode(ids[len(bos): -len(suffix)])
            assert text.endswith("\n\n")
            blocks = text[:-2].split("\n\n")
            assert len(blocks) == k
            context = [facts[b] for b in blocks]  # each block is a whole fact of the pool
            assert it not in context
            assert all(c.subject != it.subject for c in context)  # enough other people here
            assert it.keyword.lower() not in text.lower() and it.answer not in text


def test_in_context_rejects_unknown_param(small_world, tiny_tokenizer, tiny_model):
    with pytest.raises(ValueError, match="unknown parameter.*valid: k"):
        get_attack("in_context").run(tiny_model, _ctx(tiny_tokenizer, small_world, n=2))


def test_paraphrase_prompts(small_world, tiny_tokenizer, tiny_model):
    tok = tiny_tokenizer
    task = dataclasses.replace(small_world, forget_eval=small_world.forget_eval
                               + [QAItem("Who is Zed?", "Zed is a cat.", subject="Zed")])
    before = _snapshot(tiny_model)
    out = get_attack("paraphrase").run(tiny_model, _ctx(tok, task))
    assert out.model is tiny_model and _same_weights(tiny_model, before)
    for items, prompts in ((out.forget_items, out.forget_prompts), (out.retain_items, out.retain_prompts)):
        for it, ids in zip(items, prompts, strict=True):
            expected = format_prompt(it.paraphrased_question or it.question)
            assert tok.decode(ids, skip_special_tokens=True) == expected
            assert ids == encode_prompt(tok, it.paraphrased_question or it.question)
    assert tok.decode(out.forget_prompts[-1], skip_special_tokens=True) == "Question: Who is Zed?\nAnswer:"
    assert out.info["n_paraphrased"] == len(small_world.forget_eval)


def test_prompt_format_prompts(small_world, tiny_tokenizer, tiny_model):
    tok = tiny_tokenizer
    before = _snapshot(tiny_model)
    out = get_attack("prompt_format").run(tiny_model, _ctx(tok, small_world))
    assert out.model is tiny_model and _same_weights(tiny_model, before)
    assert PROMPT_FORMAT_TEMPLATE == "Q: {question}\nA:"
    for items, prompts in ((out.forget_items, out.forget_prompts), (out.retain_items, out.retain_prompts)):
        assert len(items) == len(prompts)
        for it, ids in zip(items, prompts, strict=True):
            assert tok.decode(ids) == f"<s>Q: {it.question}\nA:"
            assert ids.count(tok.bos_token_id) == 1


# --- relearning -----------------------------------------------------------------------------


def test_rtt_returns_a_finetuned_copy_probed_on_v(small_world, tiny_tokenizer, tiny_model):
    before = _snapshot(tiny_model)
    lrs = (1e-4, 1e-3)
    out = get_attack("rtt").run(tiny_model, _ctx(tiny_tokenizer, small_world, lrs=lrs, epochs=2))
    assert out.model is not tiny_model and _same_weights(tiny_model, before)
    assert not _same_weights(out.model, before)  # the fine-tune moved weights
    train, held_out = split_forget_by_subject(small_world.forget_eval, seed=0)
    assert out.forget_items == held_out
    assert set(out.info["train_subjects"]) == _subjects(train)
    assert not _subjects(train) & _subjects(out.forget_items)
    assert set(out.info["per_lr"]) == set(lrs) and out.info["lr"] in lrs
    assert all(0.0 <= a <= 1.0 for a in out.info["per_lr"].values())
    assert out.info["per_lr"][out.info["lr"]] == max(out.info["per_lr"].values())
    assert (out.info["n_train"], out.info["n_val"], out.info["epochs"]) == (len(train), len(held_out), 2)
    with pytest.raises(ValueError, match="unknown parameter.*valid: .*lrs"):
        get_attack("rtt").run(tiny_model, _ctx(tiny_tokenizer, small_world, lr=1e-3))


@pytest.mark.parametrize("knowledge, best", [("rouge", 1e-4), ("acc", 1e-3)])
def test_rtt_picks_its_lr_by_the_audits_own_knowledge_measure(small_world, tiny_tokenizer, tiny_model,
                                                               monkeypatch, knowledge, best):
    """On TOFU K is ROUGE and contains-answer accuracy is ~0 at every lr: choosing the lr by
    accuracy picks an arbitrary copy. The sweep must choose by the audit's own K."""
    rouge = {1e-4: 0.6, 3e-4: 0.2, 1e-3: 0.1}
    acc = {1e-4: 0.0, 3e-4: 0.0, 1e-3: 0.05}

    def fake_finetune(model, tokenizer, items, epochs, lr, seed, batch_size=8, weight_decay=0.0, fmt=None):
        model.swept_lr = lr
        return 0.0

    monkeypatch.setattr(relearn, "finetune", fake_finetune)
    monkeypatch.setattr(relearn, "greedy_rouge", lambda m, tok, items, cfg=None: rouge[m.swept_lr])
    monkeypatch.setattr(relearn, "greedy_accuracy", lambda m, tok, items, cfg=None: acc[m.swept_lr])
    ctx = AttackContext(tokenizer=tiny_tokenizer, task=small_world, seed=0, params={"lrs": [1e-4, 3e-4, 1e-3]},
                        knowledge=knowledge)
    out = get_attack("rtt").run(tiny_model, ctx)
    assert out.info["lr"] == best and out.info["selected_by"] == knowledge
    assert out.info["per_lr"] == (rouge if knowledge == "rouge" else acc)


def test_audit_passes_its_knowledge_measure_to_the_attacks(small_world, tiny_tokenizer, tiny_model):
    from obliviate.audit import run_attacks
    from obliviate.evaluate import EvalConfig

    res = run_attacks(tiny_model, tiny_tokenizer, small_world, ["rtt"], EvalConfig(knowledge="rouge"),
                      params={"rtt": {"lrs": [1e-3], "epochs": 1}})["rtt"]
    assert res.info["selected_by"] == "rouge"
    assert res.info["per_lr"][1e-3] == pytest.approx(float(res.forget_correct.mean()))  # the audit's own K


def test_rtt_finetune_learns_its_train_facts(small_world, tiny_tokenizer, tiny_model):
    """Sanity of the fine-tune itself: after RTT, the model answers T (its training facts)
    that the untrained model could not."""
    train, _ = split_forget_by_subject(small_world.forget_eval, seed=0)
    acc_before = greedy_accuracy(tiny_model, tiny_tokenizer, train)
    out = get_attack("rtt").run(tiny_model, _ctx(tiny_tokenizer, small_world, lrs=[3e-3], epochs=30,
                                                 batch_size=2))
    acc_after = greedy_accuracy(out.model, tiny_tokenizer, train)
    assert acc_after > acc_before and acc_after >= 0.5


def test_relearn_benign_trains_a_copy_on_retain_only(small_world, tiny_tokenizer, tiny_model, monkeypatch):
    seen: list[QAItem] = []
    real = relearn.finetune

    def recording(model, tokenizer, items, *args, **kwargs):
        seen.extend(items)
        return real(model, tokenizer, items, *args, **kwargs)

    monkeypatch.setattr(relearn, "finetune", recording)
    before = _snapshot(tiny_model)
    out = get_attack("relearn_benign").run(tiny_model, _ctx(tiny_tokenizer, small_world, n_items=16))
    assert out.model is not tiny_model and _same_weights(tiny_model, before)
    assert not _same_weights(out.model, before)
    assert out.forget_items is None
    assert out.info["n_train"] == len(seen) == 16
    forget_questions = {it.question for it in small_world.forget + small_world.forget_eval}
    assert not {it.question for it in seen} & forget_questions
    assert set(seen) <= set(small_world.retain)


def test_rtt_sweep_stops_at_an_lr_worse_on_both_k_and_loss(monkeypatch, tiny_model, tiny_tokenizer, small_world):
    """Ascending lrs: once an lr is worse than the best on held-out K and on held-out loss, the
    larger ones are not run (and are listed as skipped); otherwise, or with stop_early off, all run."""
    import obliviate.attacks.relearn as R
    from obliviate.attacks import AttackContext

    ran: list[float] = []
    results = {}

    def fake_finetune(model, tok, train, epochs, lr, *a, **k):
        ran.append(lr)
        model.fake_lr = lr

    monkeypatch.setattr(R, "finetune", fake_finetune)
    monkeypatch.setattr(R, "held_out_knowledge", lambda m, *a: results[m.fake_lr][0])
    monkeypatch.setattr(R, "mean_answer_nll", lambda m, *a, **k: results[m.fake_lr][1])
    ctx = AttackContext(tokenizer=tiny_tokenizer, task=small_world, seed=0)
    train, held = small_world.forget_eval[:4], small_world.forget_eval[4:]

    results.update({1e-4: (0.2, 2.0), 3e-4: (0.1, 3.0), 1e-3: (0.9, 0.5), 3e-3: (0.0, 9.0)})
    best, lr, per_lr, _, skipped = R.relearn_sweep(tiny_model, ctx, train, held, R.RTTParams(lrs=sorted(results)))
    assert (ran, lr, skipped) == ([1e-4, 3e-4], 1e-4, [1e-3, 3e-3])
    assert set(per_lr) == {1e-4, 3e-4}

    ran.clear()  # worse K but a lower loss is not "clearly worse": the sweep goes on
    results[3e-4] = (0.1, 1.0)
    _, lr, _, _, skipped = R.relearn_sweep(tiny_model, ctx, train, held, R.RTTParams(lrs=sorted(results)))
    assert (ran, lr, skipped) == ([1e-4, 3e-4, 1e-3, 3e-3], 1e-3, [])

    ran.clear()
    results[3e-4] = (0.1, 3.0)
    _, lr, _, _, skipped = R.relearn_sweep(tiny_model, ctx, train, held, R.RTTParams(lrs=sorted(results),
                                                                                      stop_early=False))
    assert (ran, lr, skipped) == ([1e-4, 3e-4, 1e-3, 3e-3], 1e-3, [])
