"""bench/vs_trainer.py compares obliviate with a Trainer baseline: the comparison is fair only if
the baseline computes the same losses. Checked here on one batch against obliviate's methods."""

import copy
import importlib.util
import types
from pathlib import Path

import pytest
import torch

from obliviate.data.collate import collate, encode_items, pad_id_of
from obliviate.methods import get_method, make_params
from obliviate.methods._losses import kl_to_ref, sequence_logp
from obliviate.unlearn import UnlearnContext

BENCH = Path(__file__).resolve().parents[1] / "bench" / "vs_trainer.py"


@pytest.fixture(scope="module")
def vs_trainer():
    spec = importlib.util.spec_from_file_location("vs_trainer", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method", ["ga", "gd", "npo_gd", "npo_kl"])
def test_the_trainer_baseline_computes_obliviates_loss(method, vs_trainer, trained_model, tiny_tokenizer,
                                                       small_world):
    pad = pad_id_of(tiny_tokenizer)
    forget = collate(encode_items(tiny_tokenizer, small_world.forget[:4]), pad, [0, 1, 2, 3])
    retain = collate(encode_items(tiny_tokenizer, small_world.retain[:4]), pad)
    with torch.no_grad():
        for p in trained_model.parameters():  # a model that has moved from its reference
            p.add_(0.02 * torch.randn_like(p))
    ref = copy.deepcopy(trained_model)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    trainer = types.SimpleNamespace(method=method, ref_model=ref, tokens=0)
    with torch.no_grad():
        field = vs_trainer.FieldTrainer.compute_loss(trainer, trained_model, {"forget": forget, "retain": retain})
        ctx = UnlearnContext(params=make_params(get_method(method), {"beta": vs_trainer.BETA}
                                                if method.startswith("npo") else None),
                             ref_model=ref, ref_forget_logp=sequence_logp(ref, forget))
        ours = get_method(method).loss(trained_model, forget, retain, ctx)
    if method == "npo_kl":
        # the field takes KL over every position (prompt and padding too), obliviate over answer
        # tokens only (SPEC section 5): the NPO terms must agree, the KL terms may not
        field_npo = vs_trainer.FieldTrainer.compute_loss(
            types.SimpleNamespace(method="npo_gd", ref_model=ref, tokens=0), trained_model,
            {"forget": forget, "retain": retain}) - vs_trainer._nll(trained_model, retain)
        with torch.no_grad():
            ours_npo = ours - kl_to_ref(trained_model, ref, retain)
        assert field_npo.item() == pytest.approx(float(ours_npo), rel=1e-5)
        assert (field - field_npo).item() > 0 and field.item() != pytest.approx(float(ours), rel=1e-4)
    else:
        assert float(field) == pytest.approx(float(ours), rel=1e-5)
    assert trainer.tokens == int(forget["attention_mask"].sum()) + (
        int(retain["attention_mask"].sum()) if method != "ga" else 0)

