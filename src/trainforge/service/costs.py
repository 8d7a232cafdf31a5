"""Cost accounting: the server's price table, each job's ``Cost``, and totals by user, day or instance type.

**Prices.** :func:`load_prices` starts from the defaults (public on-demand list prices, :mod:`trainforge.spec.prices`)
and lets a file (``TRAINFORGE_PRICES_FILE``: JSON, or TOML when it ends in ``.toml``) replace the price of the types it
names: ``{"ml.m5.large": 0.115, "ml.c5.xlarge": 0.2, "currency": "USD"}``. A file in another currency replaces the whole
table (a default in USD would not add up with it): types it does not name have no price. A type without a price gets
a ``Cost`` whose ``Amount`` is null and says why; nothing fails for it.

**A job's cost** is ``BillableTimeInSeconds * InstanceCount * PricePerInstanceHour / 3600``, rounded once to the
micro-unit (6 decimals, half up). Totals add up those rounded amounts (decimal arithmetic, so no float drift): the sum
of the per-job ``Cost.Amount`` of a period equals the period's total exactly, whichever grouping.

**What counts** (:meth:`CostService.report`): training jobs (``@remote`` functions are training jobs) and transform
jobs that ended, each whole in the period holding its start (training start, transform start), for
``max(1, round(end - start))`` seconds as ``BillableTimeInSeconds``; endpoints for the time their instances were up
(each launch, from its start until its instances are gone, or until now while they run), clipped to the period and
cut at each UTC midnight, each piece rounded once. ``day`` groups by the UTC date of a job's start (of a piece's,
for endpoints).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from trainforge.errors import ValidationError
from trainforge.scheduler.instances import CATALOGUE
from trainforge.service.principal import ADMIN_USER, Principal
from trainforge.spec.prices import DEFAULT_CURRENCY, DEFAULT_PRICES, FREE_TYPES, PRICES_AS_OF
from trainforge.spec.status import TERMINAL, SecondaryStatus
from trainforge.store.records import JobRecord
from trainforge.store.usage import ENDPOINT, TRAINING_JOB, TRANSFORM_JOB, Usage, UsageStore

SETTING = "TRAINFORGE_PRICES_FILE"
BY_CHOICES = ("user", "day", "instance-type")
MICRO = Decimal("0.000001")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_AGE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# -- prices -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceTable:
    """Price per instance-hour by instance type, in one currency; ``source`` says where it came from."""

    currency: str = DEFAULT_CURRENCY
    prices: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    source: str = f"defaults (public on-demand list prices as of {PRICES_AS_OF})"

    def price(self, instance_type: str) -> float | None:
        """The price of one hour of ``instance_type``: 0 for ``local``/``local_gpu`` unless the table names them,
        None when the table has none."""
        found = self.prices.get(instance_type)
        if found is None and instance_type in FREE_TYPES:
            return 0.0
        return found

    def to_json(self) -> dict[str, Any]:
        """``{"Currency", "Source", "Prices": {type: price}}`` (types sorted)."""
        return {"Currency": self.currency, "Source": self.source, "Prices": dict(sorted(self.prices.items()))}


def _bad(source: str, entry: str, problem: str) -> ValidationError:
    return ValidationError(f"{SETTING}: {source}: entry {entry!r}: {problem}", field=SETTING, details={"entry": entry})


def parse_prices(data: object, *, source: str) -> PriceTable:
    """The price table a file's parsed ``data`` describes (see the module doc).

    Raises:
        ValidationError: naming ``TRAINFORGE_PRICES_FILE``, ``source`` and the entry: not a table, a currency that
            is not a three-letter code, an unknown instance type (with close matches), or a price that is not a
            finite number >= 0.
    """
    if not isinstance(data, Mapping):
        raise ValidationError(
            f'{SETTING}: {source}: expected a table of prices such as {{"ml.m5.large": 0.115, "currency": "USD"}}',
            field=SETTING,
        )
    currency = DEFAULT_CURRENCY
    given: dict[str, float] = {}
    for key, value in data.items():
        if str(key).lower() == "currency":
            if not isinstance(value, str) or not _CURRENCY.match(value):
                raise _bad(source, str(key), f"{value!r} is not a three-letter currency code such as USD or EUR")
            currency = value
            continue
        name = str(key)
        if name not in CATALOGUE and name not in FREE_TYPES:
            close = difflib.get_close_matches(name, list(CATALOGUE), n=3, cutoff=0.6)
            hint = (
                f"; did you mean {', '.join(close)}?" if close else " (known types are ml.* names such as ml.m5.large)"
            )
            raise _bad(source, name, f"unknown instance type{hint}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise _bad(source, name, f"{value!r} is not a price: give a number >= 0 ({currency} per instance-hour)")
        given[name] = float(value)
    base = dict(DEFAULT_PRICES) if currency == DEFAULT_CURRENCY else {}
    return PriceTable(currency=currency, prices={**base, **given}, source=source)


def load_prices(path: Path | None) -> PriceTable:
    """The server's price table: the defaults, with the prices of the file at ``path`` (when given) on top.

    Raises:
        ValidationError: naming ``TRAINFORGE_PRICES_FILE`` and the file: it cannot be read or parsed (with the
            parser's line), or an entry is bad (:func:`parse_prices`).
    """
    if path is None:
        return PriceTable()
    source = str(path)
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(
            f"{SETTING}: cannot read the price file {source} ({exc.__class__.__name__}: {exc}); fix the path or unset "
            f"{SETTING} to use the default prices",
            field=SETTING,
        ) from None
    try:
        data: object = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ValidationError(f"{SETTING}: {source} is not valid {kind}: {exc}", field=SETTING) from None
    return parse_prices(data, source=source)


# -- one job --------------------------------------------------------------------------------------------------------


def billable_seconds(status: str | None, start: float | None, end: float | None) -> int | None:
    """``BillableTimeInSeconds`` of a job with this secondary ``status`` and training ``start``/``end``: whole
    seconds, at least 1, once the job ended; None before (the rule of DescribeTrainingJob)."""
    if status is None or SecondaryStatus(status) not in TERMINAL or start is None or not end:
        return None
    return max(1, round(end - start))


def charge(price: float, instance_count: int, seconds: float | int | Decimal) -> Decimal:
    """``price * instance_count * seconds / 3600``, rounded half up to 6 decimals."""
    exact = Decimal(str(price)) * instance_count * Decimal(str(seconds)) / 3600
    return exact.quantize(MICRO, rounding=ROUND_HALF_UP)


def _number(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() else float(value)


def cost_of(prices: PriceTable, instance_type: str, instance_count: int, seconds: int) -> dict[str, Any]:
    """The ``Cost`` object of ``instance_count`` instances of ``instance_type`` billed ``seconds``; without a
    price its ``Amount`` is null and ``Message`` says why."""
    price = prices.price(instance_type)
    out: dict[str, Any] = {
        "Currency": prices.currency,
        "PricePerInstanceHour": price,
        "InstanceCount": instance_count,
        "BillableTimeInSeconds": seconds,
        "Amount": None if price is None else float(charge(price, instance_count, seconds)),
    }
    if price is None:
        out["Message"] = f"No price for {instance_type} in this server's price table ({prices.source})"
    return out


def job_cost(job: JobRecord, prices: PriceTable) -> dict[str, Any] | None:
    """The ``Cost`` of a training job once it ended (it has ``BillableTimeInSeconds``); None before."""
    seconds = billable_seconds(job.secondary_status, job.training_start_time, job.training_end_time)
    if seconds is None:
        return None
    return cost_of(prices, job.instance_type, job.instance_count, seconds)


# -- periods ------------------------------------------------------------------------------------------------------


def parse_instant(text: str | None, *, field: str, now: float) -> float | None:
    """A point in time from a query: ISO 8601 (``2026-12-01``: its UTC midnight; a time without an offset is
    UTC), epoch seconds, or an age such as ``30m``, ``12h``, ``7d``, ``2w`` (that long before ``now``).

    Raises:
        ValidationError: naming ``field`` when ``text`` is none of those.
    """
    if text is None or not text.strip():
        return None
    value = text.strip()
    age = _AGE.match(value)
    if age:
        return now - int(age.group(1)) * _UNITS[age.group(2)]
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(number) and number >= 0:
            return number
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{field}: {text!r} is not a time; use an ISO 8601 date or time (2026-12-01, 2026-12-01T08:00:00Z), "
            "epoch seconds, or an age such as 7d, 12h or 30m",
            field=field,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def utc_day(epoch: float) -> str:
    """The UTC date of ``epoch`` as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(epoch, UTC).date().isoformat()


def _next_midnight(epoch: float) -> float:
    day = datetime.fromtimestamp(epoch, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day + timedelta(days=1)).timestamp()


# -- totals -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    kind: str
    name: str
    owner: str
    instance_type: str
    start: float
    instance_seconds: Decimal
    amount: Decimal | None


@dataclass
class _Group:
    amount: Decimal = Decimal(0)
    instance_seconds: Decimal = Decimal(0)
    names: dict[str, set[str]] = field(
        default_factory=lambda: {TRAINING_JOB: set(), ENDPOINT: set(), TRANSFORM_JOB: set()}
    )


@dataclass
class CostService:
    """Totals of instance time and money over a period, for one caller."""

    usage: UsageStore
    prices: PriceTable = field(default_factory=PriceTable)

    def _job_item(self, u: Usage) -> _Item | None:
        if u.kind == TRAINING_JOB:
            seconds = billable_seconds(u.status, u.start, u.end)
        else:
            seconds = None if u.end is None else max(1, round(u.end - u.start))
        if seconds is None:
            return None
        price = self.prices.price(u.instance_type)
        amount = None if price is None else charge(price, u.instance_count, seconds)
        owner = u.owner or ADMIN_USER
        return _Item(u.kind, u.name, owner, u.instance_type, u.start, Decimal(seconds * u.instance_count), amount)

    def _endpoint_items(self, u: Usage, since: float | None, until: float) -> list[_Item]:
        start = max(u.start, since) if since is not None else u.start
        end = min(u.end if u.end is not None else until, until)
        price = self.prices.price(u.instance_type)
        items = []
        while start < end:
            stop = min(end, _next_midnight(start))
            seconds = Decimal(str(round(stop - start, 3)))
            amount = None if price is None else charge(price, u.instance_count, seconds)
            items.append(
                _Item(u.kind, u.name, u.owner or ADMIN_USER, u.instance_type, start, seconds * u.instance_count, amount)
            )
            start = stop
        return items

    def report(
        self,
        principal: Principal,
        *,
        by: str = "user",
        since: str | None = None,
        until: str | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """``GET /v1/costs``: the caller's costs (everyone's for an admin) in ``[since, until)``, grouped ``by``
        ``user``, ``day`` (UTC) or ``instance-type``; ``Total`` is the sum of the groups' ``Amount``.

        Raises:
            ValidationError: naming ``by`` (with the choices), ``since`` or ``until`` (not a time, or ``until`` not
                after ``since``).
        """
        if by not in BY_CHOICES:
            raise ValidationError(f"by: {by!r} is not one of {', '.join(BY_CHOICES)}", field="by")
        t = time.time() if now is None else now
        start = parse_instant(since, field="since", now=t)
        end = parse_instant(until, field="until", now=t)
        if start is not None and end is not None and end <= start:
            raise ValidationError("until: must be later than since", field="until")
        owner = None if principal.admin else principal.user
        items: list[_Item] = []
        for u in self.usage.training_usage(since=start, until=end, owner=owner):
            if (item := self._job_item(u)) is not None:
                items.append(item)
        for u in self.usage.transform_usage(since=start, until=end, owner=owner):
            if (item := self._job_item(u)) is not None:
                items.append(item)
        horizon = t if end is None else min(end, t)
        for u in self.usage.endpoint_usage(since=start, until=end, owner=owner):
            items.extend(self._endpoint_items(u, start, horizon))
        return self._totals(items, by=by, since=start, until=end)

    def _totals(self, items: list[_Item], *, by: str, since: float | None, until: float | None) -> dict[str, Any]:
        groups: dict[str, _Group] = {}
        unpriced: set[str] = set()
        for item in items:
            key = {"user": item.owner, "day": utc_day(item.start), "instance-type": item.instance_type}[by]
            group = groups.setdefault(key, _Group())
            group.instance_seconds += item.instance_seconds
            group.names[item.kind].add(item.name)
            if item.amount is None:
                unpriced.add(item.instance_type)
            else:
                group.amount += item.amount
        ordered = (
            sorted(groups.items()) if by == "day" else sorted(groups.items(), key=lambda kv: (-kv[1].amount, kv[0]))
        )
        return {
            "Currency": self.prices.currency,
            "By": by,
            "Since": since,
            "Until": until,
            "Groups": [
                {
                    "Key": key,
                    "Amount": float(g.amount),
                    "TrainingJobs": len(g.names[TRAINING_JOB]),
                    "TransformJobs": len(g.names[TRANSFORM_JOB]),
                    "Endpoints": len(g.names[ENDPOINT]),
                    "InstanceSeconds": _number(g.instance_seconds),
                }
                for key, g in ordered
            ],
            "Total": float(sum((g.amount for g in groups.values()), Decimal(0))),
            "UnpricedInstanceTypes": sorted(unpriced),
        }
