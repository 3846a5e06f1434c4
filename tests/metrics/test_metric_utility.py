import math

import pytest

from obliviate.metrics import METRICS, model_utility


def test_model_utility_harmonic_mean():
    assert abs(model_utility({"a": 0.5, "b": 0.25, "c": 1.0}) - 3 / (2 + 4 + 1)) < 1e-6


def test_model_utility_zero_component():
    assert model_utility({"a": 0.5, "b": 0.0}) == 0.0
    assert model_utility({"a": 0.5, "b": -0.1}) == 0.0


def test_model_utility_nan_names_key():
    with pytest.raises(ValueError, match="retain_rouge"):
        model_utility({"retain_prob": 0.5, "retain_rouge": math.nan})


def test_registry_lists_required_metrics():
    required = {"prob", "rouge", "acc", "truth_ratio", "forget_quality", "model_utility", "exact_mem",
                "extraction_strength", "mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_pp", "privleak"}
    assert required <= set(METRICS)
    for name, info in METRICS.items():
        assert info.name == name and info.description and info.needs
