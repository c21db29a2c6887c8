"""A measurement session: the device, its environment fingerprint and telemetry, opened once and
shared by every workload of a `run` or a `suite`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from aibench.core.interrupts import CtrlC
from aibench.device import devices
from aibench.device.devices import DeviceInfo
from aibench.device.env import collect_environment, environment_sha256
from aibench.measure.runner import RunOptions
from aibench.measure.timer import TimerConfig
from aibench.results.rundir import RunDir
from aibench.suite.launched import distributed_block
from aibench.suite.model import RunRules
from aibench.telemetry import open_telemetry
from aibench.workloads.registry import get
from aibench.workloads.run import run_workload

# CPU preview: same workloads, tiny durations (the numbers are not comparable anyway). Still 10
# samples: below 8 a side compare's rank test can never call a change (stats.mann_whitney_samples_needed).
PREVIEW_RULES = RunRules(min_time_s=0.05, min_samples=10, target_rel_se=0.05, warmup_s=0.02, max_time_s=2.0,
                         energy_min_s=0.5)


def timer_config(rules: RunRules, *, min_time_s: float | None = None, max_time_s: float | None = None,
                 target_rel_se: float | None = None, cuda_graph: bool | None = None) -> TimerConfig:
    """TimerConfig from run rules, with command-line overrides."""
    base = rules.to_timer_config()
    min_time = base.min_time_s if min_time_s is None else min_time_s
    max_time = base.max_time_s if max_time_s is None else max_time_s
    return replace(
        base,
        min_time_s=min_time,
        max_time_s=max(max_time, min_time),
        target_rel_se=base.target_rel_se if target_rel_se is None else target_rel_se,
        cuda_graph=base.cuda_graph if cuda_graph is None else cuda_graph,
    )


def telemetry_devices(device: torch.device) -> list[torch.device]:
    """What a run samples: on a GPU every visible GPU, the run's own first (one sampler each:
    the idle baseline covers the node, a multi-GPU case's energy covers its GPUs, a single-GPU
    case counts its own); on a CPU the CPU packages (RAPL)."""
    if device.type != "cuda":
        return [device]
    own = device.index if device.index is not None else torch.cuda.current_device()
    return [torch.device("cuda", own)] + [torch.device("cuda", i) for i in range(torch.cuda.device_count()) if i != own]


@dataclass
class Session:
    device: torch.device
    device_info: DeviceInfo
    preview: bool
    environment: dict[str, Any]
    environment_sha256: str
    telemetry: Any = None  # aibench.telemetry.Telemetry, or None when switched off
    run_dir: RunDir | None = None
    rules: RunRules = field(default_factory=RunRules)

    @classmethod
    def open(cls, device_spec: str, *, telemetry: bool = True, own_device_only: bool = False) -> Session:
        """`own_device_only`: sample only this device (a follower rank of a launched job, whose
        records count its own GPU), not every visible GPU."""
        device = devices.resolve(device_spec)
        env = collect_environment()
        tel = None
        if telemetry:
            tel = open_telemetry([device] if own_device_only else telemetry_devices(device))
        preview = device.type == "cpu"
        return cls(device, devices.describe(device), preview, env, environment_sha256(env), tel,
                   rules=PREVIEW_RULES if preview else RunRules())

    def options(self, timer: TimerConfig, rules: RunRules) -> RunOptions:
        return RunOptions(timer=timer, telemetry=self.telemetry is not None, energy_min_s=rules.energy_min_s,
                          preview=self.preview, environment=self.environment_sha256,
                          case_timeout_s=rules.case_timeout_s)

    def manifest_fields(self, rules: Any, **extra: Any) -> dict[str, Any]:
        # One shape whether telemetry is on or off (the manifest schema requires both keys).
        telemetry: dict[str, Any] = {"available": False, "reason": "telemetry off (--no-telemetry)",
                                     "idle_baseline": None, "overhead": None}
        if self.telemetry is not None:
            telemetry = {"available": self.telemetry.available, "reason": self.telemetry.reason,
                         "source": self.telemetry.source, "idle_baseline": None, "overhead": None}
        return {
            "comparable": not self.preview,
            "preview": self.preview,
            "device": self.device_info.as_dict(),
            "run_rules": rules.as_dict(),
            "environment": self.environment,
            "environment_sha256": self.environment_sha256,
            "system": None,
            "suite": None,
            "telemetry": telemetry,
            **({"distributed": block} if (block := distributed_block()) else {}),
            **extra,
        }

    def idle_baseline(self) -> None:
        """Idle power/temperature/clocks before the first workload, kept with the run."""
        if self.run_dir is None or self.telemetry is None or not self.telemetry.available:
            return
        baseline = self.telemetry.idle_baseline(duration_s=1.0 if self.preview else 2.0)
        self.run_dir.update(telemetry={**self.run_dir.manifest["telemetry"], "idle_baseline": baseline})

    def run_one(self, workload: str, overrides: dict[str, Any], backends: list[str] | None,
                timer: TimerConfig, out: Path | None) -> list[dict[str, Any]]:
        """`aibench run`: one workload, every backend; optionally written as a run directory."""
        get(workload)  # unknown names fail before anything is created
        if out is not None:
            # The manifest states the rules the records were measured under: the session's, with
            # the command line's timer overrides (--min-time, --max-time, --noise, --cuda-graph).
            rules = replace(self.rules, **{f.name: getattr(timer, f.name) for f in fields(RunRules)
                                           if hasattr(timer, f.name)})
            self.run_dir = RunDir.create(out, workload, self.manifest_fields(rules))
            self.idle_baseline()
        run = self.run_dir
        written: list[dict[str, Any]] = []

        def keep(outcome: Any) -> None:  # each record is written as it is made
            if run is not None:
                written.append(run.append(outcome))
            ctrl_c.check()  # a Ctrl-C Python swallowed during that backend stops here, its record kept

        try:
            with CtrlC() as ctrl_c:
                outcomes = run_workload(workload, overrides, self.device, backends, self.options(timer, self.rules),
                                        telemetry=self.telemetry, on_outcome=keep)
        except BaseException:
            if run is not None:
                self.record_overhead()
                run.finish(complete=False)
            raise
        if run is None:
            return [o.record.to_dict() for o in outcomes]
        self.record_overhead()
        run.finish(complete=True)
        return written

    def record_overhead(self) -> None:
        self.record_distributed()
        if self.run_dir is not None and self.telemetry is not None and self.telemetry.available:
            self.run_dir.update(telemetry={**self.run_dir.manifest["telemetry"],
                                           "overhead": self.telemetry.overhead()})

    def record_distributed(self) -> None:
        """A launched job's ranks and failures, as they stand now (rank 0 writes them)."""
        if self.run_dir is not None and (block := distributed_block()) is not None:
            self.run_dir.update(distributed=block)

    def close(self) -> None:
        if self.telemetry is not None:
            self.telemetry.close()
