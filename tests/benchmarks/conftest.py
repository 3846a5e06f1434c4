"""Each benchmark's reduced run (tests/benchmarks/runs.py), once per session: the benchmark's own
tests and the registry test (test_every_benchmark.py) read the same run directory."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from tests.benchmarks import runs


@pytest.fixture(scope="session")
def muse_run(tmp_path_factory):
    from obliviate.benchmarks import muse

    if not (runs.MUSE_DATA / "raw" / "forget.json").is_file():
        pytest.skip(f"{runs.MUSE_DATA} not present")
    out = tmp_path_factory.mktemp("bench-muse") / "run"
    logs: list[str] = []
    results = muse.run(out, runs.MUSE_SMALL, runs.MUSE_DATA, articles=9, log=logs.append)
    return out, results, logs


@pytest.fixture(scope="session")
def semeval_run(tmp_path_factory):
    from obliviate.benchmarks import semeval

    out = tmp_path_factory.mktemp("bench-semeval") / "run"
    return out, semeval.run(out, runs.SEMEVAL_SMALL, runs.SEMEVAL_DATA, mmlu=0.5, log=lambda _: None)


@pytest.fixture(scope="session")
def tdec_run(tmp_path_factory):
    from obliviate.benchmarks import tdec

    if not (runs.TDEC_DATA / "lm_extraction_32_0.csv").is_file():
        pytest.skip(f"{runs.TDEC_DATA} is absent")
    out = tmp_path_factory.mktemp("bench-tdec") / "run"
    logs: list[str] = []
    results = tdec.run(out, runs.TDEC_SMALL_CFG, runs.TDEC_DATA, forget_set=0, log=logs.append, **runs.TDEC_SMALL)
    return out, results, logs


@pytest.fixture(scope="session")
def tofu_run(tmp_path_factory):
    from obliviate.cli import app

    root = tmp_path_factory.mktemp("bench-tofu")
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump(runs.TOFU_SMALL))
    out = root / "run"
    res = CliRunner().invoke(app, ["bench", "tofu", "--authors", "2", "--methods", "gd", "--attacks",
                                   "rtn4,paraphrase,rtt,noise_int4", "--config", str(config), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, json.loads((out / "results.json").read_text()), res.output


@pytest.fixture(scope="session")
def wmdp_run(tmp_path_factory):
    from obliviate.benchmarks import wmdp

    if not (runs.WMDP_DATA / "wmdp-bio.json").is_file():
        pytest.skip("../shared/data/wmdp is absent")
    root = tmp_path_factory.mktemp("wmdp")
    model_dir = runs.wmdp_tiny_dir(root / "tiny")
    logs: list[str] = []
    results = wmdp.run(root / "run", runs.WMDP_CFG, runs.WMDP_DATA, str(model_dir), limit=runs.WMDP_LIMIT,
                       forget_corpus=runs.text_corpus(root / "forget.jsonl", runs.WMDP_FORGET),
                       retain_corpus=runs.text_corpus(root / "retain.jsonl", runs.WMDP_RETAIN), log=logs.append)
    return root, model_dir, results, logs


@pytest.fixture(scope="session")
def rwku_run(tmp_path_factory, tiny_tokenizer):
    from obliviate.benchmarks import rwku
    from obliviate.models.load import save_model
    from obliviate.models.tiny import TinyModelConfig, build_model

    root = tmp_path_factory.mktemp("rwku")
    cfg_model = TinyModelConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=2)
    model_dir = save_model(build_model(cfg_model, tiny_tokenizer, seed=0), tiny_tokenizer, root / "tiny")
    logs: list[str] = []
    results = rwku.run(root / "run", runs.RWKU_CFG, runs.RWKU_DATA, str(model_dir), ["maren holloway"],
                       log=logs.append)
    return root, model_dir, results, logs
