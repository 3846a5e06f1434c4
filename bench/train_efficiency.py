"""Training efficiency of the tiny models: tokens/s, and achieved FLOP/s as a share of what this
machine's matrix products reach at the model's own shapes (both measured here, in one process).

    python bench/train_efficiency.py [--threads 1,2] [--tofu-items 800] [--epochs 2] [--busy 1]

For the tiny world model and the tiny TOFU model (docs/experiments/tofu.md), `train_lm` (the
code that trains every tiny target and oracle) runs `--epochs` passes with random batches and
with length-grouped batches (`TrainConfig.group_by_length`, the default). Printed per run:
- tokens/s: real (non-pad) tokens trained per second of training (accuracy checks excluded);
- pad: the share of the computed positions that were padding;
- model FLOP/s: useful FLOPs per second, counted on real tokens only (3 x the forward's matrix
  products: every linear layer incl. the LM head, 2 x in x out per token, and attention's
  QK^T and AV, 4 x L^2 x hidden per sequence and layer);
- share: model FLOP/s over the FLOP/s of the same matrix products (forward, grad-input and
  grad-weight of every linear layer at the batch's token count) timed alone with torch.matmul.
`--busy N` runs N busy-looping processes beside the measurement: what a thread count gives when
other work shares the cores (an OpenMP thread that loses its core makes the others wait at every
barrier).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OBLIVIATE_NO_PROGRESS", "1")

import torch  # noqa: E402

from obliviate.data.collate import encode_items  # noqa: E402
from obliviate.data.tofu import tofu_corpus, tofu_full  # noqa: E402
from obliviate.data.world import generate_world, world_corpus  # noqa: E402
from obliviate.models.modules import weight_matrices  # noqa: E402
from obliviate.models.prepare import TOFU_MODEL, TOFU_TRAIN  # noqa: E402
from obliviate.models.tiny import TinyModelConfig, TrainConfig, build_model, train_lm, train_tokenizer  # noqa: E402


def linear_shapes(model) -> list[tuple[int, int]]:
    """(in, out) of every weight matrix the forward multiplies by, the LM head included."""
    shapes = [(m.weight.shape[1], m.weight.shape[0]) for _, m in weight_matrices(model)]  # Llama: nn.Linear
    head = model.get_output_embeddings().weight
    return shapes + [(head.shape[1], head.shape[0])]


def model_flops(model, lengths: list[int]) -> float:
    """Training FLOPs (forward + backward = 3 x forward) on sequences of these real lengths."""
    per_token = sum(2 * i * o for i, o in linear_shapes(model))
    cfg = model.config
    attention = sum(4 * n * n * cfg.hidden_size * cfg.num_hidden_layers for n in lengths)
    return 3.0 * (per_token * sum(lengths) + attention)


def matmul_flops_per_s(model, tokens: int, seconds: float = 2.0) -> float:
    """FLOP/s of the model's own matrix products (fwd, grad-input, grad-weight) at `tokens` rows."""
    ops = []
    for i, o in set(linear_shapes(model)):
        x, w, g = torch.randn(tokens, i), torch.randn(i, o), torch.randn(tokens, o)
        ops += [(x, w), (g, w.T), (x.T, g)]
    flops_per_round = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in ops)
    for a, b in ops:  # warm-up
        a @ b
    rounds, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for a, b in ops:
            a @ b
        rounds += 1
    return rounds * flops_per_round / (time.perf_counter() - t0)


def bench(name: str, items, corpus, model_cfg: TinyModelConfig, train_cfg: TrainConfig, epochs: int) -> None:
    tok = train_tokenizer(corpus, model_cfg.vocab_size)
    lengths = [len(e.prompt_ids) + len(e.answer_ids) for e in encode_items(tok, items)]
    for grouped in (False, True):
        model = build_model(model_cfg, tok, seed=0)
        cfg = train_cfg.model_copy(update={"max_epochs": epochs, "min_epochs": epochs + 1,
                                           "group_by_length": grouped})
        log = train_lm(model, tok, items, cfg)
        tps = log["tokens"] / log["train_seconds"]
        flops = model_flops(model, lengths) * epochs / log["train_seconds"]
        rows = cfg.batch_size * log["padded_tokens"] // max(1, len(items) * epochs)
        peak = matmul_flops_per_s(model, rows)
        print(f"{name:>6} {'grouped' if grouped else 'random':>8} {len(items):6d} {tps:10.0f} "
              f"{1 - log['tokens'] / log['padded_tokens']:6.1%} {flops / 1e9:9.2f} {peak / 1e9:9.2f} "
              f"{flops / peak:6.1%}", flush=True)


def _spin() -> None:
    while True:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="2", help="comma-separated thread counts to measure")
    ap.add_argument("--tofu-items", type=int, default=800, help="TOFU QA trained on (of 4000)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--busy", type=int, default=0, help="busy-looping processes to run beside the measurement")
    ap.add_argument("--only", default="world,tofu", help="models to measure")
    args = ap.parse_args()
    import multiprocessing as mp

    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    world = generate_world()
    world_items = world.forget + world.retain + world.extra_train
    tofu_items = tofu_full()[: args.tofu_items]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, fp32, {args.busy} busy process(es) beside it")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        print(f"\n{threads} thread(s)")
        print(f"{'model':>6} {'batches':>8} {'items':>6} {'tokens/s':>10} {'pad':>6} {'GFLOP/s':>9} "
              f"{'matmul':>9} {'share':>6}")
        if "world" in args.only:
            bench("world", world_items, world_corpus(world), TinyModelConfig(), TrainConfig(), args.epochs)
        if "tofu" in args.only:
            bench("tofu", tofu_items, tofu_corpus(), TOFU_MODEL, TOFU_TRAIN, args.epochs)
    for p in spinners:
        p.terminate()


if __name__ == "__main__":
    main()
