"""`llm.train` and `llm.time_to_quality` end to end on the CPU: one process, and torchrun jobs of
2 gloo ranks (FSDP2, DTensor tensor parallel) that must train the same losses as one process.

Each torchrun start costs ~5 s on a 2-core CPU (two interpreters importing torch); the models are
the tiny configs and the timing rules are tiny.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from aibench.cli import cli as cli_main
from aibench.core.errors import UsageError
from aibench.measure.records import validate
from aibench.measure.runner import RunOptions
from aibench.measure.timer import TimerConfig
from aibench.models.config import ModelArgs
from aibench.models.train import TrainSpec, build_trainer, synthetic_tokens
from aibench.models.train_check import loss_curve
from aibench.suite.load import load_suite
from aibench.suite.model import PlanContext
from aibench.workloads import llm_train
from aibench.workloads.run import run_workload
from aibench.workloads.train_launch import TrainJob, TrainJobError

CPU = torch.device("cpu")
FAST = RunOptions(timer=TimerConfig(warmup_s=0.0, min_samples=3, min_time_s=0.01, max_time_s=0.3, target_rel_se=0.5))
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _record(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    out = run_workload(name, overrides, CPU, options=FAST)
    assert len(out) == 1
    d = out[0].record.to_dict()
    validate(d)
    return d


def _one_process_losses(batch: int, steps: int, seq: int = 32, ac_every: int = 1) -> list[float]:
    args = ModelArgs.from_name("tiny")
    trainer = build_trainer(TrainSpec(args, global_batch=batch, seq=seq, compute="fp32", ac_every=ac_every), CPU)
    return loss_curve(trainer, synthetic_tokens(args.vocab_size, batch, seq, seed=1), steps)


def _torchrun_losses(tmp_path: Path, dp: int, tp: int, local_batch: int, steps: int) -> dict[str, Any]:
    spec = {"model": "tiny", "local_batch": local_batch, "dp": dp, "tp": tp, "seq": 32, "compute": "fp32",
            "ac_every": 1, "compile": False, "seed": 0, "device": "cpu"}
    out = tmp_path / "losses.json"
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", str(dp * tp), "-m", "aibench.workloads.train_ranks",
           "--spec", json.dumps(spec), "--steps", str(steps), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")
def test_two_rank_fsdp2_under_torchrun_trains_the_same_losses_as_one_rank(tmp_path: Path) -> None:
    got = _torchrun_losses(tmp_path, dp=2, tp=1, local_batch=2, steps=4)  # global batch 4
    ref = _one_process_losses(batch=4, steps=4)
    assert got["layout"]["dp_shard"] == 2 and got["world_size"] == 2
    assert got["losses"] == pytest.approx(ref, rel=2e-6)
    assert ref[-1] < ref[0] - 0.1  # the losses compared are a training run, not a constant


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")
def test_two_rank_tensor_parallel_trains_the_same_losses_as_one_rank(tmp_path: Path) -> None:
    got = _torchrun_losses(tmp_path, dp=1, tp=2, local_batch=4, steps=3)
    assert got["layout"]["tp"] == 2
    assert got["losses"] == pytest.approx(_one_process_losses(batch=4, steps=3), rel=2e-6)


def test_one_process_record_has_rates_formula_and_reasons() -> None:
    d = _record("llm.train", {})  # preview defaults: tiny, local_batch 2, seq 32, fp32, 1 rank
    assert d["status"] == "ok", d.get("reason")
    assert d["correctness"]["passed"] and "gradients vs float64" in d["correctness"]["detail"]
    m, details = d["metrics"], d["details"]
    assert m["tokens_per_s_per_gpu"] == pytest.approx(2 * 32 / d["timing"]["median"])
    assert m["model_tflops_per_gpu"] == pytest.approx(
        details["flops"]["model_flops_per_token"] * m["tokens_per_s_per_gpu"] / 1e12)
    assert "6*N + 12*L*H*Q*T" in details["flops"]["formula"]
    for key in ("mfu_pct", "hfu_pct", "peak_allocated_gib", "peak_reserved_gib"):
        assert key not in m and d["unavailable"][key]  # a CPU: no peak, no allocator statistics
    assert details["parallel"]["world_size"] == 1 and "fp32" in details["precision"]
    assert d["work"]["tokens"] == 64 and details["gate"]["losses"][-1] < details["gate"]["losses"][0]


def test_two_rank_job_record() -> None:
    d = _record("llm.train", {"ranks": 2, "model": "tiny-moe", "local_batch": 1})
    assert d["status"] == "ok", d.get("reason")
    details = d["details"]
    assert details["parallel"]["dp_shard"] == 2 and details["launcher"].startswith("torchrun")
    assert d["timing"]["method"] == "custom" and len(d["timing"]["samples_s"]) >= 3
    assert d["metrics"]["tokens_per_s_per_gpu"] == pytest.approx(2 * 32 / d["timing"]["median"] / 2)
    assert details["gate"]["check_model"] == "tiny-moe" and details["moe_note"]


def test_a_layout_that_does_not_fit_is_skipped_with_the_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm_train, "free_bytes", lambda _device: 2**30)  # a 1 GiB host
    d = _record("llm.train", {"model": "llama-3.1-8b", "seq": 64, "local_batch": 1})
    assert d["status"] == "skipped"
    assert "needs ~" in d["reason"] and "states" in d["reason"] and "1.0 GiB" in d["reason"]


def test_bad_parameters_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="multiple of tp"):
        run_workload("llm.train", {"ranks": 3, "tp": 2}, CPU, options=FAST)
    with pytest.raises(UsageError, match="local_batch"):
        run_workload("llm.train", {"local_batch": 0}, CPU, options=FAST)
    with pytest.raises(UsageError, match="positions"):
        run_workload("llm.train", {"seq": 100_000}, CPU, options=FAST)
    with pytest.raises(UsageError, match="target_loss must be > 0"):
        run_workload("llm.time_to_quality", {"target_loss": 0}, CPU, options=FAST)


def test_compile_on_a_cpu_is_skipped() -> None:
    d = _record("llm.train", {"compile": True})
    assert d["status"] == "skipped" and "CUDA" in d["reason"]


def test_a_failing_rank_fails_the_job_and_names_it() -> None:
    spec = {"model": "tiny", "local_batch": 1, "dp": 2, "tp": 1, "seq": 32, "compute": "fp32", "ac_every": 0,
            "compile": False, "seed": 0, "device": "cpu"}
    with TrainJob(2, spec) as job, pytest.raises(TrainJobError, match=r"rank \d of 2 failed during measure"):
        job.request("measure", {"warmup_s": "not a number"}, 60)  # every rank raises: a bad plan
    assert not job.alive and job.proc.poll() is not None


def test_time_to_quality_reaches_the_target_on_the_shipped_text() -> None:
    d = _record("llm.time_to_quality", {})
    assert d["status"] == "ok", d.get("reason")
    m, curve = d["metrics"], d["details"]["curve"]
    assert m["final_eval_loss"] <= 2.5 < curve[0]["eval_loss"]
    assert m["steps_to_target"] == curve[-1]["step"] and m["time_to_target_s"] == curve[-1]["elapsed_s"]
    assert len(d["timing"]["samples_s"]) == m["steps_to_target"]
    assert d["details"]["text_bytes"] > 4000


def test_time_to_quality_that_misses_the_target_is_invalid() -> None:
    d = _record("llm.time_to_quality", {"target_loss": 0.01, "max_steps": 20})
    assert d["status"] == "invalid" and "never reached 0.01" in d["reason"]


def test_suite_plan_shows_the_training_entries() -> None:
    result = CliRunner().invoke(cli_main, ["suite", "gigafactory", "--plan", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    cases = {c["entry"]: c for c in json.loads(result.output)["cases"]}
    for entry in ("llm-train-llama-3.1-8b", "llm-time-to-quality"):
        assert cases[entry]["skip_reason"] is None
    assert cases["llm-train-llama-3.1-8b"]["params"] == {"ranks": 2}  # the preview: tiny over 2 gloo ranks
    assert cases["llm-train-llama-3.1-70b"]["skip_reason"].startswith("not part of the preview run")
    suite = load_suite("gigafactory")
    gpus = PlanContext(gpus=8, fp8=True, is_gpu=True)
    full = {c.entry_id: c for c in suite.plan("full", gpus)}
    assert full["llm-train-llama-3.1-8b"].params["model"] == "llama-3.1-8b"
    assert full["llm-train-llama-3.1-70b"].params["tp"] == 8 and full["llm-train-llama-3.1-70b"].skip_reason is None
    quick = {c.entry_id: c for c in suite.plan("quick", gpus)}
    assert quick["llm-train-llama-3.1-70b"].skip_reason.startswith("not part of the quick run")
    assert quick["llm-train-llama-3.1-8b"].skip_reason is None


def test_tensor_parallel_job_passes_the_float64_gradient_gate() -> None:
    # The gate's tiny model is split over the 2 tp ranks (wqkv rows permuted per rank) and its
    # gradients gathered back to the logical layout before the float64 comparison.
    d = _record("llm.train", {"ranks": 2, "tp": 2, "local_batch": 2})
    assert d["status"] == "ok", d.get("reason")
    assert d["details"]["parallel"]["tp"] == 2 and d["details"]["parallel"]["dp_shard"] == 1
    assert d["correctness"]["rel_error"] < 1e-4
    assert d["metrics"]["tokens_per_s_per_gpu"] == pytest.approx(2 * 32 / d["timing"]["median"] / 2)
