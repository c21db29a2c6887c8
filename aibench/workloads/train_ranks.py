"""The per-rank program of `llm.train` across processes, started by torchrun.

    torchrun --standalone --nproc-per-node 2 -m aibench.workloads.train_ranks --spec SPEC.json --steps 4 --out L.json
    torchrun ... -m aibench.workloads.train_ranks --spec SPEC.json --store 127.0.0.1:PORT --key K

Each rank reads torchrun's environment (aibench.models.train.read_dist_env), joins the process
group (NCCL on GPUs, gloo on the CPU), builds its shard of the model (FSDP2 over dp, DTensor over
tp) and then either
- `--steps N --out FILE`: trains N steps on one fixed synthetic batch and rank 0 writes the global
  mean losses as JSON (what tests compare with one process), or
- `--store HOST:PORT`: serves the commands of the parent (aibench.workloads.train_launch) through
  its TCPStore until told to stop: `prepare`, `check` (the correctness gate), `measure` (warm-up,
  then timed steps under the run rules), `burst` (more steps: the energy window's unit of work).
  A rank whose parent goes away loses the store connection and exits.

Timing: each step is bracketed by CUDA events on a GPU (perf_counter on the CPU, where the
step's collectives hold the ranks together); a sample is the slowest rank's step (an FSDP step is
as slow as its slowest rank). Step counts come from one all-reduced estimate, so every rank runs
the same number of steps (a rank that ran one more would hang in its collectives).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from aibench.collectives.worker import Plan, plan_iterations
from aibench.core.errors import first_line
from aibench.models.config import ModelArgs
from aibench.models.train import (
    Layout,
    Trainer,
    TrainSpec,
    build_trainer,
    fresh_peak,
    peak_memory,
    read_dist_env,
    synthetic_tokens,
)
from aibench.models.train_check import check_args, grad_check, loss_curve, loss_decreases

GROUP_TIMEOUT = timedelta(minutes=30)  # a blocked rank gives up (the parent stops the job sooner)
COMMAND_TIMEOUT = timedelta(hours=2)  # a rank waits this long for the parent's next command


def spec_from_dict(d: dict[str, Any]) -> tuple[TrainSpec, Layout, str]:
    """(spec, layout, device type) from the JSON the parent wrote."""
    args = ModelArgs.from_name(d["model"], **d.get("overrides", {}))
    spec = TrainSpec(args, global_batch=d["local_batch"] * d["dp"], seq=d["seq"], compute=d["compute"],
                     ac_every=d["ac_every"], compile=d["compile"], seed=d["seed"])
    return spec, Layout(dp=d["dp"], tp=d["tp"]), d["device"]


class Rank:
    """One rank's state between commands."""

    def __init__(self, spec: TrainSpec, layout: Layout, device_type: str) -> None:
        env = read_dist_env()
        if env.world_size != layout.world_size:
            raise ValueError(f"torchrun started {env.world_size} ranks but the layout needs {layout.world_size}")
        self.rank, self.world = env.rank, env.world_size
        if device_type == "cuda":
            torch.cuda.set_device(env.local_rank)
            self.device = torch.device("cuda", env.local_rank)
        else:
            self.device = torch.device("cpu")
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=GROUP_TIMEOUT,
                                device_id=self.device if device_type == "cuda" else None)
        self.spec, self.layout = spec, layout
        self.tokens = synthetic_tokens(spec.args.vocab_size, spec.global_batch, spec.seq, spec.seed + 1)
        self.trainer: Trainer | None = None
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ commands

    def prepare(self) -> dict[str, Any]:
        with fresh_peak(self.device):
            self.trainer = build_trainer(self.spec, self.device, self.layout)
            self.batch = self.trainer.local_batch(self.tokens)
        return {"device": str(self.device), "name": torch.cuda.get_device_name(self.device)
                if self.device.type == "cuda" else "cpu"}

    def check(self, steps: int) -> dict[str, Any]:
        """The gate: one step's gradients of a tiny model in this layout against float64, then the
        measured model's loss on a fixed batch over `steps` steps."""
        s = self.spec
        tiny = check_args(s.args.is_moe, self.layout.tp)
        tiny_spec = TrainSpec(tiny, global_batch=s.global_batch, seq=min(s.seq, 32), compute=s.compute,
                              ac_every=s.ac_every, compile=False, seed=s.seed)
        tiny_trainer = build_trainer(tiny_spec, self.device, self.layout)
        grads = grad_check(tiny_trainer, synthetic_tokens(tiny.vocab_size, tiny_spec.global_batch, tiny_spec.seq,
                                                          s.seed + 2))
        del tiny_trainer
        assert self.trainer is not None
        losses = loss_curve(self.trainer, self.tokens, steps)
        ok, detail = loss_decreases(losses)
        return {"grad": grads.__dict__, "losses": losses, "loss_ok": ok, "loss_detail": detail,
                "check_model": tiny.name, "check_seq": tiny_spec.seq}

    def _steps(self, n: int) -> tuple[list[float], list[float]]:
        """n timed steps: (this rank's seconds per step, local losses)."""
        assert self.trainer is not None and self.batch is not None
        inputs, labels = self.batch
        losses: list[torch.Tensor] = []
        if self.device.type == "cuda":
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
            for begin, end in events:
                begin.record()
                losses.append(self._one(inputs, labels))
                end.record()
            self.sync()
            seconds = [b.elapsed_time(e) / 1e3 for b, e in events]
        else:
            seconds = []
            for _ in range(n):
                t0 = time.perf_counter()
                losses.append(self._one(inputs, labels))
                seconds.append(time.perf_counter() - t0)
        return seconds, [float(x) for x in losses]

    def _one(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        assert self.trainer is not None
        t = self.trainer
        loss = t.forward_backward(inputs, labels)  # no loss all-reduce inside the timed step
        t.optimizer.step()
        t.optimizer.zero_grad(set_to_none=True)
        return loss

    def _slowest(self, values: list[float]) -> list[float]:
        """Per step, the maximum over ranks."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def _mean(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return (t / self.world).tolist()

    def measure(self, plan: Plan) -> dict[str, Any]:
        """Warm-up (the first step compiles and allocates; then steps for warmup_s), then the timed
        steps the run rules ask for, all ranks alike."""
        self.sync()
        with fresh_peak(self.device):
            first = self._slowest(self._steps(1)[0])[0]
            probe = max(self._slowest(self._steps(2)[0]))
            warm, count = plan_iterations(probe, plan)
            warm = max(warm - 2, 0)
            if warm:
                self._steps(warm)
            seconds, losses = self._steps(count)
            samples = self._slowest(seconds)
            mem, why = peak_memory(self.device)
        peaks = {k: max(self._slowest([v])) for k, v in sorted(mem.items())}
        return {"samples_s": samples, "losses": self._mean(losses), "warmup_steps": 3 + warm,
                "first_step_s": first, "peak": peaks, "peak_unavailable": why}

    def burst(self, n: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        self._steps(n)
        self.sync()
        dist.barrier()
        return {"seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------- the two modes


def run_steps(rank: Rank, steps: int, out: str) -> None:
    rank.prepare()
    assert rank.trainer is not None
    losses = loss_curve(rank.trainer, rank.tokens, steps)
    if rank.rank == 0:
        with open(out, "w", encoding="utf-8") as f:
            json.dump({"losses": losses, "layout": rank.layout.as_dict(), "world_size": rank.world}, f)


def serve(rank: Rank, store: Any, key: str) -> None:
    """Answer the parent's commands until `stop`; after an error the rank stops serving (its peers
    may be blocked inside a collective: the parent tears the whole job down)."""
    handlers: dict[str, Callable[[Any], Any]] = {
        "prepare": lambda _arg: rank.prepare(),
        "check": lambda arg: rank.check(int(arg)),
        "measure": lambda arg: rank.measure(Plan(**arg)),
        "burst": lambda arg: rank.burst(int(arg)),
    }
    seq = 0
    while True:
        seq += 1
        cmd, arg = json.loads(store.get(f"{key}/cmd/{seq}"))
        if cmd == "stop":
            return
        try:
            reply = {"status": "ok", "payload": handlers[cmd](arg)}
        except Exception as exc:
            reply = {"status": "error", "payload": f"{type(exc).__name__}: {first_line(exc)}",
                     "traceback": traceback.format_exc(limit=8)[-4000:]}
        store.set(f"{key}/reply/{seq}/{rank.rank}", json.dumps(reply))
        if reply["status"] == "error":
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="llm.train ranks (under torchrun)")
    parser.add_argument("--spec", required=True, help="JSON of the run (see train_launch.rank_spec)")
    parser.add_argument("--steps", type=int, default=0, help="train this many steps and write losses (--out)")
    parser.add_argument("--out", default="", help="where rank 0 writes the losses of --steps")
    parser.add_argument("--store", default="", help="HOST:PORT of the parent's TCPStore (serve mode)")
    parser.add_argument("--key", default="aibench-train", help="key prefix in the store")
    ns = parser.parse_args(argv)
    spec, layout, device_type = spec_from_dict(json.loads(ns.spec))
    rank = Rank(spec, layout, device_type)
    try:
        if ns.store:
            host, _, port = ns.store.rpartition(":")
            store = dist.TCPStore(host, int(port), is_master=False, timeout=COMMAND_TIMEOUT)
            serve(rank, store, ns.key)
        elif ns.steps > 0 and ns.out:
            run_steps(rank, ns.steps, ns.out)
        else:
            parser.error("give --steps N --out FILE, or --store HOST:PORT")
        # gloo aborts ("terminate called without an active exception") when a rank tears its
        # group down while a peer still has traffic in flight: leave together.
        dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
