"""MRP (Metamorphosis Representation Projection): the projection algebra and the initialisation
on hand-made numbers, then the method on the tiny models: only the projection trains, it moves
the forget NLL, it survives save/load and deepcopy, and continual runs stack subspaces."""

import copy

import pytest
import torch

from obliviate.data.collate import collate, encode_items, pad_id_of
from obliviate.methods import get_method
from obliviate.methods._losses import nll_mean
from obliviate.methods.mrp import (
    MRPParams,
    init_directions,
    predicting_positions,
    resolve_layers,
    retain_subspace,
    second_moments,
    setup,
)
from obliviate.models import projection as proj
from obliviate.models.load import load_model, save_model
from obliviate.unlearn import UnlearnConfig, UnlearnContext, unlearn


def _batch(tokenizer, items):
    return collate(encode_items(tokenizer, items), pad_id_of(tokenizer))


def _nll(model, tokenizer, items) -> float:
    with torch.no_grad():
        return float(nll_mean(model, _batch(tokenizer, items)))


def _logits(model, tokenizer, items) -> torch.Tensor:
    batch = _batch(tokenizer, items)
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _in_span(rows: torch.Tensor, basis: torch.Tensor, atol=1e-5) -> bool:
    """Every row of `rows` lies in the span of the orthonormal rows of `basis`."""
    return torch.allclose(rows @ basis.T @ basis, rows, atol=atol)


# --- the projection on hand-made numbers ----------------------------------------------------------


def test_project_out_removes_exactly_the_span():
    w = torch.tensor([[2.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])  # spans e1, e2; not orthonormal
    q = proj.orthonormal_rows(w)
    assert q.shape == (2, 4)
    assert torch.allclose(q @ q.T, torch.eye(2), atol=1e-6)
    assert _in_span(w, q)
    h = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, -1.0, 0.0, 0.0], [0.0, 0.0, -2.0, 7.0]])
    out = proj.project_out(h, q)
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -2.0, 7.0]]),
                          atol=1e-6)
    assert torch.allclose(proj.project_out(out, q), out, atol=1e-6)  # idempotent
    assert torch.equal(out[2], h[2])  # the orthogonal complement is untouched


def test_project_out_keeps_dtype_and_works_on_batches_of_sequences():
    q = proj.orthonormal_rows(torch.tensor([[0.0, 3.0, 4.0]]))  # (0, .6, .8)
    h = torch.tensor([[[0.0, 3.0, 4.0], [1.0, 4.0, -3.0]]], dtype=torch.bfloat16)
    out = proj.project_out(h, q)
    assert out.dtype == torch.bfloat16 and out.shape == (1, 2, 3)
    assert torch.allclose(out.float(), torch.tensor([[[0.0, 0.0, 0.0], [1.0, 4.0, -3.0]]]), atol=2e-2)


def test_residual_projection_stacks_fixed_and_learned_rows():
    e = torch.eye(5)
    module = proj.ResidualProjection(fixed=e[:1], weight=torch.stack([e[1] + e[0], 2 * e[2]]))
    assert module.rank == 3 and module.weight.requires_grad
    q = module.basis()
    assert torch.allclose(q @ q.T, torch.eye(3), atol=1e-6)
    assert _in_span(e[:3], q)
    h = torch.arange(1.0, 6.0).unsqueeze(0)
    assert torch.allclose(module(h), torch.tensor([[0.0, 0.0, 0.0, 4.0, 5.0]]), atol=1e-6)
    module.freeze()
    assert module.weight is None and module.rank == 3
    assert torch.allclose(module(h), torch.tensor([[0.0, 0.0, 0.0, 4.0, 5.0]]), atol=1e-6)
    assert proj.ResidualProjection(hidden_size=5)(h) is h  # rank 0: identity


# --- the initialisation on hand-made numbers ------------------------------------------------------


def test_retain_subspace_takes_the_energy_share():
    c = torch.diag(torch.tensor([10.0, 0.5, 0.0, 0.0], dtype=torch.float64))
    one = retain_subspace(c, 0.9, 4)  # e1 holds 10/10.5 = 95%
    assert one.shape == (1, 4) and torch.allclose(one.abs(), torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64))
    assert retain_subspace(c, 0.99, 4).shape == (2, 4)
    assert retain_subspace(c, 0.99, 1).shape == (1, 4)  # capped
    assert retain_subspace(c, 0.0, 4).shape == (0, 4)


def test_init_is_forget_directions_outside_the_retain_subspace():
    e = torch.eye(4)
    c_retain = torch.diag(torch.tensor([10.0, 0.5, 0.0, 0.0]))
    c_forget = torch.diag(torch.tensor([100.0, 0.0, 3.0, 1.0]))  # e1 is shared with retain
    w1 = init_directions(c_forget, c_retain, k=1, energy=0.9)
    assert torch.allclose(w1.abs(), e[2:3], atol=1e-6)  # e3, not the shared e1
    w2 = init_directions(c_forget, c_retain, k=2, energy=0.9)
    assert torch.allclose(w2 @ w2.T, torch.eye(2), atol=1e-6)
    assert _in_span(e[2:4], w2)
    # without protecting the retain subspace the top forget direction is the shared one
    assert torch.allclose(init_directions(c_forget, c_retain, k=1, energy=0.0).abs(), e[:1], atol=1e-6)
    # continual: an already-removed e3 is not chosen again
    assert torch.allclose(init_directions(c_forget, c_retain, k=1, energy=0.9, removed=e[2:3]).abs(), e[3:4],
                          atol=1e-6)
    with pytest.raises(ValueError, match="cannot remove 2 more"):
        init_directions(c_forget, c_retain, k=2, energy=0.9, removed=e[:3])


def test_predicting_positions_are_one_before_each_answer_token():
    labels = torch.tensor([[-100, -100, 7, 8, -100], [-100, 5, 6, 9, 4]])
    assert predicting_positions(labels).tolist() == [[False, True, True, False, False],
                                                     [True, True, True, True, False]]


def test_resolve_layers():
    assert resolve_layers(None, 2) == [0]
    assert resolve_layers(None, 32) == [15]
    assert resolve_layers(None, 12) == [5]
    assert resolve_layers(1, 2) == [1]
    assert resolve_layers([1, 0, 1], 2) == [0, 1]
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers([2], 2)
    with pytest.raises(ValueError, match="empty"):
        resolve_layers([], 2)


# --- the method on the tiny models ---------------------------------------------------------------


def _ctx(tokenizer, task, **params):
    cfg = UnlearnConfig(method="mrp", batch_size=4)
    return UnlearnContext(params=MRPParams(**params), task=task, config=cfg, tokenizer=tokenizer)


def test_setup_initialises_w_and_freezes_everything_else(trained_model, small_world, tiny_tokenizer):
    ctx = _ctx(tiny_tokenizer, small_world)
    setup(trained_model, small_world, ctx)
    assert ctx.state["mrp_layers"] == [0]
    module = proj.projections(trained_model)[0]
    assert module is ctx.state["mrp_modules"][0]
    trainable = [name for name, w in trained_model.named_parameters() if w.requires_grad]
    assert trainable == ["model.layers.0.residual_projection.weight"]
    w = module.weight.detach()
    assert w.shape == (2, 64) and torch.allclose(w @ w.T, torch.eye(2), atol=1e-5)
    # the statistics W was initialised from (taken before the projection was attached)
    proj.detach(trained_model)

    def batches(items):
        return [collate(encode_items(tiny_tokenizer, items[i:i + 4]), pad_id_of(tiny_tokenizer))
                for i in range(0, len(items), 4)]

    c_f = second_moments(trained_model, batches(small_world.forget), [0])[0]
    c_r = second_moments(trained_model, batches(small_world.retain), [0])[0]
    u_r = retain_subspace(c_r, 0.9, 62).float()
    assert u_r.shape[0] >= 1
    assert (w @ u_r.T).abs().max() < 1e-4  # outside the retain principal subspace
    assert torch.allclose(w.abs(), init_directions(c_f, c_r, 2, 0.9).abs(), atol=1e-4)

    def energy_share(c, rows):
        return float(torch.trace(rows.double() @ c @ rows.double().T) / torch.trace(c))

    # the subspace holds a larger share of the forget states' energy than of the retain states'
    # (measured: 2.5% and 0.8%), and less retain energy than a random 2-d subspace's 2/64 on average
    assert energy_share(c_f, w) > 2 * energy_share(c_r, w)
    assert energy_share(c_r, w) < 0.5 * 2 / 64


def test_only_the_projection_trains_and_weights_stay_bit_identical(trained_model, small_world, tiny_tokenizer):
    trained_model.model.norm.weight.requires_grad_(False)  # a caller's freeze is restored after
    before = {k: v.clone() for k, v in trained_model.state_dict().items()}
    logits0 = _logits(trained_model, tiny_tokenizer, small_world.forget[:4])
    log = unlearn(trained_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="mrp", lr=1e-3, max_steps=3, batch_size=4))
    assert (log.status, log.steps) == ("done", 3), log.message
    after = trained_model.state_dict()
    assert set(after) - set(before) == {"model.layers.0.residual_projection.fixed"}
    assert all(torch.equal(after[k], v) for k, v in before.items())
    module = proj.projections(trained_model)[0]
    assert module.weight is None and module.rank == 2  # folded into the fixed basis
    basis = after["model.layers.0.residual_projection.fixed"]
    assert torch.allclose(basis @ basis.T, torch.eye(2), atol=1e-5)
    flags = {n: w.requires_grad for n, w in trained_model.named_parameters()}
    assert not flags.pop("model.norm.weight") and all(flags.values())
    assert not torch.allclose(_logits(trained_model, tiny_tokenizer, small_world.forget[:4]), logits0, atol=1e-3)


def test_forget_nll_rises_more_than_retain(trained_model, small_world, tiny_tokenizer):
    f0, r0 = _nll(trained_model, tiny_tokenizer, small_world.forget), _nll(trained_model, tiny_tokenizer,
                                                                          small_world.retain)
    log = unlearn(trained_model, tiny_tokenizer, small_world,
                  UnlearnConfig(method="mrp", lr=1e-2, max_steps=30, batch_size=4))
    assert log.status == "done", log.message
    f1, r1 = _nll(trained_model, tiny_tokenizer, small_world.forget), _nll(trained_model, tiny_tokenizer,
                                                                          small_world.retain)
    # measured: forget 0.06 -> 0.49, retain 0.055 -> 0.073
    assert f1 - f0 > 0.2 and f1 - f0 > 5 * (r1 - r0), (f0, f1, r0, r1)


def test_direction_with_the_retain_term_off(trained_model, small_world, tiny_tokenizer):
    """The registry's direction test (10 steps, lr 1e-3, alpha 0), on the trained model."""
    before = _nll(trained_model, tiny_tokenizer, small_world.forget)
    unlearn(trained_model, tiny_tokenizer, small_world,
            UnlearnConfig(method="mrp", params={"alpha": 0.0}, lr=1e-3, max_steps=10, batch_size=4))
    after = _nll(trained_model, tiny_tokenizer, small_world.forget)
    assert after > before + 0.04, (before, after)  # measured: 0.061 -> 0.115


def test_save_load_round_trip_keeps_the_projection(tmp_path, trained_model, small_world, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    bare = _logits(trained_model, tiny_tokenizer, small_world.forget[:4])
    unlearn(trained_model, tiny_tokenizer, small_world, UnlearnConfig(method="mrp", lr=1e-2, max_steps=3,
                                                                      batch_size=4))
    projected = _logits(trained_model, tiny_tokenizer, small_world.forget[:4])
    out = save_model(trained_model, tiny_tokenizer, tmp_path / "mrp")
    assert (out / proj.PROJECTION_FILE).is_file()
    assert proj.has_projection(trained_model)  # saving put it back on the model
    loaded, _ = load_model(out)
    assert sorted(proj.projections(loaded)) == [0] and proj.projections(loaded)[0].rank == 2
    assert torch.allclose(_logits(loaded, tiny_tokenizer, small_world.forget[:4]), projected, atol=1e-5)
    # the weights file is a plain checkpoint: a plain HF load is the model without its projection
    plain = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    assert not proj.has_projection(plain)
    assert torch.allclose(_logits(plain, tiny_tokenizer, small_world.forget[:4]), bare, atol=1e-5)
    # a model without a projection saved over the directory leaves no stale projection file
    save_model(plain, tiny_tokenizer, out)
    assert not (out / proj.PROJECTION_FILE).exists()
    assert not proj.has_projection(load_model(out)[0])


def test_deepcopy_carries_a_working_projection(trained_model, small_world, tiny_tokenizer):
    unlearn(trained_model, tiny_tokenizer, small_world, UnlearnConfig(method="mrp", lr=1e-2, max_steps=3,
                                                                      batch_size=4))
    clone = copy.deepcopy(trained_model)
    assert proj.projections(clone)[0] is not proj.projections(trained_model)[0]
    items = small_world.forget[:4]
    assert torch.allclose(_logits(clone, tiny_tokenizer, items), _logits(trained_model, tiny_tokenizer, items))
    proj.detach(clone)  # removing it from the copy leaves the original projected
    assert proj.has_projection(trained_model) and not proj.has_projection(clone)
    assert not torch.allclose(_logits(clone, tiny_tokenizer, items), _logits(trained_model, tiny_tokenizer, items),
                              atol=1e-3)


def test_continual_unlearning_stacks_subspaces(tmp_path, trained_model, small_world, tiny_tokenizer):
    cfg = UnlearnConfig(method="mrp", lr=1e-2, max_steps=3, batch_size=4)
    unlearn(trained_model, tiny_tokenizer, small_world, cfg)
    first = proj.projections(trained_model)[0].basis().detach().clone()
    # the second run starts from the saved model: the projection is loaded and extended
    loaded, _ = load_model(save_model(trained_model, tiny_tokenizer, tmp_path / "first"))
    unlearn(loaded, tiny_tokenizer, small_world, cfg)
    second = proj.projections(loaded)[0]
    assert second.rank == 4 and second.weight is None
    q = second.basis()
    assert torch.allclose(q @ q.T, torch.eye(4), atol=1e-5)
    assert _in_span(first, q)  # W_old kept fixed: the old subspace is still removed
    # a third run on other layers adds a projection there and leaves layer 0 alone
    unlearn(loaded, tiny_tokenizer, small_world, UnlearnConfig(method="mrp", params={"layers": [1]}, lr=1e-2,
                                                               max_steps=2, batch_size=4))
    assert {i: p.rank for i, p in proj.projections(loaded).items()} == {0: 4, 1: 2}
    assert torch.allclose(proj.projections(loaded)[0].basis(), q)


def test_registered_with_typed_params():
    method = get_method("mrp")
    p = method.params()
    assert (p.k, p.layers, p.alpha) == (2, None, 1.2)
    assert method.setup is setup and method.finalize is not None and method.trains
    assert "Wu et al. 2025" in method.description
    import obliviate.methods.mrp as mrp

    assert "arXiv:2508.15449" in mrp.__doc__
