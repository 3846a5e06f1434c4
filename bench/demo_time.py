"""How long `obliviate demo` takes end to end: from an empty model cache (the tiny target and
oracle are trained) and from a warm one (they are read back), as a new user runs it.

    python bench/demo_time.py [--threads N] [--seeds 0,1,2] [--keep DIR]

Each run is a fresh `obliviate demo` process (imports included) with its own cache directory,
timed from the outside; the phases are read from the demo's own log lines. Prints the wall
times, the goals (<= 180 s empty, <= 60 s warm) and the machine. Run it on an otherwise idle
machine: the same code gives other figures on another CPU or under load.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], cache: Path, threads: int | None) -> tuple[float, str]:
    env = {**os.environ, "OBLIVIATE_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OBLIVIATE_NO_PROGRESS": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "obliviate.cli", "demo", *args], env=env, capture_output=True,
                          text=True)
    secs = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"obliviate demo {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return secs, proc.stdout + proc.stderr


def phases(log: str) -> str:
    """The seconds the demo's log reports for training and unlearning."""
    train = sum(float(s) for s in re.findall(r"trained \w+: .*?, ([\d.]+) s", log))
    unlearn = sum(float(s) for s in re.findall(r"\d+ steps in ([\d.]+) s", log))
    return f"training {train:.0f} s, unlearning {unlearn:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the demo (default: the CLI's)")
    ap.add_argument("--seeds", default=None, help="also time a warm `demo --seeds S` (e.g. 0,1,2)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run directories here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="obliviate-demo-time-"))
    runs = args.keep or work
    try:
        print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
              f"load average before: {os.getloadavg()[0]:.2f}; threads: {args.threads or 'CLI default'}")
        empty, log = run(["--out", str(runs / "empty"), "--force"], work / "cache", args.threads)
        print(f"empty cache: {empty:6.1f} s  ({phases(log)})   goal <= 180 s: {'met' if empty <= 180 else 'missed'}")
        warm, log = run(["--out", str(runs / "warm"), "--force"], work / "cache", args.threads)
        print(f"warm cache:  {warm:6.1f} s  ({phases(log)})   goal <= 60 s: {'met' if warm <= 60 else 'missed'}")
        if args.seeds:
            secs, log = run(["--out", str(runs / "seeds"), "--force", "--seeds", args.seeds], work / "cache",
                            args.threads)
            print(f"warm cache, --seeds {args.seeds}: {secs:6.1f} s  ({phases(log)})")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
