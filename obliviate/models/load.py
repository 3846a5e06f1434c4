"""Load and save any Hugging Face causal LM (local directory, or Hub id when online).

Tiny models, user models and real checkpoints all go through `load_model`; a directory that
is not a causal LM is a one-line error, not a stack trace.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from obliviate.data.task import DataError
from obliviate.models import projection


def default_dtype(device: str | None = None) -> torch.dtype:
    """fp32 on CPU (some CPUs have no fast bf16: 1 GFLOP/s against 70 in fp32), bf16 on GPUs that have it."""
    if (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _looks_like_path(name: str) -> bool:
    """A name that can only mean a local directory: it starts with . / ~, has a backslash or more
    than one "/", or its parent directory exists here (`runs/x` when runs/ exists); "org/name"
    is a Hub id."""
    path = Path(name)
    return (name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1
            or (path.parent != Path(".") and path.parent.is_dir()))


def check_model(name: str | Path) -> None:
    """Fail early, in one line, on a model that cannot load: a path that does not exist ("no
    such model directory", not a Hub connection error), a directory without config.json, a
    corrupt safetensors file (only the headers are read: cheap even for a 7B model)."""
    from safetensors import safe_open

    path = Path(name)
    if not path.exists():
        if _looks_like_path(str(name)):
            raise DataError(f"{name}: no such model directory")
        return  # a Hub id
    if not (path / "config.json").is_file():
        raise DataError(f"{path}: not a Hugging Face model directory (no config.json)")
    for f in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(f), "pt"):
                pass
        except Exception as e:  # SafetensorError (not an OSError), or an OSError reading it
            raise DataError(f"{f}: corrupt or unreadable weights file ({str(e).splitlines()[0]})") from None


def load_model(name: str | Path, dtype: torch.dtype | str | None = None, device: str | None = None):
    """Return (model, tokenizer) for a causal LM directory or Hub id, on `device` (default: the
    GPU when there is one, else the CPU) in `dtype` (default: see `default_dtype`)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # ours show progress; a bar per tiny load is noise

    path = Path(name)
    check_model(name)
    try:
        config = AutoConfig.from_pretrained(str(name))
    except (OSError, ValueError) as e:
        raise DataError(f"{name}: cannot read the model config ({str(e).splitlines()[0]})") from e
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    archs = getattr(config, "architectures", None) or []
    causal = (any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) if archs
              else config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    if not causal:
        what = ", ".join(archs) or f"model_type {config.model_type!r}"
        raise DataError(f"{name}: not a causal language model ({what})")
    if isinstance(dtype, str):
        dtype = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
                 "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}[dtype]
    device = device or ("cuda" if torch.cuda.is_available() else None)
    dtype = dtype or default_dtype(device)
    from safetensors import SafetensorError

    try:
        model = AutoModelForCausalLM.from_pretrained(str(name), dtype=dtype)
    except (OSError, ValueError, SafetensorError) as e:
        raise DataError(f"{name}: cannot load the model ({str(e).splitlines()[0]})") from e
    tokenizer = AutoTokenizer.from_pretrained(str(name))
    if path.is_dir():
        projection.load(model, path)  # residual-stream projections saved beside the weights (mrp)
    if device:
        model.to(device)
    model.eval()
    return model, tokenizer


def model_location(name: str | Path) -> str:
    """What a run directory records for a model: the absolute path of a local directory (so the
    run can be audited from any working directory), a Hub id as given."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else str(name)


def weights_identity(model_dir: Path) -> str:
    """Path + size + mtime of the weight files: cheap, and changes when the weights do (caches
    of evaluations and of the audit's partial results key on it)."""
    parts = [str(model_dir.resolve())]
    for f in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def weights_sha256(name: str | Path) -> str | None:
    """sha256 over the weight files of a local model directory (*.safetensors, *.bin, sorted by
    name, each as name + content), so a run records *which* weights it used; None for a Hub id."""
    path = Path(name).expanduser()
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(list(path.glob("*.safetensors")) + list(path.glob("*.bin"))):
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest()


def save_model(model, tokenizer, path: Path) -> Path:
    """Save as a Hugging Face directory (safetensors) that `load_model` reads back; residual-stream
    projections the model carries (mrp) go to a side file, the weights file stays a plain checkpoint."""
    path.mkdir(parents=True, exist_ok=True)
    with projection.detached(model) as found:
        model.save_pretrained(path, safe_serialization=True)
    projection.save(found, path)
    tokenizer.save_pretrained(path)
    return path
