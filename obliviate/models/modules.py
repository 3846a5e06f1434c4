"""Where a causal LM keeps what methods and attacks touch: its weight matrices and a small module map.

Hugging Face families name the same parts differently (Llama `model.layers[i].mlp.down_proj`,
GPT-2 `transformer.h[i].mlp.c_proj`, GPT-NeoX `gpt_neox.layers[i].mlp.dense_4h_to_h`, OPT
`model.decoder.layers[i].fc2`), and GPT-2 stores its projections as transformers' `Conv1D`, whose
weight is (in, out), the transpose of `nn.Linear`'s (out, in). Everything in obliviate that looks
for a projection goes through this module, so a new family is one table row, not a search
through the code base:

- `weight_matrices(model)`: every 2-D projection (`nn.Linear` and `Conv1D`, bitsandbytes' and
  peft's subclasses of `nn.Linear` included), the LM head only on request.
  `matrix(module)` is its weight as (out, in): a view, so in-place edits write through.
- `decoder_layers(model)`: found from the model's structure (the `nn.ModuleList` holding
  `config.num_hidden_layers` blocks).
- `mlp_out(layer)`, `attn_out(layer)`: the MLP and attention output projections of one decoder
  layer, from `config.obliviate_mlp_out` / `config.obliviate_attn_out` (a path inside a decoder
  layer) when set, else `MLP_OUT` / `ATTN_OUT` (the known families), else, for the MLP, from the
  structure (the one matrix mapping the intermediate size back to the hidden size); a model
  matching none is a one-line error naming the attribute to set.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

# Paths inside one decoder layer, first match wins. Families: Llama, Mistral, Qwen2, Gemma(-2),
# Phi-3 (down_proj / o_proj); GPT-2 (Conv1D c_proj under mlp / attn); GPT-NeoX / Pythia
# (dense_4h_to_h / attention.dense); OPT (fc2 / self_attn.out_proj); Phi-1/2 (mlp.fc2 / self_attn.dense);
# GPT-J (mlp.fc_out / attn.out_proj); GPT-Neo (mlp.c_proj / attn.attention.out_proj); Falcon
# (mlp.dense_4h_to_h / self_attention.dense).
MLP_OUT = ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h", "fc2", "mlp.fc2", "mlp.fc_out")
ATTN_OUT = ("self_attn.o_proj", "attn.c_proj", "attention.dense", "self_attn.out_proj", "self_attn.dense",
            "attn.out_proj", "attn.attention.out_proj", "self_attention.dense")


def _conv1d_type() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # an old or trimmed transformers: then no model has one
        return None
    return Conv1D


def is_weight_matrix(module: nn.Module) -> bool:
    """A projection y = x W^T + b: `nn.Linear` (or a subclass) or transformers' `Conv1D`."""
    conv1d = _conv1d_type()
    return isinstance(module, nn.Linear) or (conv1d is not None and isinstance(module, conv1d))


def is_transposed(module: nn.Module) -> bool:
    """True for `Conv1D`, whose weight is stored (in, out)."""
    conv1d = _conv1d_type()
    return conv1d is not None and isinstance(module, conv1d)


def matrix(module: nn.Module) -> torch.Tensor:
    """The weight as (out_features, in_features); for `Conv1D` the transposed *view*, so
    `matrix(m).copy_(w)` or `matrix(m)[:, j] = 0` edits the module's own weight."""
    return module.weight.T if is_transposed(module) else module.weight


def in_features(module: nn.Module) -> int:
    return matrix(module).shape[1]


def out_features(module: nn.Module) -> int:
    return matrix(module).shape[0]


def to_native(module: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """An (out, in) tensor in the layout of `module.weight` (transposed back for `Conv1D`)."""
    return w.T if is_transposed(module) else w


def weight_matrices(model: nn.Module, include_lm_head: bool = False) -> Iterator[tuple[str, nn.Module]]:
    """`(name, module)` of every weight matrix (`nn.Linear`, `Conv1D`) in `model`, the output
    embedding (LM head) only with `include_lm_head`. Embeddings are never included."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    for name, module in model.named_modules():
        if is_weight_matrix(module) and (include_lm_head or module is not head):
            yield name, module


def real_token_rows(x: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """The rows of a projection's input `x` that belong to real (non-padding) tokens, (n, features).

    Most families call their projections on (batch, seq, features); OPT flattens to
    (batch * seq, features) before `fc1` / `fc2`, so a 2-D input is indexed with the flat mask."""
    mask = token_mask.to(x.device).bool()
    if x.dim() == mask.dim() + 1:
        return x[mask]
    if x.dim() == 2 and x.shape[0] == mask.numel():
        return x[mask.reshape(-1)]
    raise ValueError(f"cannot align an input of shape {tuple(x.shape)} with a token mask of shape {tuple(mask.shape)}")


# ---------------------------------------------------------------------------------------------
# The module map
# ---------------------------------------------------------------------------------------------

def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DDP / accelerate wrappers


def find_decoder_layers(model: nn.Module) -> nn.ModuleList | None:
    """The stack of decoder layers: the `nn.ModuleList` with `config.num_hidden_layers` entries
    (or `config.obliviate_decoder_layers`, a dotted path from the model); None if there is none."""
    model = _unwrap(model)
    config = getattr(model, "config", None)
    path = getattr(config, "obliviate_decoder_layers", None)
    if path:
        found = model.get_submodule(path)
        return found if isinstance(found, nn.ModuleList) else None
    n = getattr(config, "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n and n:
            return module
    return None


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of `model`, or a one-line error naming the attribute to set."""
    layers = find_decoder_layers(model)
    if layers is None:
        raise ValueError(f"cannot find the decoder layers of {type(_unwrap(model)).__name__} (no nn.ModuleList "
                         f"of config.num_hidden_layers blocks); set model.config.obliviate_decoder_layers to "
                         f"their path, e.g. 'model.layers'")
    return layers


def _by_shape(layer: nn.Module, config, n_in_attrs: tuple[str, ...]) -> nn.Module | None:
    """The one weight matrix of `layer` mapping config.<n_in> features to config.hidden_size, if unique."""
    hidden = getattr(config, "hidden_size", None)
    n_in = next((v for a in n_in_attrs if isinstance(v := getattr(config, a, None), int)), None)
    if not hidden or not n_in:
        return None
    found = [m for _, m in weight_matrices(layer) if (in_features(m), out_features(m)) == (n_in, hidden)]
    return found[0] if len(found) == 1 else None


def _find(layer: nn.Module, paths: tuple[str, ...], override: str | None, what: str, attribute: str,
          structural: nn.Module | None = None) -> nn.Module:
    for path in (override,) if override else paths:
        try:
            module = layer.get_submodule(path)
        except AttributeError:
            continue
        if is_weight_matrix(module):
            return module
    if structural is not None and not override:
        return structural
    tried = override or ", ".join(paths)
    raise ValueError(f"cannot find the {what} of {type(layer).__name__} (tried {tried}); set "
                     f"model.config.{attribute} to its path inside a decoder layer")


def mlp_out(layer: nn.Module, config=None) -> nn.Module:
    """The MLP output projection of one decoder layer (its inputs are the MLP's neurons)."""
    # structure: intermediate_size (Llama-like, GPT-NeoX), n_inner (GPT-2, GPT-J), ffn_dim (OPT)
    structural = _by_shape(layer, config, ("intermediate_size", "n_inner", "ffn_dim"))
    return _find(layer, MLP_OUT, getattr(config, "obliviate_mlp_out", None), "MLP output projection",
                 "obliviate_mlp_out", structural)


def attn_out(layer: nn.Module, config=None) -> nn.Module:
    """The attention output projection of one decoder layer (its inputs are the heads' outputs)."""
    return _find(layer, ATTN_OUT, getattr(config, "obliviate_attn_out", None), "attention output projection",
                 "obliviate_attn_out")
