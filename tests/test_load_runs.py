"""Reading many runs at once: in forked workers, the same runs and the same first error as one
process; the cyclic collector paused around it comes back on."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from bundle_helpers import manifest, record, run_files, timing_for, write_run_dir

from aibench.bundle import load
from aibench.core.errors import AibenchError
from aibench.core.gcpause import collector_paused


def _runs(tmp_path: Path, count: int) -> list[Path]:
    out = []
    for r in range(count):
        samples = [1e-3 * (1 + 0.01 * r) * (1 + 0.001 * j) for j in range(7 + r)]
        recs = [record(id=f"gemm[m={64 + r}]/torch", timing=timing_for(samples)),
                record(id="lie", timing=timing_for(samples, median=1.0))]  # refused in the worker
        out.append(write_run_dir(tmp_path / f"r{r}", run_files(man=manifest(run_id=f"run-{r}"), records=recs)))
    return out


def test_workers_read_the_same_runs_in_the_same_order_as_one_process(tmp_path: Path) -> None:
    paths = _runs(tmp_path, 5)
    serial = load.load_runs(paths, workers=1)
    parallel = load.load_runs(paths, workers=2)
    assert parallel == serial
    assert [r.manifest["run_id"] for r in parallel] == [f"run-{r}" for r in range(5)]
    assert all(r.records[1]["status"] == "invalid" for r in parallel)  # the recompute ran in the workers


def test_workers_raise_the_first_bad_run_as_one_process_does(tmp_path: Path) -> None:
    paths = _runs(tmp_path, 4)
    (paths[1] / "manifest.json").write_text("{not json")
    (paths[3] / "manifest.json").unlink()
    for workers in (1, 2):
        with pytest.raises(AibenchError, match=r"r1/run-1: unreadable run"):
            load.load_runs(paths, workers=workers)


def test_workers_only_once_the_input_is_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _runs(tmp_path, 3)
    assert load._default_workers(paths) == 1  # a few KB: a pool would cost more than it saves
    monkeypatch.setattr(load, "PARALLEL_MIN_BYTES", 1)
    assert load._default_workers(paths) == (len(load.os.sched_getaffinity(0)) if load.sys.platform == "linux" else 1)
    assert load._default_workers(paths[:1]) == 1


def test_the_collector_is_paused_for_the_block_and_back_after_an_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()

