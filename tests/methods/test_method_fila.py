"""FILA (obliviate/methods/fila.py): the Fisher importance, the exact residual initialisation,
adapter-only training, and the merge back to a plain checkpoint.

The importance is recomputed here from the tiny model's own gradients (cross-entropy written
with log_softmax + gather); the SVD initialisation is checked on a hand-made case.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("peft")

import obliviate.methods.fila as fila  # noqa: E402
from obliviate.data.collate import collate, encode_items, pad_id_of  # noqa: E402
from obliviate.methods import get_method, make_params  # noqa: E402
from obliviate.methods._losses import nll_mean  # noqa: E402
from obliviate.models.load import load_model, save_model  # noqa: E402
from obliviate.unlearn import UnlearnConfig, UnlearnContext, unlearn  # noqa: E402

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def _linear_names(model) -> list[str]:
    return [f"model.layers.{i}.{n}" for i in range(model.config.num_hidden_layers) for n in LINEARS]


def _ctx(task, tokenizer, batch_size=4, **overrides):
    return UnlearnContext(params=make_params(get_method("fila"), overrides), task=task,
                          config=UnlearnConfig(method="fila", batch_size=batch_size), tokenizer=tokenizer)


def _batches(items, tokenizer, size):
    enc = encode_items(tokenizer, items)
    return [collate(enc[i:i + size], pad_id_of(tokenizer)) for i in range(0, len(enc), size)]


def _ce(model, batch) -> tuple[torch.Tensor, int]:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    target = batch["labels"][:, 1:]
    mask = target != -100
    picked = logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return -(picked * mask).sum() / mask.sum(), int(mask.sum())


def _fisher(model, batches, names) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    weights = [modules[n].weight for n in names]
    total, n_total = [torch.zeros_like(w) for w in weights], 0
    for batch in batches:
        loss, n = _ce(model, batch)
        for acc, g in zip(total, torch.autograd.grad(loss, weights), strict=True):
            acc += g ** 2 * n
        n_total += n
    return {name: f / n_total for name, f in zip(names, total, strict=True)}


def _nll(model, tokenizer, items) -> float:
    with torch.no_grad():
        return float(nll_mean(model, collate(encode_items(tokenizer, items), pad_id_of(tokenizer))))


def _forget_nll(model, tokenizer, task) -> float:
    return _nll(model, tokenizer, task.forget)


def test_importance_is_the_ratio_of_forget_to_retain_fisher(small_world, tiny_model, tiny_tokenizer):
    names = _linear_names(tiny_model)
    expect_f = _fisher(tiny_model, _batches(small_world.forget, tiny_tokenizer, 4), names)
    expect_r = _fisher(tiny_model, _batches(small_world.retain, tiny_tokenizer, 4), names)
    ctx = _ctx(small_world, tiny_tokenizer)
    fila.setup(tiny_model, small_world, ctx)
    imp = ctx.state["importance"]
    assert sorted(imp) == sorted(names)
    for name in names:
        expected = expect_f[name] / (1e-5 + expect_r[name])
        torch.testing.assert_close(imp[name], expected, rtol=1e-4, atol=1e-6)


def test_init_is_the_weighted_low_rank_part_and_its_residual():
    torch.manual_seed(0)
    w = torch.randn(6, 4)
    # full rank: the adapter holds all of W and the residual is 0, whatever the importance
    a, b, base = fila.fila_init(w, torch.rand(6, 4), rank=4, scaling=2.0)
    assert a.shape == (4, 4) and b.shape == (6, 4)
    torch.testing.assert_close(2.0 * b @ a, w, rtol=0, atol=5e-5)
    torch.testing.assert_close(base, torch.zeros(6, 4), rtol=0, atol=5e-5)
    # lower rank (svd_lowrank is randomised, so approximate): the residual still completes W
    a, b, base = fila.fila_init(w, torch.rand(6, 4), rank=2, scaling=2.0)
    assert a.shape == (2, 4) and b.shape == (6, 2)
    assert torch.linalg.matrix_rank(b @ a) == 2
    torch.testing.assert_close(base + 2.0 * b @ a, w, rtol=0, atol=1e-6)
    # one row with all the importance: the rank-1 adapter holds (almost exactly) that row
    imp = torch.full((6, 4), 1e-8)
    imp[3] = 1.0
    a, b, base = fila.fila_init(w, imp, rank=1, scaling=1.0)
    torch.testing.assert_close((b @ a)[3], w[3], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(base[3], torch.zeros(4), rtol=0, atol=1e-3)


def test_init_is_deterministic_whatever_the_global_rng():
    w, imp = torch.randn(16, 8), torch.rand(16, 8)
    torch.manual_seed(1)
    first = fila.fila_init(w, imp, rank=2, scaling=2.0)
    torch.manual_seed(2)
    second = fila.fila_init(w, imp, rank=2, scaling=2.0)
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x, y)


def test_setup_leaves_the_logits_unchanged(small_world, tiny_model, tiny_tokenizer):
    original = copy.deepcopy(tiny_model)
    fila.setup(tiny_model, small_world, _ctx(small_world, tiny_tokenizer))
    batch = collate(encode_items(tiny_tokenizer, small_world.forget + small_world.retain[:8]),
                    pad_id_of(tiny_tokenizer))
    with torch.no_grad():
        got = tiny_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        want = original(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # ... and the adapters are not trivial: they hold part of each weight
    modules = dict(tiny_model.named_modules())
    for name in _linear_names(tiny_model):
        assert modules[name].lora_B["default"].weight.abs().sum() > 0, name


def test_only_the_adapters_train(small_world, tiny_model, tiny_tokenizer):
    residual = copy.deepcopy(tiny_model)
    fila.setup(residual, small_world, _ctx(small_world, tiny_tokenizer))
    trainable = [n for n, p in residual.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert len(trainable) == 2 * len(_linear_names(residual))
    start = {k: v.detach().clone() for k, v in residual.state_dict().items()}

    log = unlearn(tiny_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="fila", params={"merge": False}, lr=1e-3, weight_decay=0.1,
                                max_steps=3, batch_size=4))
    assert (log.status, log.steps) == ("done", 3), log.message
    after = tiny_model.state_dict()
    assert after.keys() == start.keys()  # merge=False: the LoRA layers are still there
    for key, value in after.items():
        if ".lora_A." in key or ".lora_B." in key:
            assert not torch.equal(value, start[key]), key
        else:  # residual bases, embeddings, norms, head: bit-identical despite weight decay
            assert torch.equal(value, start[key]), key


@pytest.mark.parametrize("loss", ["ihl", "gd"])
def test_unlearn_merges_to_a_plain_model_and_forgets(loss, small_world, trained_model, tiny_tokenizer):
    tiny_model = trained_model  # trained: IHL's gradient is ~0 where p(y) is uniform
    keys = tiny_model.state_dict().keys()
    before = _forget_nll(tiny_model, tiny_tokenizer, small_world)
    retain_before = _nll(tiny_model, tiny_tokenizer, small_world.retain)
    log = unlearn(tiny_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="fila", params={"loss": loss}, lr=3e-3, max_steps=10, batch_size=4))
    assert (log.status, log.steps) == ("done", 10), log.message
    modules = dict(tiny_model.named_modules())
    for name in _linear_names(tiny_model):
        assert type(modules[name]) is nn.Linear, name
    assert not any("lora" in n for n in modules)
    assert tiny_model.state_dict().keys() == keys
    assert not hasattr(tiny_model, "peft_config")
    after = _forget_nll(tiny_model, tiny_tokenizer, small_world)
    assert after > before + 1.0, f"forget NLL {before:.4f} -> {after:.4f}"
    retain_after = _nll(tiny_model, tiny_tokenizer, small_world.retain)
    assert retain_after - retain_before < 0.5 * (after - before), (retain_before, retain_after)


def test_merged_model_saves_and_loads(tmp_path, small_world, tiny_model, tiny_tokenizer):
    unlearn(tiny_model, tiny_tokenizer, small_world,
            UnlearnConfig(method="fila", lr=1e-3, max_steps=2, batch_size=4))
    save_model(tiny_model, tiny_tokenizer, tmp_path / "fila")
    loaded, _ = load_model(tmp_path / "fila")
    assert type(loaded) is type(tiny_model)
    assert loaded.state_dict().keys() == tiny_model.state_dict().keys()
    batch = collate(encode_items(tiny_tokenizer, small_world.forget), pad_id_of(tiny_tokenizer))
    with torch.no_grad():
        got = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        want = tiny_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=1e-5)


def test_unknown_loss_names_the_choices(small_world, tiny_model, tiny_tokenizer):
    with pytest.raises(ValueError, match="ihl, gd"):
        fila.setup(tiny_model, small_world, _ctx(small_world, tiny_tokenizer, loss="npo"))
