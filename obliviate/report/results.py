"""results.json (the schema later tools read) and per_item.jsonl.

results.json = {"benchmark": str, "seed": int, "config": {...}, "provenance": {...},
                "models": {NAME: {"metrics": {METRIC: float}, "metrics_ci": {METRIC: [lo, hi]},
                                  "per_item": {SET: {METRIC: [...]}}, "unlearn": {...},
                                  "control": true (planted controls only)}}}
(`metrics_ci`: 95% bootstrap intervals over items, `obliviate.evaluate.metric_intervals`)
NaN is written as null (valid JSON) and read back as NaN.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from obliviate.data.task import DataError


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def provenance() -> dict[str, Any]:
    import accelerate
    import torch
    import transformers

    from obliviate import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"obliviate": __version__, "git_commit": commit, "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "platform": platform.platform(),
            # float sums depend on the thread count: the same seed on 1 and 2 threads differs slightly
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}


def write_results(path: Path, results: dict[str, Any]) -> Path:
    """Write atomically (a temp file then rename): an interrupt never leaves a torn file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(results), indent=1, sort_keys=False))
    os.replace(tmp, path)
    return path


def write_json(path: Path, data: Any) -> Path:
    """Write atomically, NaN kept as NaN (caches and partial results read back by Python)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=float))
    os.replace(tmp, path)
    return path


def load_results(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected a run directory with results.json)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e

    def nan(x: Any) -> Any:
        if x is None:
            return float("nan")
        if isinstance(x, dict):
            return {k: nan(v) for k, v in x.items()}
        if isinstance(x, list):
            return [nan(v) for v in x]
        return x

    for entry in data.get("models", {}).values():
        entry["metrics"] = nan(entry.get("metrics", {}))
    return data


def write_per_item(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write atomically (rewritten after every model, so a killed run keeps its finished rows)."""
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(_clean(row)) + "\n")
    os.replace(tmp, path)
    return path


def read_per_item(path: Path) -> list[dict[str, Any]]:
    """The rows `write_per_item` wrote ([] when there is no file)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
