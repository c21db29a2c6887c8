"""Time `aibench.bundle.verify` on a ~100 MB signed bundle (random, incompressible telemetry).

    python scripts/bench_verify.py [--mb 100] [--records 0] [--repeat 3]

Prints the size and the best and median verify times. The goal is under 2 s for 100 MB.
--records N adds N records of 10,000 raw samples each (TimerConfig.max_samples, the worst case
for parsing and schema validation) for the suite entry "copy".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bundle_helpers import default_records, record, run_files, write_run_dir

from aibench.bundle import keygen, pack, verify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="megabytes of telemetry in the bundle")
    parser.add_argument("--records", type=int, default=0, help="extra records with 10k samples each")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        samples = [random.uniform(1e-3, 2e-3) for _ in range(10_000)]
        timing = {**record()["timing"], "samples_s": samples, "n": len(samples), "total_s": sum(samples)}
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
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            report = verify(bundle, pub)
            times.append(time.perf_counter() - t0)
        assert report.valid, report.findings
        print(json.dumps({"bundle_bytes": bundle.stat().st_size, "records_bytes": len(files["records.jsonl"]), "pack_s": round(pack_s, 3),
                          "verify_best_s": round(min(times), 3), "verify_median_s": round(statistics.median(times), 3),
                          "cpu": os.cpu_count()}))


if __name__ == "__main__":
    main()
