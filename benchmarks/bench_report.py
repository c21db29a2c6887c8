"""Time `aibench report` over many runs: 50 run directories x 1,000 records by default (issue 15).

    python benchmarks/bench_report.py [--runs 50] [--records 1000] [--samples 30] [--format html]

Each run is a valid run directory (the test helpers' manifest and records: 1,000 measurements of
one entry at different sizes, `--samples` raw samples each). The report runs as
`python -m aibench report` in a child process; printed: its wall time (median of --repeat) and peak
RSS. Target: under 5 s for 50 x 1,000.

Measured (2-core CPU machine, shared with other jobs, HTML): 10.0 s wall and 570 MiB peak RSS on
2026-12-07, with every record's summary, work, rates and % of peak recomputed and each record's
median interval bootstrapped (the fixture states none). Before that day's bootstrap speed-up
(1.2 ms -> 0.02 ms a record, same numbers bit for bit) the same data took ~60 s once its records
were honest. Still over the target: the template's escaping, the readers' per-field number checks
and the record schema validation are the next costs (cProfile of 20 x 1,000).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bundle_helpers import manifest, record, run_files, timing_for, write_run_dir

from aibench.core import stats


def _records(n: int, n_samples: int, scale: float) -> list[dict]:
    out = []
    for i in range(n):
        samples = [scale * 1e-3 * (1 + 0.01 * i) * (1 + 0.001 * j) for j in range(n_samples)]
        # The whole summary the timer writes (stats.summarize), as its samples give it: readers
        # recompute every statistic, its bootstrap interval too, and refuse a record that lies.
        timing = timing_for(samples, **stats.summarize(samples))
        m = 64 + i
        out.append(record(id=f"gemm[m={m}]/torch", params={"m": m}, timing=timing,
                          work={"flops": 2 * m**3}, metrics={"tflops": 2 * m**3 / stats.median(samples) / 1e12,
                                                              "latency_ms": stats.median(samples) * 1e3}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--format", default="html", choices=["md", "html", "csv"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = []
        for r in range(args.runs):
            files = run_files(man=manifest(run_id=f"run-{r:03d}"),
                              records=_records(args.records, args.samples, 1 + 0.02 * r))
            runs.append(str(write_run_dir(root / f"r{r:03d}", files)))
        times, rss = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "aibench", "report", *runs, "--format", args.format,
                                   "-o", str(root / f"report.{args.format}")], capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            # RUSAGE_CHILDREN's ru_maxrss is the largest child so far (KiB on Linux): each child is the same job
            rss.append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
            if done.returncode != 0:
                raise SystemExit(f"report failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        out = root / f"report.{args.format}"
        print(json.dumps({"runs": args.runs, "records_per_run": args.records, "samples": args.samples,
                          "format": args.format, "report_bytes": out.stat().st_size,
                          "report_median_s": round(statistics.median(times), 3), "report_best_s": round(min(times), 3),
                          "peak_rss_mib": round(max(rss)), "cpu": os.cpu_count()}))


if __name__ == "__main__":
    main()
