"""Throughput of one unlearning step, and what caching NPO's reference log-probs buys.

Prints tokens/s (forget + retain, non-pad) for `gd` and `npo` on the embedded world with
the default tiny Llama (or --model), and the ratio of `npo` with cached reference log-probs
(ours) against `npo` running the reference model on every forget batch (what the field's
code does), both measured here in the same process on the same data.

    python bench/unlearn_throughput.py [--steps 60] [--model DIR] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

os.environ.setdefault("OBLIVIATE_NO_PROGRESS", "1")

import torch  # noqa: E402

from obliviate.data.world import generate_world, world_corpus  # noqa: E402
from obliviate.methods import _REGISTRY, register  # noqa: E402
from obliviate.methods._losses import npo_loss, sequence_logp  # noqa: E402
from obliviate.models.load import load_model  # noqa: E402
from obliviate.models.tiny import TinyModelConfig, build_model, train_tokenizer  # noqa: E402
from obliviate.unlearn import UnlearnConfig, unlearn  # noqa: E402


@dataclass
class _Params:
    beta: float = 0.1


def _npo_live_ref(model, forget, retain, ctx):
    """NPO with the reference model run on every batch (the uncached baseline)."""
    with torch.no_grad():
        ref = sequence_logp(ctx.ref_model, forget)
    return npo_loss(sequence_logp(model, forget), ref, ctx.params.beta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default=None, help="a causal LM directory (default: the tiny world Llama)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = generate_world()
    if args.model:
        model0, tok = load_model(args.model)
    else:
        tok = train_tokenizer(world_corpus(task))
        model0 = build_model(TinyModelConfig(), tok)
    state = {k: v.clone() for k, v in model0.state_dict().items()}
    if "npo_live_ref" not in _REGISTRY:
        register("npo_live_ref", _Params, "bench only", ref_model=True, uses_retain=False)(_npo_live_ref)

    def run(method: str) -> float:
        model0.load_state_dict(state)
        cfg = UnlearnConfig(method=method, lr=1e-5, max_steps=args.steps, batch_size=args.batch_size)
        unlearn(model0, tok, task, UnlearnConfig(method=method, max_steps=3, batch_size=args.batch_size))  # warm-up
        model0.load_state_dict(state)
        log = unlearn(model0, tok, task, cfg)
        return log.tokens / log.seconds

    n_params = sum(p.numel() for p in model0.parameters())
    print(f"model: {args.model or 'tiny world Llama'} ({n_params / 1e6:.2f}M parameters), "
          f"{args.steps} steps, batch {args.batch_size}, {torch.get_num_threads()} threads")
    tps = {m: run(m) for m in ("gd", "npo", "npo_live_ref")}
    for m, v in tps.items():
        print(f"{m:>13}: {v:10.0f} tokens/s")
    print(f"npo cached reference / npo live reference: {tps['npo'] / tps['npo_live_ref']:.2f}x")


if __name__ == "__main__":
    main()
