"""Derived numbers are recomputed from raw samples and facts checked against each other
(aibench/results/recompute.py): each lie a vendor could sign is named by its code."""

from __future__ import annotations

import copy

from bundle_helpers import manifest, record

from aibench.core import stats
from aibench.results import recompute


def _honest() -> dict:
    rec = record()
    rec["timing"].update(stats.summarize(rec["timing"]["samples_s"]))  # every statistic the timer writes
    return rec


def _codes(rec: dict, man: dict | None = None) -> set[str]:
    return {c for c, _ in recompute.record_problems(rec, manifest() if man is None else man)}


def test_an_honest_record_gives_no_finding() -> None:
    assert _codes(_honest()) == set()
    assert recompute.refused([_honest()], manifest())[0]["status"] == "ok"


def test_a_changed_median_is_a_summary_mismatch() -> None:
    rec = _honest()
    rec["timing"]["median"] *= 0.5
    assert "summary_mismatch" in _codes(rec)


def test_a_changed_ci_is_a_summary_mismatch() -> None:
    rec = _honest()
    rec["timing"]["ci95_median"] = [1e-9, 2e-9]
    assert _codes(rec) == {"summary_mismatch"}


def test_a_changed_tflops_is_a_metric_mismatch() -> None:
    rec = _honest()
    rec["metrics"]["tflops"] *= 2
    assert _codes(rec) == {"metric_mismatch"}


def test_a_rounding_difference_is_not_a_mismatch() -> None:
    rec = _honest()
    rec["metrics"]["tflops"] *= 1 + 1e-12
    assert _codes(rec) == set()


def test_comparable_on_a_cpu_device_is_a_contradiction() -> None:
    rec = _honest()
    rec["device"] = {"spec": "cpu", "kind": "cpu", "name": "cpu", "index": None}
    rec["preview"] = False
    assert _codes(rec) == {"fact_contradiction"}
    rec["preview"] = True
    assert _codes(rec) == set()


def test_a_run_claiming_comparable_on_cpu_only_torch_is_a_contradiction() -> None:
    man = manifest(environment={"software": {"torch": "2.13.0+cpu"}, "gpus": []}, comparable=True, preview=False)
    assert {c for c, _ in recompute.manifest_problems(man)} == {"fact_contradiction"}
    ok = manifest(environment={"software": {"torch": "2.13.0+cpu"}, "gpus": []}, comparable=False, preview=True)
    assert recompute.manifest_problems(ok) == []


def test_interpreted_false_is_a_lie_only_for_triton_without_gpu() -> None:
    rec = _honest()
    rec["device"] = {"spec": "cpu", "kind": "cpu", "name": "cpu", "index": None}
    rec["preview"] = True
    assert _codes(rec) == set()  # torch on a CPU is not interpreted
    rec["backend"] = "triton"
    assert _codes(rec) == {"fact_contradiction"}


def test_device_must_match_the_fingerprint() -> None:
    man = manifest(environment={"software": {"torch": "2.13.0"}, "gpus": [{"name": "NVIDIA A100"}]})
    assert _codes(_honest(), man) == {"device_mismatch"}
    man = manifest(environment={"software": {"torch": "2.13.0"}, "gpus": [{"name": "NVIDIA H100"}]})
    assert _codes(_honest(), man) == set()


def test_passed_with_error_above_tolerance_is_a_contradiction() -> None:
    rec = _honest()
    rec["correctness"] = {"checked": True, "passed": True, "rel_error": 0.5, "tolerance": 1e-2}
    assert _codes(rec) == {"correctness_contradiction"}


def test_refused_record_keeps_no_number_and_says_why() -> None:
    rec = _honest()
    rec["metrics"]["tflops"] = 1e6
    out = recompute.refused([copy.deepcopy(rec)], manifest())[0]
    assert out["status"] == "invalid" and out["metrics"] == {} and out["timing"] is None
    assert out["reason"].startswith("refused: metric_mismatch")


def test_each_recomputed_statistic_is_the_one_the_timer_keeps() -> None:
    """recompute checks one statistic at a time; each must equal stats.summarize's, name for name."""
    from aibench.core import stats
    from aibench.results.recompute import _STATISTIC

    samples = [1e-3 * (1 + 0.37 * ((7 * i) % 11)) for i in range(23)]
    summary = stats.summarize(samples)
    assert set(_STATISTIC) == set(summary)
    for name, statistic in _STATISTIC.items():
        assert statistic(samples) == summary[name], name


def test_the_recompute_sorts_once_and_still_gives_every_statistic_of_unsorted_samples() -> None:
    # The timer summarises samples in the order they came; the recompute sorts them first (speed).
    # Each statistic is order-free, so the two must agree exactly, not to a tolerance.
    import random

    samples = [1e-3 * (1 + ((i * 7919) % 1000) / 997) for i in range(2001)]  # unsorted, with ties
    random.Random(4).shuffle(samples)
    rec = record()
    rec["timing"] = {**rec["timing"], "samples_s": samples, **stats.summarize(samples)}
    summary = stats.summarize(samples)
    assert all(summary[k] == recompute._STATISTIC[k](sorted(samples)) for k in summary if k in recompute._STATISTIC)
    assert recompute.summary_problems(rec) == []


def test_refused_bootstraps_every_claimed_interval_in_one_batch_and_still_names_each_lie() -> None:
    # Records of several lengths, each with the timer's whole summary; one in three lies about its
    # interval by one part in a million (above REL_TOL), which the batched bootstrap must see.
    recs = []
    for i in range(30):
        samples = [1e-3 * (1 + 0.01 * ((i * 7 + j * 13) % 17)) for j in range(5 + i % 4)]
        rec = record(id=f"r{i}", timing={**record()["timing"], "samples_s": samples, **stats.summarize(samples)})
        if i % 3 == 0:
            lo, hi = rec["timing"]["ci95_median"]
            rec["timing"]["ci95_median"] = [lo, hi * (1 + 1e-6)]
        recs.append(rec)
    assert recompute.median_intervals(recs) == [tuple(stats.bootstrap_ci_median(r["timing"]["samples_s"]))
                                                for r in recs]
    out = recompute.refused(recs, None)
    bad = [r["id"] for r in out if r["status"] == "invalid"]
    assert bad == [f"r{i}" for i in range(0, 30, 3)]
    assert all("timing.ci95_median" in r["reason"] for r in out if r["status"] == "invalid")
