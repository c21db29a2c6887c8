#!/usr/bin/env bash
# One short, time-boxed validation on a lent H100/H200 (the "validate on real hardware" issue).
# Run from the repository root on the GPU machine; everything lands in $OUT (at most 8 files).
#
#   bash scripts/device_validate.sh          # ~9.3 min of steps: call with timeout_s=590
#   bash scripts/device_validate.sh finish   # a second call on the same warm machine, if the lease
#                                            # has time left (~4 min): resume the suite run if the
#                                            # first call's time box cut it, re-pack, GPU test tier
#
# Main call, in priority order (every step time-boxed, a failed step never stops the next):
#   log.txt            every step's output
#   gpu_records.jsonl  kernel + model records of scripts/gpu_check.py; gpu_summary.json its targets
#   energy.json        scripts/energy_check.py (counter vs integrated power, idle vs load)
#   bundle.tar.gz      signed bundle of `aibench suite gigafactory --quick`; bundle.pub its key
#   verify.json        `aibench bundle verify --json` of that bundle
set -u
OUT=${OUT:-/tmp/aibench-validate}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
LOG="$OUT/log.txt"
step() { echo "=== $(date -u +%T) $*" | tee -a "$LOG"; }

step "versions"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } >>"$LOG" 2>&1
step "install"
python3 -m pip install -q --no-deps --no-build-isolation -e . >>"$LOG" 2>&1 || { tail -20 "$LOG"; exit 1; }

pack() {  # sign and verify the suite's run directory, if there is one
  local run; run=$(ls -d /tmp/runs/*/ 2>/dev/null | head -1)
  [ -n "$run" ] || return 0
  step "bundle pack + verify $run"
  python3 -m aibench bundle pack "$run" -o "$OUT/bundle.tar.gz" --key /tmp/ref.key >>"$LOG" 2>&1
  cp /tmp/ref.key.pub "$OUT/bundle.pub"
  python3 -m aibench bundle verify "$OUT/bundle.tar.gz" --pubkey /tmp/ref.key.pub --json >"$OUT/verify.json" 2>>"$LOG"
}

if [ "${1:-}" = "finish" ]; then
  run=$(ls -d /tmp/runs/*/ 2>/dev/null | head -1)
  if [ -n "$run" ] && grep -q '"complete": false' "$run/manifest.json" 2>/dev/null; then
    step "suite gigafactory --quick --resume $run"
    timeout 150 python3 -m aibench suite gigafactory --quick --resume "$run" >>"$LOG" 2>&1
    pack
  fi
  step "pytest gpu tier"
  AIBENCH_TEST_GPU=1 timeout 100 python3 -m pytest -q -m gpu tests >>"$LOG" 2>&1
  step "done"
  tail -40 "$LOG"
  exit 0
fi

# Kernels vs cuBLAS / SDPA, then the 8B MBU (compiled decode) and MFU targets, then the LLM-shape
# GEMMs until the budget: new cases stop at 170 s, the step ends at 230 s whatever runs.
step "gpu_check --models"
timeout 230 python3 scripts/gpu_check.py --out /tmp/gpu --budget-s 170 --models >>"$LOG" 2>&1
cp /tmp/gpu/records.jsonl "$OUT/gpu_records.jsonl" 2>/dev/null
cp /tmp/gpu/summary.json "$OUT/gpu_summary.json" 2>/dev/null

step "energy_check (30 s bf16 matmul)"
mkdir -p /tmp/energy; OUT=/tmp/energy timeout 50 python3 scripts/energy_check.py --seconds 30 >>"$LOG" 2>&1
cp /tmp/energy/summary.json "$OUT/energy.json" 2>/dev/null

step "suite gigafactory --quick"
python3 -m aibench bundle keygen /tmp/ref.key --force >>"$LOG" 2>&1
python3 -m aibench suite gigafactory --quick --plan >>"$LOG" 2>&1
timeout 240 python3 -m aibench suite gigafactory --quick --out /tmp/runs >>"$LOG" 2>&1
pack
step "done"
tail -40 "$LOG"
