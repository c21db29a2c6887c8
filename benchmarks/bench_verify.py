"""Time `aibench bundle verify` on a large signed bundle, in a process of its own (time and peak memory).

    python benchmarks/bench_verify.py [--mb 1] [--records 500] [--repeat 3] [--keep DIR]

--records N adds N records of 10,000 raw samples each (TimerConfig.max_samples, the worst case
for parsing and schema validation; 500 of them make ~114 MB of records.jsonl) for the suite entry
"copy"; --mb adds that many megabytes of random (incompressible) telemetry, which is only hashed.
Each verify runs as `python -m aibench bundle verify` in a child process, so that its peak RSS is
the verifier's alone (the bundle is built in this process). Targets (issue 15): 100 MB of records
in under 5 s and under 500 MB.

Measured (2-core CPU machine, 2026-12-07): 114 MB of records verify in 5.5 s at 452 MiB peak RSS
(6.7 s before the recompute sorted each record's samples once). The fixture's summaries now agree
with their samples; before, verify refused each record early and timed less work. The rest is
mostly the duplicate-key-checking JSON parser (stdlib json) and the sorts of 10,000 samples.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bundle_helpers import default_records, record, run_files, timing_for, write_run_dir

from aibench.bundle import keygen, pack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1, help="megabytes of telemetry in the bundle")
    parser.add_argument("--records", type=int, default=500, help="extra records with 10k samples each")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None,
                        help="build the bundle (b.tar.gz) and its key (k.pub) in this new directory and keep them "
                             "there, e.g. to profile verify on it")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.keep is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            args.keep.mkdir(parents=True)  # a new directory: never write over what is there
            root = args.keep
        samples = [random.uniform(1e-3, 2e-3) for _ in range(10_000)]
        timing = timing_for(samples)  # its summary as its samples give it: verify refuses one that lies
        extra = [record(entry="copy", id=f"copy-{i}", timing=timing) for i in range(args.records)]
        files = run_files(records=default_records() + extra)
        chunk = 4 << 20  # several CSVs, as a long run with telemetry has
        for i in range(0, args.mb << 20, chunk):
            files[f"telemetry/{i // chunk:04d}.csv"] = os.urandom(min(chunk, (args.mb << 20) - i))
        run = write_run_dir(root, files)
        priv, pub = keygen(root / "k")
        t0 = time.perf_counter()
        bundle = pack(run, root / "b.tar.gz", key=priv, compresslevel=1)
        pack_s = time.perf_counter() - t0
        times, rss = [], []
        for _ in range(args.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "aibench", "bundle", "verify", str(bundle), "--pubkey", str(pub)],
                                  capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            # RUSAGE_CHILDREN's ru_maxrss is the largest child so far (KiB on Linux): each child is the same job
            rss.append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024)
            if done.returncode != 0:
                raise SystemExit(f"verify failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        print(json.dumps({"bundle_bytes": bundle.stat().st_size, "records_bytes": len(files["records.jsonl"]),
                          "pack_s": round(pack_s, 3), "verify_best_s": round(min(times), 3),
                          "verify_median_s": round(statistics.median(times), 3),
                          "verify_peak_rss_mib": round(max(rss)), "cpu": os.cpu_count()}))

if __name__ == "__main__":
    main()
