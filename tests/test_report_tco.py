"""TCO arithmetic (exact), and the prices file: every error names the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from aibench.core.errors import UsageError
from aibench.device.specs import SPECS, match_spec
from aibench.report import tco
from aibench.report.tco import Prices

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "prices.toml"
# Round figures: capex 4 x 8760 over 4 years = 1 EUR/h, opex 8760 / year = 1 EUR/h.
ROUND = Prices(capex_eur=4 * 8760.0, lifetime_years=4, power_eur_per_kwh=0.2, pue=1.5, opex_eur_per_year=8760.0)


def test_hourly_cost_exact() -> None:
    assert tco.hourly_fixed_eur(ROUND) == 2.0
    assert tco.hourly_energy_eur(1000.0, ROUND) == pytest.approx(0.3, abs=1e-15)  # 1 kW x 1.5 x 0.2
    assert tco.hourly_eur(1000.0, ROUND) == pytest.approx(2.3, abs=1e-15)
    p = Prices(capex_eur=35000, lifetime_years=4, power_eur_per_kwh=0.12, pue=1.3)  # opex defaults to 0
    assert tco.hourly_eur(700.0, p) == pytest.approx(35000 / (4 * 8760) + 0.7 * 1.3 * 0.12, rel=1e-15)


def test_derived_figures_exact() -> None:
    assert tco.cost_per_million(2.3, 1000.0) == pytest.approx(2.3 / 3.6, rel=1e-15)  # InferenceX
    assert tco.cost_per_million(3.6, 1.0) == pytest.approx(1e3, rel=1e-15)
    assert tco.cost_per_pflop(3.6, 1000.0) == pytest.approx(1e-3, rel=1e-15)  # 1 PFLOP/s for an hour at 3.6
    assert tco.units_per_provisioned_mw(1000.0, 1000.0, 1.5) == pytest.approx(1e6 / 1.5, rel=1e-15)
    assert tco.units_per_provisioned_mw(500.0, 500.0, 1.0) == pytest.approx(1e6, rel=1e-15)


def test_example_file_parses() -> None:
    prices = tco.load_prices(EXAMPLE)
    assert set(prices) == {"NVIDIA H100 SXM5 80GB", "NVIDIA H200 SXM 141GB", "cpu"}
    assert prices["NVIDIA H200 SXM 141GB"] == Prices(35000.0, 4.0, 0.12, 1.3, 2000.0)


# What NVML (and torch) report for each board (tests/test_env.py, the project's GPU machines).
REPORTED = {"NVIDIA H100 SXM5 80GB": "NVIDIA H100 80GB HBM3", "NVIDIA H200 SXM 141GB": "NVIDIA H200"}


def test_every_example_entry_is_a_known_product_or_the_cpu_entry() -> None:
    prices = tco.load_prices(EXAMPLE)
    assert "cpu" in prices  # the TCO section on any machine: a CPU preview matches it by kind
    for key in prices:
        if key == "cpu":
            continue
        spec = match_spec(key)
        # Named exactly as device/specs.py names the product, and that name matches its own row.
        assert key in {s.name for s in SPECS} and spec is not None and spec.name == key, key
        # A run of that board, by the name its driver reports, takes the entry.
        assert tco.prices_for(prices, "some box", REPORTED[key], "cuda") == (prices[key], key)


def test_a_datasheet_name_prices_the_boards_its_row_matches_and_no_other() -> None:
    prices = {"NVIDIA H100 SXM5 80GB": ROUND}
    assert tco.prices_for(prices, "box", "NVIDIA H100 80GB HBM3") == (ROUND, "NVIDIA H100 SXM5 80GB")
    found, why = tco.prices_for(prices, "box", "NVIDIA H100 PCIe")  # another product, another price
    assert found is None and "'NVIDIA H100 PCIe' or 'NVIDIA H100 PCIe 80GB'" in why
    assert tco.prices_for(prices, "box", "NVIDIA H100 80GB HBM3 MIG 1g.10gb")[0] is None  # a slice: no row
    exact = Prices(1, 1, 0, 1)  # the device's own name wins over its datasheet name
    assert tco.prices_for({**prices, "NVIDIA H100 80GB HBM3": exact}, "box", "NVIDIA H100 80GB HBM3")[0] is exact


def test_lookup_by_label_then_device() -> None:
    prices = {"acme box": ROUND, "NVIDIA H200": Prices(1, 1, 0, 1)}
    assert tco.prices_for(prices, "acme box", "NVIDIA H200") == (ROUND, "acme box")
    assert tco.prices_for(prices, "other", "NVIDIA H200")[1] == "NVIDIA H200"
    found, why = tco.prices_for(prices, "x", "NVIDIA B200")
    assert found is None and "'x' or 'NVIDIA B200'" in why


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = 'capex_eur = 1\nlifetime_years = 4\npower_eur_per_kwh = 0.1\npue = 1.2\n'


@pytest.mark.parametrize(("body", "needle"), [
    ('[systems."A"]\nlifetime_years = 4\npower_eur_per_kwh = 0.1\npue = 1.2\n', 'systems.A.capex_eur: missing'),
    ('[systems."NVIDIA H200"]\n' + GOOD.replace("pue = 1.2", "pue = 0.8"), 'systems."NVIDIA H200".pue: must be'),
    ('[systems.A]\n' + GOOD.replace("lifetime_years = 4", "lifetime_years = 0"), "systems.A.lifetime_years: must"),
    ('[systems.A]\n' + GOOD.replace("capex_eur = 1", 'capex_eur = "lots"'), "systems.A.capex_eur: must"),
    ('[systems.A]\n' + GOOD.replace("capex_eur = 1", "capex_eur = -5"), "systems.A.capex_eur: must"),
    ('[systems.A]\n' + GOOD.replace("capex_eur = 1", "capex_eur = true"), "systems.A.capex_eur: must"),
    ('[systems.A]\n' + GOOD.replace("capex_eur = 1", "capex_eur = nan"), "systems.A.capex_eur: must"),
    ('[systems.A]\n' + GOOD + "capex = 5\n", "systems.A.capex: unknown key"),
    ("[system.A]\n" + GOOD, "unknown top-level key 'system'"),
    ("title = 'x'\n", "unknown top-level key 'title'"),
    ("[systems]\n", "no [systems"),
    ("systems = 3\n", "no [systems"),
    ("[systems]\nA = 5\n", "systems.A: expected a table"),
    ("[systems.A\n", "not valid TOML"),
])
def test_bad_prices_name_file_key_and_problem(tmp_path: Path, body: str, needle: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(UsageError) as info:
        tco.load_prices(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_unreadable_prices_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        tco.load_prices(tmp_path / "nope.toml")
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UsageError, match="not UTF-8"):
        tco.load_prices(path)


def test_a_cpu_entry_prices_any_cpu_by_device_kind() -> None:
    prices = {"cpu": ROUND}
    assert tco.prices_for(prices, "box", "AMD EPYC 7763 64-Core Processor", "cpu") == (ROUND, "cpu")
    assert tco.prices_for(prices, "box", "NVIDIA H200", "cuda")[0] is None
