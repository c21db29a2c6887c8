"""Time `aibench report` over many runs: 50 run directories x 1,000 records by default (issue 15).

    python benchmarks/bench_report.py [--runs 50] [--records 1000] [--samples 30] [--format html]

Each run is a valid run directory (the test helpers' manifest and records: 1,000 measurements of
one entry at different sizes, `--samples` raw samples each, every record with the whole summary
the timer writes, bootstrap interval included). The fixture is built in a child process, and the
report runs as `python -m aibench report` in another; printed: its wall time (median of --repeat)
and its own peak RSS. Target: under 5 s for 50 x 1,000.

Measured (2-core CPU machine, 2 vCPUs, quiet, HTML, 2026-12-07, median of 5): 4.42 s wall
(best 4.36) at 7fd5507, 4.70 s at 8e0d6c2; 458 MiB peak RSS, with every record also held to the impossible-value bounds
(results/impossible.py, +0.3 s). Before (same machine, that morning, with a lighter fixture that
claimed four statistics a record and no interval): 10.1 s. What changed: the cyclic garbage
collector is paused while the records load and the report is built, and they are let go of
before it resumes (it walked millions of live objects: 3 s, and 0.25 s more at a pass after), the
median intervals of all records are bootstrapped in one batch from the distinct resample pairs
(1.7 s -> 0.4 s, same bits), each record's statistics come from one sorted copy, the long HTML
tables are written in Python with the template's own escaping (2.5 s -> 0.5 s), runs are read by
two forked workers (~1.3x on these two hyperthreads), the charts are drawn in a forked process
beside the tables, and a chart holds at most 120 bars. What is left, per record: the compiled
schema check (~16 us), the recompute (~35 us), parsing (~9 us), the report model (~18 us) and its
HTML (~10 us); start-up and imports take ~0.4 s. The host's speed moves this figure: an hour
earlier the same code took 5.2-5.4 s here, and abf4e30 5.8 s in the same minutes. Tried and dropped: this process
reading runs from the end while the workers read from the front (no pickling for its share):
no faster on two hyperthreads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _records(n: int, n_samples: int, scale: float) -> list[dict[str, Any]]:
    from bundle_helpers import record, timing_for

    from aibench.core import stats

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


def _make(root: Path, runs: int, records: int, samples: int) -> None:
    """The run directories (in a process of its own: see main)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from bundle_helpers import manifest, run_files, write_run_dir

    for r in range(runs):
        files = run_files(man=manifest(run_id=f"run-{r:03d}"), records=_records(records, samples, 1 + 0.02 * r))
        write_run_dir(root / f"r{r:03d}", files)


def _report_once(runs: list[str], fmt: str, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one `python -m aibench report` in a child process."""
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "aibench", "report", *runs, "--format", fmt, "-o", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage (ru_maxrss: KiB on Linux)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"report failed:\n{err.decode(errors='replace')}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--format", default="html", choices=["md", "html", "csv"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--make-into", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_into is not None:
        _make(args.make_into, args.runs, args.records, args.samples)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # The fixture is built in a child: a report child forked from a parent holding it would
        # count the parent's pages in its own peak RSS (ru_maxrss includes the time before exec).
        subprocess.run([sys.executable, __file__, "--make-into", str(root), "--runs", str(args.runs),
                        "--records", str(args.records), "--samples", str(args.samples)], check=True)
        runs = [str(root / f"r{r:03d}" / "run-1") for r in range(args.runs)]
        out = root / f"report.{args.format}"
        measured = [_report_once(runs, args.format, out) for _ in range(args.repeat)]
        times = [t for t, _ in measured]
        print(json.dumps({"runs": args.runs, "records_per_run": args.records, "samples": args.samples,
                          "format": args.format, "report_bytes": out.stat().st_size,
                          "report_median_s": round(statistics.median(times), 3), "report_best_s": round(min(times), 3),
                          "peak_rss_mib": round(max(m for _, m in measured)), "cpu": os.cpu_count()}))


if __name__ == "__main__":
    main()
