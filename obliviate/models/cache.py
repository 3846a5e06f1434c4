"""The user cache: tiny target/oracle models and the oracle's evaluation, keyed by content.

Keys hash everything that determines the artefact (task fingerprint, model and training
configs, seed, package version), so a stale cache is never silently reused (SPEC section 5).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel


def cache_root() -> Path:
    root = os.environ.get("OBLIVIATE_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "obliviate"


def cache_key(*parts: Any) -> str:
    from obliviate import __version__

    def plain(p: Any) -> Any:
        return p.model_dump() if isinstance(p, BaseModel) else p

    blob = json.dumps([__version__] + [plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def commit_dir(tmp: Path, final: Path) -> Path:
    """Move a finished artefact into place atomically: an interrupted build leaves no half cache."""
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    return final
