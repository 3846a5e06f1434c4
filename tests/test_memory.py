"""peak_memory: the extra memory of a block, sampled on CPU.

Measured in a fresh interpreter: inside the test process, memory freed by earlier tests can be
reused without the resident set growing, which would hide the allocation."""

import json
import subprocess
import sys

SCRIPT = """
import json
import numpy as np
from obliviate.memory import peak_memory
with peak_memory() as small:
    x = np.ones(1024)
with peak_memory(interval=0.001) as big:
    y = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    y += 1
    del y
print(json.dumps({"small": small.mb, "big": big.mb, "device": big.device}))
"""


def test_a_64_mib_allocation_is_seen_and_a_small_one_is_not():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["device"] == "cpu" and 48 <= res["big"] <= 200, res
    assert res["small"] < 16, res
