"""Any Hugging Face causal LM, not only Llama: eight families built from tiny configs in code.

Per family: the weight matrices and the module map (`obliviate.models.modules`) are found with
their layout; every registered method takes two steps and changes weights (or refuses before any
step with one line); every weight attack (quantization, noise) changes the logits and reports how
many matrices it touched.
"""

from __future__ import annotations

import copy

import pytest
import torch
import transformers as T

from obliviate.attacks import AttackContext, AttackUnavailable, available
from obliviate.data.collate import collate, encode_items, pad_id_of
from obliviate.methods import available as methods
from obliviate.methods import get_method
from obliviate.models.modules import (
    attn_out,
    decoder_layers,
    in_features,
    matrix,
    mlp_out,
    out_features,
    weight_matrices,
)
from obliviate.unlearn import UnlearnConfig, unlearn

HIDDEN, INTER, VOCAB = 64, 128, 400  # multiples of 64: bitsandbytes' 4-bit CPU kernel needs them


def _config(family: str, tok) -> T.PretrainedConfig:
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    llama_like = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, **ids)
    return {
        "llama": lambda: T.LlamaConfig(**llama_like),
        "gpt2": lambda: T.GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_inner=INTER, n_layer=2, n_head=2,
                                     n_positions=256, **ids),
        "gpt_neox": lambda: T.GPTNeoXConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER,
                                            num_hidden_layers=2, num_attention_heads=2,
                                            max_position_embeddings=256, **ids),
        "qwen2": lambda: T.Qwen2Config(**llama_like),
        "phi3": lambda: T.Phi3Config(**llama_like),
        "opt": lambda: T.OPTConfig(vocab_size=VOCAB, hidden_size=HIDDEN, ffn_dim=INTER, num_hidden_layers=2,
                                   num_attention_heads=2, max_position_embeddings=256, word_embed_proj_dim=HIDDEN,
                                   **ids),
        "gemma2": lambda: T.Gemma2Config(**llama_like, head_dim=HIDDEN // 2),
        "mistral": lambda: T.MistralConfig(**llama_like),
    }[family]()


# weight matrices per decoder layer (the LM head excluded), and how they are stored
FAMILIES = {"llama": 7, "gpt2": 4, "gpt_neox": 4, "qwen2": 7, "phi3": 4, "opt": 6, "gemma2": 7, "mistral": 7}


@pytest.fixture(params=list(FAMILIES))
def family_model(request, tiny_tokenizer):
    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(_config(request.param, tiny_tokenizer))
    return request.param, model.eval()


def _logits(model, tok) -> torch.Tensor:
    batch = tok(["Question: Where was Ann born?\nAnswer: Oslo"], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_weight_matrices_and_their_layout(family_model):
    family, model = family_model
    found = dict(weight_matrices(model))
    assert len(found) == 2 * FAMILIES[family]
    assert model.get_output_embeddings() not in found.values()
    assert len(dict(weight_matrices(model, include_lm_head=True))) == len(found) + 1
    x = torch.randn(3, HIDDEN)
    for name, module in found.items():
        if in_features(module) != HIDDEN:
            continue
        expected = x @ matrix(module).T + (module.bias if module.bias is not None else 0)
        torch.testing.assert_close(module(x), expected, msg=name)  # matrix() is (out, in) for Conv1D too


def test_module_map(family_model):
    family, model = family_model
    layers = decoder_layers(model)
    assert len(layers) == 2
    for layer in layers:
        mlp, attn = mlp_out(layer, model.config), attn_out(layer, model.config)
        assert (in_features(mlp), out_features(mlp)) == (INTER, HIDDEN), family
        assert out_features(attn) == HIDDEN and attn is not mlp


def test_mlp_output_found_from_structure_when_not_in_the_table():
    class Block(torch.nn.Module):  # names no table knows
        def __init__(self):
            super().__init__()
            self.mix = torch.nn.Linear(HIDDEN, HIDDEN)
            self.widen = torch.nn.Linear(HIDDEN, INTER)
            self.narrow = torch.nn.Linear(INTER, HIDDEN)

    block, config = Block(), T.PretrainedConfig(hidden_size=HIDDEN, intermediate_size=INTER)
    assert mlp_out(block, config) is block.narrow
    with pytest.raises(ValueError, match="obliviate_attn_out"):
        attn_out(block, config)  # attention has no shape of its own: the table or the attribute
    config.obliviate_attn_out = "mix"
    assert attn_out(block, config) is block.mix


def test_unknown_architecture_names_the_attribute_to_set(family_model):
    _, model = family_model
    with pytest.raises(ValueError, match="model.config.obliviate_mlp_out"):
        mlp_out(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    model.config.obliviate_attn_out = "nowhere.proj"
    with pytest.raises(ValueError, match="obliviate_attn_out"):
        attn_out(decoder_layers(model)[0], model.config)


@pytest.fixture
def _no_full_gc(monkeypatch):
    """accelerate's `free_memory` (the end of every `unlearn`) runs a full `gc.collect()`, ~0.7 s in
    a long pytest session; 144 runs here would spend minutes on it. Reference counting still frees
    the models; only the collection of cycles is deferred."""
    import types

    import accelerate.utils.memory as memory

    monkeypatch.setattr(memory, "gc", types.SimpleNamespace(collect=lambda *a: 0))


@pytest.mark.parametrize("name", sorted(methods()))
def test_every_method_takes_two_steps_on_every_family(name, family_model, small_world, tiny_tokenizer, _no_full_gc):
    family, model = family_model
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    log = unlearn(model, tiny_tokenizer, small_world, UnlearnConfig(method=name, lr=1e-3, max_steps=2, batch_size=4))
    steps = 2 if get_method(name).trains else 0
    assert (log.status, log.steps) == ("done", steps), f"{family}/{name}: {log.message}"
    changed = [k for k, v in model.state_dict().items() if k not in before or not torch.equal(v, before[k])]
    assert changed, f"{family}/{name}: no weight changed"


def test_qau_forwards_through_quantized_weights_and_diagnostics_see_every_matrix(family_model, tiny_tokenizer):
    """GPT-2's Conv1D once escaped both: qau trained without a quantized forward and the
    diagnostics reported no change."""
    from obliviate.attacks.quantize import fake_quantize, quantized_change_fraction, relative_weight_change
    from obliviate.methods.qau import quantized_logits, ste_weights

    family, model = family_model
    ste = ste_weights(model, 4)
    assert len(ste) == 2 * FAMILIES[family]
    assert all(ste[f"{n}.weight"].shape == m.weight.shape for n, m in weight_matrices(model))
    batch = tiny_tokenizer(["Question: Where was Ann born?\nAnswer: Oslo"], return_tensors="pt")
    with torch.no_grad():
        moved = (quantized_logits(model, batch, 4) - model(**batch).logits).abs().max()
    assert moved > 1e-6
    other = copy.deepcopy(model)
    with torch.no_grad():
        for _, module in weight_matrices(other):
            matrix(module).copy_(fake_quantize(matrix(module), 3)[0])
    assert quantized_change_fraction(model, other, bits=8) > 0 and relative_weight_change(model, other) > 0


WEIGHT_ATTACKS = sorted(n for n, a in available().items() if a.family in ("quantization", "noise"))


@pytest.mark.parametrize("attack", WEIGHT_ATTACKS)
def test_every_weight_attack_changes_the_logits_of_every_family(attack, family_model, small_world, tiny_tokenizer):
    family, model = family_model
    ctx = AttackContext(tokenizer=tiny_tokenizer, task=small_world, params={"n_calibration": 8}
                        if attack in ("gptq4", "awq4") else {})
    try:
        attacked = available()[attack].run(model, ctx)
    except AttackUnavailable as e:  # e.g. no bitsandbytes build here: documented, one line
        assert "\n" not in str(e)
        pytest.skip(str(e))
    assert attacked.info["n_layers"] == 2 * FAMILIES[family]
    moved = (_logits(attacked.model, tiny_tokenizer) - _logits(model, tiny_tokenizer)).abs().max()
    assert moved > 1e-6, f"{family}/{attack}: the logits did not change"


# --- GPT-2's transposed Conv1D in the methods that work on rows and columns -----------------------

@pytest.fixture
def gpt2(tiny_tokenizer):
    torch.manual_seed(0)
    return T.AutoModelForCausalLM.from_config(_config("gpt2", tiny_tokenizer)).eval()


def _ctx(name: str, task, tokenizer, **params):
    from obliviate.methods import make_params
    from obliviate.unlearn import UnlearnContext

    return UnlearnContext(params=make_params(get_method(name), params), task=task, tokenizer=tokenizer,
                          config=UnlearnConfig(method=name, batch_size=4))


def _logits_of(model, tokenizer, items):
    batch = collate(encode_items(tokenizer, items), pad_id_of(tokenizer))
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_fila_on_conv1d_keeps_the_function_and_merges_back(gpt2, small_world, tiny_tokenizer):
    from obliviate.methods import fila

    before = _logits_of(gpt2, tiny_tokenizer, small_world.forget)
    ctx = _ctx("fila", small_world, tiny_tokenizer)
    fila.setup(gpt2, small_world, ctx)
    torch.testing.assert_close(_logits_of(gpt2, tiny_tokenizer, small_world.forget), before, rtol=0, atol=1e-5)
    fila.finalize(gpt2, ctx)
    assert type(gpt2.transformer.h[0].mlp.c_proj).__name__ == "Conv1D"  # a plain checkpoint again
    torch.testing.assert_close(_logits_of(gpt2, tiny_tokenizer, small_world.forget), before, rtol=0, atol=1e-5)


def test_sure_masks_output_units_of_conv1d(gpt2, small_world, tiny_tokenizer):
    """A SURE row is an output unit: a COLUMN of Conv1D's stored (in, out) weight."""
    from obliviate.methods import sure

    ctx = _ctx("sure", small_world, tiny_tokenizer)
    sure.setup(gpt2, small_world, ctx)
    modules = dict(gpt2.named_modules())
    assert all(m.shape == (out_features(modules[n]),) for n, m in ctx.state["mask"].items())
    before = {n: modules[n].weight.detach().clone() for n in ctx.state["mask"]}
    opt = torch.optim.SGD([p for p in gpt2.parameters() if p.requires_grad], lr=1.0)
    pad = pad_id_of(tiny_tokenizer)
    batch = collate(encode_items(tiny_tokenizer, small_world.forget[:4]), pad, range(4))
    retain = collate(encode_items(tiny_tokenizer, small_world.retain[:4]), pad)
    get_method("sure").loss(gpt2, batch, retain, ctx).backward()
    opt.step()
    sure.after_step(gpt2, ctx)
    for name, mask in ctx.state["mask"].items():
        w = modules[name].weight.detach()
        assert torch.equal(w[:, ~mask], before[name][:, ~mask]), name  # frozen output units: columns
        if mask.any():
            assert not torch.equal(w[:, mask], before[name][:, mask]), name


def test_prune_zeroes_input_rows_of_conv1d(gpt2, small_world, tiny_tokenizer):
    """A pruned unit is an input of the output projection: a ROW of Conv1D's stored weight."""
    from obliviate.methods import prune

    ctx = _ctx("prune", small_world, tiny_tokenizer, steps=1, frac=0.05)
    prune.setup(gpt2, small_world, ctx)
    pruned = ctx.state["prune_pruned"]
    for target, find in (("mlp", mlp_out), ("attn", attn_out)):
        for layer, mask in zip(decoder_layers(gpt2), pruned[target], strict=True):
            w = find(layer, gpt2.config).weight  # Conv1D: (in, out)
            assert mask.shape == (w.shape[0],)
            assert (w[mask] == 0).all() and (w[~mask].abs().sum(1) > 0).all()
        assert pruned[target].any()
