"""How long `aibench --help` and a bare `bundle verify --help` take to start (issue 15).

Both run on a buyer's machine that may have no GPU stack: they must import no torch, and start
in under 0.5 s. Printed: the median and spread over repeated starts, against `python -c pass`
(the floor) and `python -c "import torch"` (what an import of torch would add).

    python benchmarks/bench_startup.py [--repeat 11]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

TARGET_S = 0.5


def started(cmd: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11)
    args = parser.parse_args()
    aibench = shutil.which("aibench")
    entry = [aibench] if aibench else [sys.executable, "-m", "aibench"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import torch": [sys.executable, "-c", "import torch"],
        "aibench --help": [*entry, "--help"],
        "aibench bundle verify --help": [*entry, "bundle", "verify", "--help"],
    }
    medians = {}
    for name, cmd in commands.items():
        times = started(cmd, args.repeat)
        medians[name] = statistics.median(times)
        print(f"{name:<30} median {medians[name]:.3f} s  (min {min(times):.3f}, max {max(times):.3f}, n={len(times)})")
    for name in ("aibench --help", "aibench bundle verify --help"):
        verdict = "meets" if medians[name] < TARGET_S else "MISSES"
        print(f"{name}: {medians[name]:.3f} s ({verdict} the {TARGET_S} s target)")


if __name__ == "__main__":
    main()
