"""TOFU's model utility (Maini et al. 2024, sec. 2.5.2)."""

import math

from scipy.stats import hmean


def model_utility(values: dict[str, float]) -> float:
    """Harmonic mean of the component values (retain prob / ROUGE / truth ratio and the same per
    utility set). Any component <= 0 gives 0.0, the limit of the harmonic mean; NaN is an error."""
    if not values:
        raise ValueError("model_utility needs at least one component")
    for key, value in values.items():
        if math.isnan(value):
            raise ValueError(f"model_utility: component {key!r} is NaN")
    if any(v <= 0 for v in values.values()):
        return 0.0
    return float(hmean(list(values.values())))
