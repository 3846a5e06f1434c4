"""Residual-stream projections carried by a model (used by `mrp`), and how they are saved.

A projection at decoder layer l replaces that layer's output h (the residual stream) by

    h <- h - (h Q^T) Q        Q (r x d) with orthonormal rows

i.e. it removes the span of Q's rows and leaves its orthogonal complement untouched. It is a
`ResidualProjection` module attached to the decoder layer as the child `PROJECTION_ATTR` and
applied by a forward hook on that layer. Q is the QR orthonormalisation of the stacked rows
`[fixed; weight]`: `fixed` (a buffer) holds the subspaces of earlier unlearning runs, `weight`
(a parameter, present only while `mrp` trains) the one being learned, so continual unlearning
stacks subspaces. The projection is computed in fp32 whatever the model's dtype.

The hook is a module-level function that finds the projection on the layer it is called on,
so `copy.deepcopy(model)` (every weight attack copies the model) carries a working projection.

On disk: `save_model` writes the bases, one `layer.<i>` tensor (r x d, fp32) per projected
layer, to `projection.safetensors` beside the Hugging Face weights (the weights file itself
stays a plain checkpoint any HF loader reads: the projections are detached while it is
written), and `load_model` attaches them again when the file exists. A model loaded with
plain `from_pretrained` is the model *without* its projections.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from obliviate.models.modules import find_decoder_layers

PROJECTION_ATTR = "residual_projection"
PROJECTION_FILE = "projection.safetensors"
_FORMAT = "obliviate-residual-projection"


def decoder_layers(model) -> nn.ModuleList | list:
    """The decoder layers (`obliviate.models.modules.find_decoder_layers`); [] for a model without."""
    layers = find_decoder_layers(model)
    return layers if layers is not None else []


def orthonormal_rows(rows: torch.Tensor) -> torch.Tensor:
    """Q (r x d) with orthonormal rows spanning the rows of `rows` (r x d, r <= d), by QR (fp32)."""
    q, _ = torch.linalg.qr(rows.float().T)  # (d x r), orthonormal columns
    return q.T


def project_out(h: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """h - (h Q^T) Q for orthonormal rows Q, in fp32, returned in h's dtype."""
    hf = h.float()
    return (hf - (hf @ basis.T) @ basis).to(h.dtype)


class ResidualProjection(nn.Module):
    """Removes span([fixed; weight]) from a (..., d) hidden state."""

    def __init__(self, fixed: torch.Tensor | None = None, weight: torch.Tensor | None = None,
                 hidden_size: int | None = None):
        super().__init__()
        d = hidden_size or (fixed.shape[-1] if fixed is not None else weight.shape[-1])
        fixed = torch.zeros(0, d) if fixed is None else fixed.detach().float().clone()
        self.register_buffer("fixed", fixed)
        self.weight = None if weight is None else nn.Parameter(weight.detach().float().clone())

    @property
    def hidden_size(self) -> int:
        return self.fixed.shape[-1]

    def rows(self) -> torch.Tensor:
        if self.weight is None:
            return self.fixed.float()
        return torch.cat([self.fixed.float().to(self.weight.device), self.weight.float()])

    def basis(self) -> torch.Tensor:
        """Q: orthonormal rows spanning fixed and weight together."""
        rows = self.rows()
        return rows if rows.shape[0] == 0 else orthonormal_rows(rows)

    @property
    def rank(self) -> int:
        return self.rows().shape[0]

    def freeze(self) -> None:
        """Fold the learned rows into `fixed` (as the orthonormal basis) and drop the parameter."""
        with torch.no_grad():
            basis = self.basis().detach().to(self.fixed.device)
        self.weight = None
        self.fixed = basis

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.rank == 0:
            return h
        return project_out(h, self.basis().to(h.device))


def _hook(layer, args, output):
    projection = getattr(layer, PROJECTION_ATTR, None)
    if projection is None:
        return None
    if isinstance(output, tuple):
        return (projection(output[0]), *output[1:])
    return projection(output)


def projections(model) -> dict[int, ResidualProjection]:
    """{layer index: projection} of every projected decoder layer."""
    return {i: p for i, layer in enumerate(decoder_layers(model))
            if (p := getattr(layer, PROJECTION_ATTR, None)) is not None}


def has_projection(model) -> bool:
    return any(p.rank > 0 for p in projections(model).values())


def attach(model, index: int, projection: ResidualProjection) -> ResidualProjection:
    """Put `projection` on decoder layer `index` (replacing one already there)."""
    layers = decoder_layers(model)
    if not 0 <= index < len(layers):
        raise ValueError(f"layer {index} is out of range; the model has layers 0..{len(layers) - 1}")
    layer = layers[index]
    if projection.hidden_size != model.config.hidden_size:
        raise ValueError(f"projection of width {projection.hidden_size} on a model of hidden size "
                         f"{model.config.hidden_size}")
    param = next(layer.parameters(), None)
    if param is not None:
        projection.to(param.device)
    setattr(layer, PROJECTION_ATTR, projection)
    if _hook not in layer._forward_hooks.values():
        layer.register_forward_hook(_hook)
    return projection


def detach(model) -> dict[int, ResidualProjection]:
    """Remove every projection (module and hook) from `model`; returns them by layer index."""
    removed = {}
    for i, layer in enumerate(decoder_layers(model)):
        projection = getattr(layer, PROJECTION_ATTR, None)
        if projection is not None:
            removed[i] = projection
            delattr(layer, PROJECTION_ATTR)
        for key in [k for k, fn in layer._forward_hooks.items() if fn is _hook]:
            del layer._forward_hooks[key]
    return removed


@contextmanager
def detached(model) -> Iterator[dict[int, ResidualProjection]]:
    """The model without its projections inside the block; they are put back after it."""
    removed = detach(model)
    try:
        yield removed
    finally:
        for i, projection in removed.items():
            attach(model, i, projection)


def save(found: dict[int, ResidualProjection], path: Path) -> Path | None:
    """Write the bases to `path / PROJECTION_FILE`, or remove a stale file when there are none."""
    from safetensors.torch import save_file

    file = Path(path) / PROJECTION_FILE
    tensors = {f"layer.{i}": p.basis().detach().float().cpu().contiguous() for i, p in found.items() if p.rank}
    if not tensors:
        file.unlink(missing_ok=True)
        return None
    layers = sorted(i for i, p in found.items() if p.rank)
    save_file(tensors, str(file), metadata={"format": _FORMAT, "version": "1", "layers": json.dumps(layers)})
    return file


def load(model, path: Path) -> dict[int, ResidualProjection]:
    """Attach the projections saved in `path / PROJECTION_FILE` (none if the file is absent)."""
    from safetensors import safe_open

    file = Path(path) / PROJECTION_FILE
    if not file.is_file():
        return {}
    attached = {}
    with safe_open(str(file), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{file}: not a residual-projection file (format {meta.get('format')!r})")
        for i in json.loads(meta["layers"]):
            attached[i] = attach(model, i, ResidualProjection(fixed=f.get_tensor(f"layer.{i}")))
    return attached
