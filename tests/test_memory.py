"""peak_memory: the extra memory of a block, sampled on CPU."""

import numpy as np

from obliviate.memory import peak_memory


def test_a_64_mib_allocation_is_seen_and_freed_memory_is_not_counted_twice():
    with peak_memory() as small:
        x = np.ones(1024, dtype=np.float64)
    with peak_memory(interval=0.001) as big:
        y = np.ones(64 * 2**20 // 8, dtype=np.float64)  # 64 MiB, touched
        y += 1
        del y
    assert x.sum() == 1024
    assert big.device == "cpu" and 48 <= big.mb <= 200, big.mb
    assert small.mb < 16, small.mb
