"""Prompt formats: the token ids of every preset, one format through every path, context truncation,
and what a run directory records (SPEC section 5: a checkpoint is evaluated in the format it was trained in)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import transformers as T
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from typer.testing import CliRunner

from obliviate.attacks import AttackContext, AttackUnavailable, get_attack
from obliviate.audit import probe
from obliviate.cli import app
from obliviate.config import dump_run_config, load_run_config, parse_run_config
from obliviate.data.collate import PROMPT_PRESETS, PromptFormat, encode, fit_prompt
from obliviate.data.task import DataError, ForgetTask
from obliviate.evaluate import EvalConfig, evaluate
from obliviate.models.load import save_model
from obliviate.unlearn import UnlearnConfig, unlearn

# A word-level tokenizer with GPT-2's byte-level splitting (a space is glued to the next word, "Ġ"),
# so every id below can be checked by eye.
PIECES = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "Question", ":", "ĠWhere", "Ġwas", "ĠAnn",
          "Ġborn", "?", "Ċ", "Answer", "Ġ", "ĠOslo", "Oslo", "[", "INST", "]", "Ġ[/", "Where"]
ID = {p: i for i, p in enumerate(PIECES)}
QUESTION = "Where was Ann born?"
Q_IDS = [ID["ĠWhere"], ID["Ġwas"], ID["ĠAnn"], ID["Ġborn"], ID["?"]]  # " Where was Ann born?"
BOS, EOS = ID["<s>"], ID["</s>"]


@pytest.fixture(scope="module")
def word_tokenizer():
    tok = Tokenizer(models.WordLevel({p: i for i, p in enumerate(PIECES)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    fast = T.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                     unk_token="<unk>", additional_special_tokens=["<|user|>", "<|assistant|>"])
    fast.chat_template = ("{{ bos_token }}{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}"
                          "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    return fast


# prompt ids, answer ids (EOS included), written out by hand
EXPECTED = {
    # obliviate's own: "...Answer:" then " Oslo" -> the space is glued to the answer's first word
    "obliviate": ([BOS, ID["Question"], ID[":"], *Q_IDS, ID["Ċ"], ID["Answer"], ID[":"]], [ID["ĠOslo"], EOS]),
    # the field's framework: "...Answer: " then "Oslo" -> a lone space token ends the prompt
    "open-unlearning": ([BOS, ID["Question"], ID[":"], *Q_IDS, ID["Ċ"], ID["Answer"], ID[":"], ID["Ġ"]],
                        [ID["Oslo"], EOS]),
    "tofu-phi": ([BOS, ID["Question"], ID[":"], *Q_IDS, ID["Ċ"], ID["Answer"], ID[":"], ID["Ġ"]], [ID["Oslo"], EOS]),
    # TOFU's Llama-2 fine-tune: "[INST] q [/INST]" + answer
    "tofu-llama2": ([BOS, ID["["], ID["INST"], ID["]"], *Q_IDS, ID["Ġ[/"], ID["INST"], ID["]"]], [ID["Oslo"], EOS]),
    # the tokenizer's chat template (it writes BOS itself: no second one)
    "chat": ([BOS, ID["<|user|>"], ID["Where"], *Q_IDS[1:], ID["<|assistant|>"]], [ID["Oslo"], EOS]),
}


def test_every_preset_has_a_hand_written_expectation():
    assert set(EXPECTED) == set(PROMPT_PRESETS)


@pytest.mark.parametrize("preset", sorted(PROMPT_PRESETS))
def test_token_ids_of_each_preset(preset, word_tokenizer):
    enc = encode(word_tokenizer, QUESTION, "Oslo", fmt=PromptFormat(preset=preset))
    assert (enc.prompt_ids, enc.answer_ids) == EXPECTED[preset]


def test_default_format_is_unchanged(word_tokenizer):
    assert encode(word_tokenizer, QUESTION, "Oslo") == encode(word_tokenizer, QUESTION, "Oslo",
                                                              fmt=PromptFormat(preset="obliviate"))


def test_fields_beside_a_preset_win_and_bad_templates_are_one_line():
    fmt = PromptFormat(preset="open-unlearning", answer_prefix=" ")
    assert (fmt.template, fmt.answer_prefix) == ("Question: {question}\nAnswer: ", " ")
    with pytest.raises(ValueError, match="has no {question}"):
        PromptFormat(template="Q: {q}".replace("{q}", "x"))
    with pytest.raises(ValueError, match="only {question}"):
        PromptFormat(template="{context} {question}")
    with pytest.raises(ValueError, match="unknown prompt preset 'llama9'; presets: obliviate"):
        PromptFormat(preset="llama9")


def test_chat_without_a_chat_template_is_one_line(tiny_tokenizer):
    with pytest.raises(DataError, match="has no chat template"):
        encode(tiny_tokenizer, QUESTION, "Oslo", fmt=PromptFormat(preset="chat"))


def test_run_file_prompt_reaches_unlearn_and_eval_and_round_trips(tmp_path):
    run_file = tmp_path / "run.yaml"
    run_file.write_text("prompt:\n  preset: tofu-llama2\n")
    cfg = load_run_config(run_file)
    assert cfg.eval.prompt == cfg.prompt == cfg.unlearn_config("gd").prompt
    assert cfg.prompt.template == "[INST] {question} [/INST]"
    assert cfg.model_fields_set == {"prompt"}  # benchmarks apply their own unlearn/eval defaults where unset
    replaced = cfg.model_copy(update={"unlearn": UnlearnConfig(batch_size=32)})  # as a benchmark does
    assert replaced.unlearn_config("gd", tiny=False).prompt == cfg.prompt
    again = parse_run_config(yaml.safe_load(dump_run_config(cfg, tmp_path / "config.yaml").read_text()))
    assert again.prompt == cfg.prompt and again.eval.prompt == cfg.prompt
    with pytest.raises(DataError, match="eval.prompt differs from prompt"):
        parse_run_config({"eval": {"prompt": {"preset": "chat"}}})


# --- one format through every path: a chat format on a tokenizer without a chat template must fail
# --- in each of them (a path that ignored the format would run in the default one instead)

CHAT = PromptFormat(preset="chat")


def test_unlearning_uses_the_format(small_world, tiny_model, tiny_tokenizer):
    with pytest.raises(DataError, match="chat template"):
        unlearn(tiny_model, tiny_tokenizer, small_world, UnlearnConfig(method="gd", max_steps=1, prompt=CHAT))


def test_evaluation_uses_the_format(small_world, tiny_model, tiny_tokenizer):
    with pytest.raises(DataError, match="chat template"):
        evaluate(tiny_model, tiny_tokenizer, small_world, EvalConfig(prompt=CHAT))


@pytest.mark.parametrize("attack, params", [("in_context", {}), ("paraphrase", {}),
                                            ("gptq4", {"n_calibration": 4}), ("awq4", {"n_calibration": 4}),
                                            ("relearn_benign", {"n_items": 2, "epochs": 1}),
                                            ("rtt", {"epochs": 1, "lrs": [1e-4]})])
def test_every_attack_that_encodes_uses_the_format(attack, params, small_world, tiny_model, tiny_tokenizer):
    """(`prompt_format` is left out: asking in another format is that attack.)"""
    ctx = AttackContext(tokenizer=tiny_tokenizer, task=small_world, params=params, prompt=CHAT)
    with pytest.raises(DataError, match="chat template"):
        attacked = get_attack(attack).run(tiny_model, ctx)
        probe(tiny_model, tiny_tokenizer, small_world, attacked, EvalConfig(prompt=CHAT))


# --- prompts longer than the context, paraphrase without paraphrases, surgery without its field

def test_fit_prompt_keeps_bos_and_the_end():
    assert fit_prompt([1, 5, 6, 7, 8, 9], 4, 1) == [1, 7, 8, 9]
    assert fit_prompt([5, 6, 7], 4, 1) == [5, 6, 7]
    assert fit_prompt([5, 6, 7, 8], 2, 0) == [7, 8]  # no BOS to keep


def test_long_in_context_prompts_are_cut_and_counted(small_world, tiny_tokenizer):
    ids = {"bos_token_id": tiny_tokenizer.bos_token_id, "eos_token_id": tiny_tokenizer.eos_token_id,
           "pad_token_id": tiny_tokenizer.pad_token_id}
    gpt2 = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=400, n_embd=32, n_layer=1, n_head=2, n_positions=48, **ids))
    ctx = AttackContext(tokenizer=tiny_tokenizer, task=small_world, params={"k": 3})
    attacked = get_attack("in_context").run(gpt2, ctx)
    assert max(len(p) for p in attacked.forget_prompts) > 48  # GPT-2 would fail: index out of range
    result = probe(gpt2, tiny_tokenizer, small_world, attacked, EvalConfig(batch_size=16))
    n_prompts = len(small_world.forget_eval) + len(small_world.retain_eval)
    assert 0 < result.info["prompts_truncated"] <= n_prompts


def _plain(task: ForgetTask) -> ForgetTask:
    strip = lambda it: dataclasses.replace(it, paraphrased_question=None, perturbed_answers=())  # noqa: E731
    return dataclasses.replace(task, **{k: [strip(it) for it in getattr(task, k)]
                                        for k in ("forget", "retain", "forget_eval", "retain_eval")})


def test_paraphrase_without_paraphrases_is_unavailable(small_world, tiny_model, tiny_tokenizer):
    with pytest.raises(AttackUnavailable, match="no forget item has a paraphrased question"):
        get_attack("paraphrase").run(tiny_model, AttackContext(tokenizer=tiny_tokenizer, task=_plain(small_world)))


def test_surgery_names_its_field_before_loading_a_model(small_world, tmp_path):
    from obliviate.config import RunConfig
    from obliviate.pipeline import run_user

    files = {}
    for name, items in (("forget", small_world.forget), ("retain", small_world.retain)):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps({"question": it.question, "answer": it.answer}) + "\n"
                                       for it in items))
    cfg = RunConfig(benchmark="user", methods=["surgery"], audit={"enabled": False})
    with pytest.raises(DataError, match='surgery needs the field "perturbed_answers"'):
        run_user(str(tmp_path / "no-model-here"), files["forget"], files["retain"], None, cfg, tmp_path / "out")


# --- the run directory: the prompt format, absolute model paths, the weights' hash

def test_run_directory_records_prompt_absolute_paths_and_hash(tmp_path, monkeypatch, small_world, tiny_model,
                                                               tiny_tokenizer):
    save_model(tiny_model, tiny_tokenizer, tmp_path / "model")
    for name, items in (("forget", small_world.forget), ("retain", small_world.retain)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"question": it.question, "answer": it.answer})
                                                        + "\n" for it in items))
    monkeypatch.chdir(tmp_path)  # relative paths, as a user types them
    res = CliRunner().invoke(app, ["unlearn", "--model", "model", "--forget", "forget.jsonl", "--retain",
                                   "retain.jsonl", "--out", "run", "--method", "gd", "--max-steps", "1",
                                   "--prompt-template", "Question: {question}\\nAnswer: ", "--answer-prefix", ""])
    assert res.exit_code == 0, res.output
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    for section in ("unlearn", "eval"):
        assert config[section]["prompt"]["template"] == "Question: {question}\nAnswer: "
        assert config[section]["prompt"]["answer_prefix"] == ""
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["sources"]["model"] == str(tmp_path / "model")
    target = results["models"]["target"]
    assert target["path"] == str(tmp_path / "model")
    assert target["weights_sha256"] == hashlib.sha256(
        b"model.safetensors" + (tmp_path / "model" / "model.safetensors").read_bytes()).hexdigest()
    # the run audited from another directory finds the target (it once failed with a misleading message)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = CliRunner().invoke(app, ["audit", str(tmp_path / "run"), "--attacks", "rtn8"])
    assert res.exit_code == 0, res.output
    assert "rtn8" in json.loads((tmp_path / "run" / "audit.json").read_text())["models"]["target"]


def test_tiny_models_learn_the_run_format_and_default_caches_keep_their_key(monkeypatch, small_world,
                                                                             tiny_tokenizer):
    from obliviate.data.world import world_corpus
    from obliviate.models import prepare, tiny
    from obliviate.models.cache import cache_key

    seen = []
    real = tiny.encode_items
    monkeypatch.setattr(tiny, "encode_items", lambda tok, items, *a, fmt, **k: seen.append(fmt) or real(
        tok, items, *a, fmt=fmt, **k))
    monkeypatch.setattr(prepare, "train_tokenizer", lambda corpus, vocab: tiny_tokenizer)
    model_cfg = tiny.TinyModelConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                     num_attention_heads=2)
    train_cfg = tiny.TrainConfig(max_epochs=1, min_epochs=1, check_every=1, check_items=2)
    corpus = world_corpus(small_world)
    fmt = PromptFormat(preset="open-unlearning")
    dirs = prepare.prepare_tiny_models(small_world, corpus, model_cfg, train_cfg, log=lambda m: None, fmt=fmt)
    assert seen == [fmt, fmt]  # target and oracle
    old_key = cache_key("tiny-pair", small_world.fingerprint(),
                        hashlib.sha256("\n".join(corpus).encode()).hexdigest(), model_cfg, train_cfg, 0)
    default = prepare.prepare_tiny_models(small_world, corpus, model_cfg, train_cfg, log=lambda m: None)
    assert default["target"].parent.name == old_key != dirs["target"].parent.name


def test_batched_encode_items_equals_encode_one_by_one(small_world, tiny_tokenizer):
    """encode_items tokenizes in batched calls: the ids must be those of `encode`, item by item,
    for questions, raw texts and truncation."""
    from obliviate.data.collate import PromptFormat, encode, encode_items
    from obliviate.data.task import QAItem

    items = small_world.forget[:5] + [QAItem(None, "A raw text with no question at all."),
                                      QAItem("q " * 40, "a long answer " * 20)] + small_world.retain[:3]
    for fmt in (PromptFormat(), PromptFormat(preset="open-unlearning")):
        for max_length in (512, 24):
            got = encode_items(tiny_tokenizer, items, max_length, fmt)
            assert got == [encode(tiny_tokenizer, it.question, it.answer, max_length, fmt) for it in items]
    assert len(got[6].prompt_ids) + len(got[6].answer_ids) <= 24
