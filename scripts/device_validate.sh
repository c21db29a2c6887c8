#!/usr/bin/env bash
# One short, time-boxed validation on a lent H100/H200 (the "validate on real hardware" issue).
#
# 1. HERE, before the lease (PyPI answers here; nothing answers on the GPU machine):
#      bash scripts/device_validate.sh wheels
#    fills .whl/ (git-ignored) with what aibench imports and the GPU image lacks: jsonschema and
#    cryptography, and their own needs (the image's package list: /work/.library/device/KINDS.md).
#    Without them every aibench command there dies at `import jsonschema`.
# 2. The device call; .whl travels only when `carry` names it:
#      run(command="bash scripts/device_validate.sh", carry=[".whl"], timeout_s=590)
#    Every step is time-boxed against one clock (VALIDATE_TOTAL_S=570 of the 590 s) and a failed
#    step never stops the next. Only a failed preflight (no GPU, packages missing, aibench not
#    installable) stops the call, within seconds of its start, and says what to fix.
# 3. If the lease has time left (status' budget_left_s), at once: the machine stays warm 30 s
#    after a call (a fresh one costs its start). One of, in this order of worth:
#      run(command="bash scripts/device_validate.sh models 150", carry=[".whl"], timeout_s=170)
#        the llama-3.1-8b MBU (compiled decode) and MFU (8k prefill) targets: gpu_check --models-only;
#      run(command="bash scripts/device_validate.sh finish 150", carry=[".whl"], timeout_s=170)
#        resumes the suite if its time box cut it, re-packs, runs the GPU test tier.
#    A fresh machine lacks the first call's suite run: `finish` then only tests.
#
# Main call, in priority order; typical ~560 s: preflight ~30, gpu_check's kernel targets <= 330
# (the headline ones, then the 56 LLM-shape GEMMs whose geomean is the open target), energy <= 65,
# the suite what is left, pack + verify ~20. What comes back in $OUT (at most 8 files):
#   log.txt            every step's output
#   gpu_records.jsonl  kernel + model records of scripts/gpu_check.py; gpu_summary.json its targets
#   energy.json        scripts/energy_check.py (counter vs integrated power, idle vs load);
#   energy_samples.csv its 30 s matmul window's samples
#   bundle.tar.gz      signed bundle of `aibench suite gigafactory --quick`; bundle.pub its key
#   verify.json        `aibench bundle verify --json` of that bundle
# Records and summaries are written as they are made, so whatever a time box cuts keeps the rest.
# Rehearsal on a CPU machine (the GPU steps say "no GPU", the suite runs its preview):
#   VALIDATE_CPU_REHEARSAL=1 VALIDATE_WORK=/tmp/x OUT=/tmp/x/out bash scripts/device_validate.sh
set -u
MODE=${1:-main}
WORK=${VALIDATE_WORK:-/tmp/aibench-validate}  # scratch on the GPU machine (gone with it)
OUT=${OUT:-$WORK/out}
SITE=$WORK/site  # the carried wheels, installed here (PYTHONPATH), as /work/.library/device/README.md does
WHEELS=.whl
# Pinned to the versions CI tests with; pure Python except rpds-py and cffi (CPython 3.12 there).
WHEEL_PINS=(jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
            cryptography==50.0.2 cffi==2.1.1 pycparser==3.12)
NEEDS_WHEELS='import jsonschema, referencing, rpds; from cryptography.hazmat.primitives.asymmetric import ed25519'

if [ "$MODE" = wheels ]; then  # runs HERE, not on the GPU machine
  mkdir -p "$WHEELS" && rm -f "$WHEELS"/*.whl  # one version of each: two stop the install there
  # Python 3.12 on x86-64 with glibc >= 2.28 there; 2.28 first so that the oldest fitting wheel wins.
  "${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version "${WHEEL_PY:-3.12}" \
    --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_31_x86_64 \
    --platform manylinux_2_34_x86_64 -d "$WHEELS" "${WHEEL_PINS[@]}" || exit 1
  ls -l "$WHEELS"
  n=$(ls "$WHEELS"/*.whl | wc -l)
  [ "$n" -eq "${#WHEEL_PINS[@]}" ] || { echo "expected ${#WHEEL_PINS[@]} wheels, got $n"; exit 1; }
  echo "ready: call the device tool with carry=[\"$WHEELS\"]"
  exit 0
fi

case "$MODE" in
  main) TOTAL=${VALIDATE_TOTAL_S:-570} ;;
  finish | models) TOTAL=${2:-150} ;;
  *) echo "usage: bash scripts/device_validate.sh [wheels | finish [SECONDS] | models [SECONDS]]" >&2; exit 2 ;;
esac
mkdir -p "$OUT" "$WORK" || exit 1
OUT=$(cd "$OUT" && pwd)  # absolute: some steps run from /tmp
export PYTHONUNBUFFERED=1
LOG="$OUT/log.txt"
step() { echo "=== $(date -u +%T) +${SECONDS}s $*" | tee -a "$LOG"; }

# boxed CAP RESERVE CMD...: CMD under `timeout`, for CAP seconds or what is left of TOTAL less
# RESERVE (the seconds later steps need), whichever is less; stdout to $BOX_OUT (default: the log).
boxed() {
  local cap=$1 reserve=$2; shift 2
  local t=$((TOTAL - SECONDS - reserve))
  ((t > cap)) && t=$cap
  if ((t < 10)); then
    echo "--- skipped, $((TOTAL - SECONDS)) s left: $*" | tee -a "$LOG"
    return 124
  fi
  timeout -k 5 "$t" "$@" >>"${BOX_OUT:-$LOG}" 2>>"$LOG"
  local rc=$?
  if ((rc == 124 || rc == 137)); then
    echo "--- time box of $t s ended it: $*" | tee -a "$LOG"
  elif ((rc != 0)); then
    echo "--- exit $rc: $*" | tee -a "$LOG"
  fi
  return $rc
}

fatal() {
  step "STOPPED: $*"
  tail -30 "$LOG"
  exit 3
}

preflight() {
  step "versions"
  { date -u; uname -r; command -v python3
    timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.sm,temperature.gpu \
      --format=csv
  } >>"$LOG" 2>&1
  step "python packages"
  if [ -d "$SITE" ]; then export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}; fi
  if ! timeout 30 python3 -c "$NEEDS_WHEELS" >>"$LOG" 2>&1; then
    ls "$WHEELS"/*.whl >/dev/null 2>&1 ||
      fatal "jsonschema/cryptography missing and no $WHEELS/*.whl: run 'bash scripts/device_validate.sh wheels' here, then call with carry=[\"$WHEELS\"]"
    boxed 60 0 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    timeout 30 python3 -c "$NEEDS_WHEELS" >>"$LOG" 2>&1 || fatal "the carried wheels do not import (see the log)"
  fi
  step "install aibench"
  # Editable, offline, against the image's torch/triton; skipped when this tree is installed already
  # (the warm machine of a `finish` call). From /tmp, so that the installed package is what imports.
  if ! (cd /tmp && timeout 60 python3 -c 'import os, sys, aibench.kernels
sys.exit(os.path.realpath(aibench.kernels.__file__) != os.path.realpath(sys.argv[1]))' "$PWD/aibench/kernels/__init__.py") 2>/dev/null; then
    if ! boxed 120 0 python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .; then
      # A read-only environment, or a setuptools without editable installs: a plain copy instead.
      # suites/ only becomes aibench.suites when installed, so the source
      # tree's ./aibench must not shadow the copy: PYTHONSAFEPATH keeps the working directory off sys.path.
      step "editable install failed: a copy into $WORK/aibench"
      boxed 120 0 python3 -m pip install -q --no-index --no-deps --no-build-isolation --upgrade \
        --target "$WORK/aibench" . || fatal "aibench could not be installed (see the log)"
      export PYTHONPATH=$WORK/aibench${PYTHONPATH:+:$PYTHONPATH} PYTHONSAFEPATH=1
    fi
  fi
  step "imports and GPU"
  (cd /tmp && boxed 90 0 python3 -c '
import torch, triton
import aibench, aibench.kernels, aibench.suites, aibench.measure.records, aibench.bundle.keys, aibench.cli, pynvml
print("aibench", aibench.__version__, aibench.__file__)
print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)
import importlib.metadata as md, os
from packaging.requirements import Requirement
try:  # the image, not pip, chose these versions: say which fall short of pyproject (a lead, not a stop)
    for text in md.requires("aibench") or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            have = None
        if have is None or not req.specifier.contains(have, prereleases=True):
            print(f"WARNING: {req.name} {have} does not meet {req}")
except Exception as exc:  # a copy installed with --target has no metadata on the path: skip the check
    print("version check skipped:", type(exc).__name__, exc)
if os.environ.get("VALIDATE_CPU_REHEARSAL") != "1":  # a rehearsal of this script on a CPU machine
    assert torch.cuda.is_available(), "torch sees no GPU"
    print("gpu", torch.cuda.get_device_name(0))') || fatal "aibench or the GPU is not usable (see the log)"
}

pack() {  # sign and verify the newest suite run directory, if there is one
  local run
  run=$(ls -d "$WORK"/runs/*/ 2>/dev/null | tail -1)
  if [ -z "$run" ]; then
    step "no suite run directory to pack"
    return 0
  fi
  step "bundle pack + verify $run"
  [ -f "$WORK/ref.key" ] || boxed 30 0 python3 -m aibench bundle keygen "$WORK/ref.key"
  boxed 60 0 python3 -m aibench bundle pack "$run" -o "$OUT/bundle.tar.gz" --key "$WORK/ref.key" || return 1
  cp "$WORK/ref.key.pub" "$OUT/bundle.pub"
  BOX_OUT="$OUT/verify.json" boxed 60 0 python3 -m aibench bundle verify "$OUT/bundle.tar.gz" \
    --pubkey "$WORK/ref.key.pub" --json
}

report() {  # the reply's output_tail is the end of stdout: the verdicts go last
  step "report"
  local f
  for f in "$OUT"/*; do  # what comes back: files of at most 16 MiB
    if [ "$(stat -c %s "$f")" -gt $((15 * 1024 * 1024)) ]; then
      gzip -1 "$f" && echo "--- gzipped $f (over 15 MiB)" | tee -a "$LOG"
    fi
  done
  python3 - "$OUT" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    if not (out / name).exists():  # a `finish` call's $OUT holds only its own files
        return None
    try:
        return json.loads((out / name).read_text())
    except Exception as exc:
        print(f"{name}: {type(exc).__name__}: {exc}")
        return None
g = load("gpu_summary.json")
if g:
    sw = (g.get("environment") or {}).get("software") or {}
    print(f"card {g['device'].get('name')}, driver {sw.get('driver_version')}, torch {g['torch']}, "
          f"triton {g['triton']}, {g['date']}; run {json.dumps(g.get('run', {}).get('stopped'))} "
          f"after {g.get('run', {}).get('elapsed_s')} s, wrong results {g['wrong_results']}")
    for name, t in g["targets"].items():
        if "met" in t:
            v = t["value"]
            shown = "-" if v is None else f"{v:.3f}"
            verdict = {True: "MET", False: "MISSED", None: "no verdict"}[t["met"]]
            print(f"  {name:40s} {shown:>8s} {t['bound']:>6s}  {verdict}  {t.get('reason', '')[:90]}")
e = load("energy.json")
if e:
    d = ((e.get("matmul") or {}).get("devices") or [{}])[0]
    print(f"energy: counter {d.get('counter_energy_j')} J, integrated {d.get('integrated_energy_j')} J, "
          f"rel {d.get('integral_vs_counter_rel')}, {e.get('tflops')} TFLOP/s, overhead "
          f"{(e.get('overhead') or {}).get('cpu_share_of_one_core')}, errors {e.get('errors')}")
v = load("verify.json")
if v:
    print(f"bundle: valid {v.get('valid')}, {len(v.get('errors', []))} errors, "
          f"complete {(v.get('summary') or {}).get('complete')}, statuses {(v.get('summary') or {}).get('statuses')}")
files = sorted(p for p in out.iterdir())
print(f"$OUT: {len(files)} files (8 come back): " + ", ".join(f"{p.name} {p.stat().st_size}" for p in files))
EOF
}

preflight

if [ "$MODE" = models ]; then
  step "gpu_check --models-only"
  GPU_BOX=$((TOTAL - SECONDS - 10))
  boxed "$GPU_BOX" 0 python3 scripts/gpu_check.py --out "$WORK/models" --models-only \
    --budget-s $((GPU_BOX - 60)) --deadline-s $((GPU_BOX - 10))
  cp "$WORK/models/records.jsonl" "$OUT/model_records.jsonl" 2>/dev/null
  cp "$WORK/models/summary.json" "$OUT/gpu_summary.json" 2>/dev/null
  report
  exit 0
fi

if [ "$MODE" = finish ]; then
  run=$(ls -d "$WORK"/runs/*/ 2>/dev/null | tail -1)
  if [ -n "$run" ] && grep -q '"complete": false' "$run/manifest.json" 2>/dev/null; then
    step "suite gigafactory --quick --resume $run"
    boxed 150 60 python3 -m aibench suite gigafactory --quick --resume "$run"
    pack
  fi
  step "pytest gpu tier"
  timeout_args=()
  python3 -c "import pytest_timeout" 2>/dev/null && timeout_args=(--timeout 60)  # one hung test is not all
  AIBENCH_TEST_GPU=1 boxed 600 5 python3 -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors \
    ${timeout_args[@]+"${timeout_args[@]}"} tests
  tail -15 "$LOG"
  report
  exit 0
fi

# Kernels vs cuBLAS / SDPA: the headline targets, then the LLM-shape GEMMs until its budget (the
# models' targets are the `models` call's); it cuts a case still running at its deadline and
# writes its summary.
step "gpu_check (kernel targets)"
GPU_BOX=$((TOTAL - SECONDS - 165))  # energy 65, a start of the suite 50 and pack 50 come after it
((GPU_BOX > 330)) && GPU_BOX=330
boxed "$GPU_BOX" 0 python3 scripts/gpu_check.py --out "$WORK/gpu" \
  --budget-s $((GPU_BOX - 40)) --deadline-s $((GPU_BOX - 15))
cp "$WORK/gpu/records.jsonl" "$OUT/gpu_records.jsonl" 2>/dev/null
cp "$WORK/gpu/summary.json" "$OUT/gpu_summary.json" 2>/dev/null

step "energy_check (30 s bf16 matmul)"
boxed 65 50 python3 scripts/energy_check.py --seconds 30 --out "$WORK/energy"
cp "$WORK/energy/summary.json" "$OUT/energy.json" 2>/dev/null
cp "$WORK/energy/samples.csv" "$OUT/energy_samples.csv" 2>/dev/null

step "suite gigafactory --quick"
boxed 30 60 python3 -m aibench bundle keygen "$WORK/ref.key" --force
boxed 30 60 python3 -m aibench suite gigafactory --quick --plan
boxed 240 45 python3 -m aibench suite gigafactory --quick --out "$WORK/runs"
pack
report
step "done"
