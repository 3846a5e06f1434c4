"""Peak memory of a block of work: what a user needs to know before running a method on a big model.

On CUDA, `torch.cuda.max_memory_allocated` (the allocator's own peak, exact). On CPU there is
no allocator counter for torch tensors, so a background thread samples the process's resident
set size (psutil, a dependency of accelerate) every few milliseconds and reports the peak
*above the level at the start*: the extra memory the work needed (gradients, optimizer state,
reference copies, activations). Sampling can miss a peak shorter than the interval; the value
is a lower bound, good for comparing methods run the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass
class PeakMemory:
    mb: float = float("nan")
    device: str = "cpu"


@contextmanager
def peak_memory(device: str | torch.device | None = None, interval: float = 0.005) -> Iterator[PeakMemory]:
    """`with peak_memory() as peak: ...` then `peak.mb`: the peak extra memory of the block, in MiB."""
    out = PeakMemory()
    dev = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        start = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        try:
            yield out
        finally:
            torch.cuda.synchronize(dev)
            out.mb, out.device = (torch.cuda.max_memory_allocated(dev) - start) / 2**20, "cuda"
        return
    import psutil

    proc = psutil.Process()
    start = proc.memory_info().rss
    peak = [start]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], proc.memory_info().rss)
        out.mb, out.device = (peak[0] - start) / 2**20, "cpu"
