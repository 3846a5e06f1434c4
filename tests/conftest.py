"""Shared fixtures: offline, seeded, tiny models built in milliseconds."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OBLIVIATE_NO_PROGRESS", "1")
# one torch thread: tiny models gain nothing from a second, and the CLI's own thread setup
# (obliviate.cli._setup_threads) respects OMP_NUM_THREADS instead of taking every core
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from obliviate.data.world import WorldConfig, generate_world, world_corpus  # noqa: E402
from obliviate.models.tiny import TinyModelConfig, build_model, train_tokenizer  # noqa: E402

torch.set_num_threads(1)  # tiny models: a second thread only adds contention

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests never read or write the user's model cache."""
    os.environ["OBLIVIATE_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def small_world():
    """A reduced embedded world: 12 people x 4 facts, 2 holdout people."""
    return generate_world(WorldConfig(n_people=12, n_attributes=4, forget_fraction=0.25,
                                      n_holdout_people=2, n_countries=4, retain_eval_size=24))


@pytest.fixture(scope="session")
def tiny_tokenizer(small_world):
    return train_tokenizer(world_corpus(small_world), vocab_size=400)


@pytest.fixture
def tiny_model(tiny_tokenizer):
    """An untrained 2-layer Llama (hidden 64): fast, deterministic."""
    cfg = TinyModelConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=2)
    return build_model(cfg, tiny_tokenizer, seed=0)


@pytest.fixture(scope="session")
def _trained_state(small_world, tiny_tokenizer):
    from obliviate.data.collate import collate, encode_items, pad_id_of
    from obliviate.methods._losses import nll_mean

    torch.manual_seed(0)
    cfg = TinyModelConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=2)
    model = build_model(cfg, tiny_tokenizer, seed=0)
    batch = collate(encode_items(tiny_tokenizer, small_world.forget + small_world.retain), pad_id_of(tiny_tokenizer))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        opt.zero_grad()
        nll_mean(model, batch).backward()
        opt.step()
    return cfg, {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def trained_model(_trained_state, tiny_tokenizer):
    """The tiny model after 60 Adam steps on all the small world's facts (answer NLL ~0.06):
    trained once per session, a fresh copy per test."""
    cfg, state = _trained_state
    model = build_model(cfg, tiny_tokenizer, seed=0)
    model.load_state_dict(state)
    return model.eval()


REDUCED = {
    "methods": ["gd", "npo_kl"],
    "world": {"n_people": 16, "n_attributes": 4, "forget_fraction": 0.25, "n_holdout_people": 2,
              "n_countries": 4, "retain_eval_size": 40},
    "model": {"vocab_size": 512, "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2},
    "train": {"max_epochs": 60, "target_acc": 0.95, "check_every": 5},
    "audit": {"attacks": ["rtn8", "rtn4", "gptq4", "noise_int4", "rtt", "in_context", "paraphrase"]},
}


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo on a reduced world, once per session (the demo's tests and the benchmark registry test)."""
    from obliviate.config import RunConfig
    from obliviate.pipeline import run_world

    out = tmp_path_factory.mktemp("demo")
    logs: list[str] = []
    results = run_world(RunConfig(**REDUCED), out, log=logs.append)
    return out, results, logs


@pytest.fixture
def user_files(tmp_path, small_world, tiny_model, tiny_tokenizer):
    """An untrained tiny model and the small world's forget/retain sets as files (CLI tests)."""
    from tests.files import user_files as make

    return make(tmp_path, small_world, tiny_model, tiny_tokenizer)


@pytest.fixture
def trained_files(tmp_path, small_world, trained_model, tiny_tokenizer):
    """The trained tiny model and the small world's forget/retain sets as files (CLI tests)."""
    from tests.files import user_files as make

    return make(tmp_path, small_world, trained_model, tiny_tokenizer)
