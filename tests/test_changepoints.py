"""E-divisive means: a known step is found where it is, a flat noisy series gives none."""

from __future__ import annotations

import random

import pytest

from aibench.results.changepoints import e_divisive


def series(n: int = 60, step_at: int | None = None, step: float = 0.10, noise: float = 0.02,
           seed: int = 0) -> list[float]:
    """1.0 with Gaussian noise of relative sd `noise`; from index `step_at` on, `step` higher."""
    rng = random.Random(seed)
    return [(1.0 + (step if step_at is not None and i >= step_at else 0.0)) * (1 + rng.gauss(0, noise))
            for i in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_step_at_run_37_is_found_there(seed: int) -> None:
    found = e_divisive(series(step_at=37, seed=seed))
    assert len(found) == 1
    assert abs(found[0].index - 37) <= 1
    assert found[0].relative_step == pytest.approx(0.10, abs=0.03)
    assert found[0].p_value < 0.01


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_flat_noisy_series_has_no_change_point(seed: int) -> None:
    assert e_divisive(series(seed=seed)) == []


def test_two_steps_and_a_step_back() -> None:
    values = [v * (1.2 if 20 <= i < 40 else 1.0) for i, v in enumerate(series(seed=3))]
    assert [c.index for c in e_divisive(values)] == [20, 40]


def test_deterministic_for_a_seed_and_short_series_are_flat() -> None:
    values = series(step_at=37, step=0.03, seed=4)
    assert e_divisive(values, seed=7) == e_divisive(values, seed=7)
    assert e_divisive([1.0, 2.0, 1.0]) == []  # shorter than two segments of min_size
    with pytest.raises(ValueError, match="min_size"):
        e_divisive(values, min_size=1)
    with pytest.raises(ValueError, match="NaN"):
        e_divisive([1.0, float("nan")] * 5)
