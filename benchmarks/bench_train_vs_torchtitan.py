"""llm.train on Llama 3.1 8B against TorchTitan's published 5,762 tokens/s/GPU.

TorchTitan's figure (benchmarks/llama3_h100_202412_torchtitan.md in pytorch/torchtitan, Table 1):
Llama 3.1 8B, 8 H100 (96 GB HBM2e, 500 W power limit), FSDP, bf16, eager (no torch.compile, no
Float8), local batch 2 (global 16), sequence 8192, selective activation checkpointing: 5,762
tokens/s/GPU, 82.4 GiB. This script runs the same shape through `llm.train` on the visible GPUs
(FSDP2 under torchrun; full checkpointing by default, since 82.4 GiB does not fit an 80 GB card:
`--ac-every 2` is TorchTitan's selective layer option) and prints tokens/s/GPU, MFU, HFU, peak
memory and the ratio to 5,762. The cards differ (an SXM H100 at 700 W is faster than TorchTitan's
HBM2e one at 500 W, an H200 more so): the ratio says how aibench's step compares, not which
software is better. On a machine without a CUDA GPU it says so and measures nothing.

    python benchmarks/bench_train_vs_torchtitan.py [--ranks 8] [--ac-every 1] [--compile] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

TORCHTITAN_TPS_PER_GPU = 5762.0
TORCHTITAN_SETUP = ("Llama 3.1 8B, 8x H100 96GB HBM2e at 500 W, FSDP, bf16, eager, local batch 2, seq 8192, "
                    "selective AC (pytorch/torchtitan benchmarks/llama3_h100_202412_torchtitan.md, Table 1)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=0, help="GPUs (0: every visible one; TorchTitan used 8)")
    parser.add_argument("--ac-every", type=int, default=1, help="checkpoint every k-th block (2: selective layer)")
    parser.add_argument("--local-batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=8192)
    parser.add_argument("--compile", action="store_true", help="torch.compile each block (TorchTitan: 6,667)")
    parser.add_argument("--out", default="", help="write the record and the comparison as JSON")
    ns = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_train_vs_torchtitan: needs a CUDA GPU (none is visible here); nothing was measured.")
        return 2

    from aibench.measure.runner import RunOptions
    from aibench.measure.timer import TimerConfig
    from aibench.telemetry.core import open_telemetry
    from aibench.workloads.run import run_workload

    params = {"model": "llama-3.1-8b", "seq": ns.seq, "local_batch": ns.local_batch, "ranks": ns.ranks, "tp": 1,
              "compute": "bf16", "ac_every": ns.ac_every, "compile": ns.compile}
    devices = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    options = RunOptions(timer=TimerConfig(warmup_s=5.0, min_samples=10, min_time_s=10.0, max_time_s=60.0),
                         telemetry=True, energy_min_s=5.0, preview=False)
    with open_telemetry(devices) as telemetry:
        record = run_workload("llm.train", params, torch.device("cuda", 0), options=options,
                              telemetry=telemetry)[0].record.to_dict()
    if record["status"] != "ok":
        print(f"llm.train {record['status']}: {record.get('reason')}")
        return 1
    m = record["metrics"]
    tps = m["tokens_per_s_per_gpu"]
    per_token_j = (record.get("telemetry") or {}).get("per_unit", {}).get("tokens")
    print(f"device            {record['device'].get('name')} x {record['details']['parallel']['world_size']}")
    print(f"layout            {record['details']['parallel']}")
    print(f"step time         {m['step_time_s']:.3f} s (median of {len(record['timing']['samples_s'])}, "
          f"noise {record['timing'].get('rel_stderr_median', float('nan')):.2%})")
    print(f"tokens/s/GPU      {tps:,.0f}   (TorchTitan {TORCHTITAN_TPS_PER_GPU:,.0f}: ratio {tps / TORCHTITAN_TPS_PER_GPU:.3f})")
    for key in ("mfu_pct", "mfu_causal_pct", "hfu_pct", "peak_allocated_gib", "peak_reserved_gib"):
        print(f"{key:<17} {m[key]:.2f}" if key in m else f"{key:<17} unavailable: {record['unavailable'].get(key)}")
    print(f"J/token           {per_token_j if per_token_j is not None else 'unavailable'}")
    print(f"TorchTitan setup  {TORCHTITAN_SETUP}")
    if ns.out:
        with open(ns.out, "w", encoding="utf-8") as f:
            json.dump({"record": record, "torchtitan_tokens_per_s_per_gpu": TORCHTITAN_TPS_PER_GPU,
                       "ratio": tps / TORCHTITAN_TPS_PER_GPU, "torchtitan_setup": TORCHTITAN_SETUP}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
