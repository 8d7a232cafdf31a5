"""The price table (defaults, price files and their errors), one job's charge, and the times ``/v1/costs`` takes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from trainforge.errors import ValidationError
from trainforge.scheduler.instances import CATALOGUE, HOSTING, TRAINING
from trainforge.service.costs import (
    PriceTable,
    billable_seconds,
    charge,
    cost_of,
    load_prices,
    parse_instant,
    parse_prices,
    utc_day,
)
from trainforge.spec.prices import DEFAULT_PRICES


def test_every_catalogue_type_has_a_positive_default_price_and_local_is_free() -> None:
    assert set(DEFAULT_PRICES) == set(CATALOGUE) == set(TRAINING) | set(HOSTING)
    assert all(price > 0 for price in DEFAULT_PRICES.values())
    table = PriceTable()
    assert table.currency == "USD"
    assert table.price("ml.m5.large") == 0.115
    assert table.price("local") == 0.0 and table.price("local_gpu") == 0.0
    assert table.price("ml.nope.large") is None


def test_within_a_family_more_resources_cost_more() -> None:
    groups: dict[tuple[str, int], list[tuple[int, float, float]]] = {}
    for name, price in DEFAULT_PRICES.items():
        kind = CATALOGUE[name]
        # ml.g5.16xlarge (1 GPU) costs less than ml.g5.12xlarge (4 GPUs): compare types with as many GPUs
        groups.setdefault((name.rsplit(".", 1)[0], kind.gpus), []).append((kind.vcpus, kind.memory_gib, price))
    for group, sizes in groups.items():
        prices = [price for _, _, price in sorted(sizes)]
        assert prices == sorted(prices), group


def test_a_file_replaces_the_prices_it_names_and_keeps_the_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"ml.m5.large": 0.2, "ml.c5.xlarge": 1, "local": 0.5, "currency": "USD"}))
    table = load_prices(path)
    assert table.price("ml.m5.large") == 0.2 and table.price("ml.c5.xlarge") == 1.0
    assert table.price("ml.m5.xlarge") == DEFAULT_PRICES["ml.m5.xlarge"]
    assert table.price("local") == 0.5 and table.price("local_gpu") == 0.0
    assert table.source == str(path)
    toml = tmp_path / "prices.toml"
    toml.write_text('currency = "EUR"\n"ml.m5.large" = 0.1\n')
    eur = load_prices(toml)
    assert eur.currency == "EUR" and eur.price("ml.m5.large") == 0.1
    assert eur.price("ml.m5.xlarge") is None  # a USD default would not add up with EUR prices
    assert load_prices(None).prices == dict(DEFAULT_PRICES)


@pytest.mark.parametrize(
    ("data", "entry", "says"),
    [
        ({"ml.m5.lage": 0.1}, "ml.m5.lage", "did you mean ml.m5.large"),
        ({"gpu-box": 0.1}, "gpu-box", "unknown instance type"),
        ({"ml.m5.large": -1}, "ml.m5.large", "-1 is not a price"),
        ({"ml.m5.large": "0.1"}, "ml.m5.large", "'0.1' is not a price"),
        ({"ml.m5.large": True}, "ml.m5.large", "True is not a price"),
        ({"ml.m5.large": float("inf")}, "ml.m5.large", "inf is not a price"),
        ({"currency": "dollars"}, "currency", "three-letter currency code"),
    ],
)
def test_a_bad_entry_names_the_setting_the_file_and_the_entry(data: dict[str, object], entry: str, says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_prices(data, source="/etc/tf/prices.json")
    message = caught.value.message
    assert message.startswith("TRAINFORGE_PRICES_FILE: /etc/tf/prices.json: entry ")
    assert repr(entry) in message and says in message, message
    assert caught.value.field == "TRAINFORGE_PRICES_FILE"


def test_an_unreadable_or_unparsable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"cannot read the price file .*missing.json"):
        load_prices(tmp_path / "missing.json")
    bad = tmp_path / "prices.json"
    bad.write_text('{"ml.m5.large": 0.1,,}')
    with pytest.raises(ValidationError, match=r"prices.json is not valid JSON: .*line 1"):
        load_prices(bad)
    bad_toml = tmp_path / "prices.toml"
    bad_toml.write_text("ml.m5.large = \n")
    with pytest.raises(ValidationError, match=r"prices.toml is not valid TOML"):
        load_prices(bad_toml)
    listed = tmp_path / "list.json"
    listed.write_text("[0.1]")
    with pytest.raises(ValidationError, match=r"expected a table of prices"):
        load_prices(listed)


def test_a_charge_is_rounded_once_to_six_decimals_half_up() -> None:
    assert charge(0.115, 1, 12) == Decimal("0.000383")  # 0.00038333...
    assert charge(0.2, 3, 45) == Decimal("0.0075")
    assert charge(3.6, 1, 1) == Decimal("0.001")
    assert charge(0.0000018, 1, 3600) == Decimal("0.000002")  # 0.0000018 -> half up
    assert charge(0.0, 4, 10_000) == 0


def test_cost_of_a_type_without_a_price_says_so_instead_of_failing() -> None:
    eur = parse_prices({"currency": "EUR", "ml.m5.large": 0.1}, source="eur.json")
    cost = cost_of(eur, "ml.c5.xlarge", 2, 60)
    assert cost["Amount"] is None and cost["PricePerInstanceHour"] is None and cost["Currency"] == "EUR"
    assert "No price for ml.c5.xlarge" in cost["Message"] and "eur.json" in cost["Message"]
    assert cost_of(eur, "ml.m5.large", 2, 90) == {
        "Currency": "EUR",
        "PricePerInstanceHour": 0.1,
        "InstanceCount": 2,
        "BillableTimeInSeconds": 90,
        "Amount": 0.005,
    }


def test_billable_seconds_only_once_ended_and_at_least_one() -> None:
    assert billable_seconds("Training", 100.0, None) is None
    assert billable_seconds("Completed", None, 200.0) is None
    assert billable_seconds("Completed", 100.0, 100.2) == 1
    assert billable_seconds("Failed", 100.0, 112.6) == 13
    assert billable_seconds("Stopped", 100.0, 160.4) == 60


def test_times_are_iso_epoch_or_an_age() -> None:
    now = 1_800_000_000.0
    assert parse_instant("2026-12-01", field="since", now=now) == datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert (
        parse_instant("2026-12-01T08:00:00Z", field="since", now=now)
        == datetime(2026, 12, 1, 8, tzinfo=UTC).timestamp()
    )
    assert (
        parse_instant("2026-12-01T10:00:00+02:00", field="since", now=now)
        == datetime(2026, 12, 1, 8, tzinfo=UTC).timestamp()
    )
    assert parse_instant("1700000000.5", field="since", now=now) == 1_700_000_000.5
    assert parse_instant("7d", field="since", now=now) == now - 7 * 86400
    assert parse_instant("30m", field="since", now=now) == now - 1800
    assert parse_instant(None, field="since", now=now) is None and parse_instant(" ", field="since", now=now) is None
    for bad in ("yesterday", "7 days", "2026-13-01", "-5", "nan"):
        with pytest.raises(ValidationError) as caught:
            parse_instant(bad, field="until", now=now)
        assert caught.value.field == "until" and caught.value.message.startswith(f"until: {bad!r} is not a time")


def test_days_are_utc_dates() -> None:
    assert utc_day(datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC).timestamp()) == "2026-12-01"
    assert utc_day(datetime(2026, 12, 2, 0, 0, 0, tzinfo=UTC).timestamp()) == "2026-12-02"
