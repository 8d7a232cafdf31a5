"""Declarative hyperparameter validation for built-in algorithms (values arrive as strings).

A :class:`Schema` lists an algorithm's hyperparameters; :meth:`Schema.validate` parses every raw string value,
checks its range, fills defaults and returns typed values, raising :class:`~trainforge_algorithms.job.UserError`
with a message that names the hyperparameter and the rule: ``hyperparameter 'eta' = '1.5' is invalid: must be a
number in [0, 1]``. Unknown names are rejected (with a "did you mean" hint); keys starting with ``sagemaker_``
are the platform's and are ignored.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .job import UserError

PLATFORM_PREFIX = "sagemaker_"


class InvalidValue(ValueError):
    """A raw value does not satisfy a hyperparameter's rule (``str(exc)`` is the rule, or a specific reason)."""


@dataclass(frozen=True)
class Interval:
    """A numeric range; None bounds are open-ended."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the interval."""
        if math.isnan(value):
            return False
        if self.min is not None and (value <= self.min if self.min_open else value < self.min):
            return False
        return not (self.max is not None and (value >= self.max if self.max_open else value > self.max))

    def describe(self) -> str:
        """``in [0, 1]``, ``in (0, 1]``, ``>= 1``, ``> 0``, ``<= 3`` or ``any value``."""
        if self.min is not None and self.max is not None:
            left = "(" if self.min_open else "["
            right = ")" if self.max_open else "]"
            return f"in {left}{_num(self.min)}, {_num(self.max)}{right}"
        if self.min is not None:
            return f"{'>' if self.min_open else '>='} {_num(self.min)}"
        if self.max is not None:
            return f"{'<' if self.max_open else '<='} {_num(self.max)}"
        return "any value"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: ``parse`` turns the raw string into a value or raises :class:`InvalidValue`;
    ``rule`` says in words what is accepted."""

    name: str
    parse: Callable[[str], Any]
    rule: str
    required: bool = False
    default: Any = None
    doc: str = ""


def _parse_int(raw: str) -> int:
    text = raw.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise InvalidValue("not an integer") from None
    if not number.is_integer():
        raise InvalidValue("not an integer")
    return int(number)


def _parse_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise InvalidValue("not a number") from None
    if math.isnan(value):
        raise InvalidValue("not a number")
    return value


def integer(name: str, interval: Interval | None = None, **kw: Any) -> Hyperparameter:
    """An integer hyperparameter (``"10"``, also ``"10.0"``) within ``interval``."""
    rng = interval or Interval()
    rule = "an integer" + ("" if rng.describe() == "any value" else f" {rng.describe()}")

    def parse(raw: str) -> int:
        value = _parse_int(raw)
        if not rng.contains(value):
            raise InvalidValue(rule)
        return value

    return Hyperparameter(name, parse, rule, **kw)


def real(name: str, interval: Interval | None = None, **kw: Any) -> Hyperparameter:
    """A number within ``interval``."""
    rng = interval or Interval()
    rule = "a number" + ("" if rng.describe() == "any value" else f" {rng.describe()}")

    def parse(raw: str) -> float:
        value = _parse_float(raw)
        if not rng.contains(value):
            raise InvalidValue(rule)
        return value

    return Hyperparameter(name, parse, rule, **kw)


def choice(name: str, options: Iterable[str], *, case_sensitive: bool = False, **kw: Any) -> Hyperparameter:
    """One of ``options`` (compared case-insensitively unless ``case_sensitive``); returns the option."""
    values = tuple(options)
    rule = "one of " + ", ".join(values)

    def parse(raw: str) -> str:
        text = raw.strip()
        for option in values:
            if text == option or (not case_sensitive and text.lower() == option.lower()):
                return option
        raise InvalidValue(rule)

    return Hyperparameter(name, parse, rule, **kw)


def boolean(name: str, **kw: Any) -> Hyperparameter:
    """``true``/``false`` in any case (Python's ``str(True)`` is ``"True"``); returns a bool."""

    def parse(raw: str) -> bool:
        text = raw.strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise InvalidValue("true or false")

    return Hyperparameter(name, parse, "true or false", **kw)


def auto_or(inner: Hyperparameter, **kw: Any) -> Hyperparameter:
    """``auto`` (returned as the string ``"auto"``) or a value of ``inner``."""
    rule = f"auto or {inner.rule}"

    def parse(raw: str) -> Any:
        if raw.strip().lower() == "auto":
            return "auto"
        try:
            return inner.parse(raw)
        except InvalidValue:
            raise InvalidValue(rule) from None

    return Hyperparameter(inner.name, parse, rule, **kw)


def item_list(name: str, item: Callable[[str], Any], item_rule: str, **kw: Any) -> Hyperparameter:
    """A comma-separated list (a JSON list of strings is accepted too), each item checked by ``item``."""
    rule = f"a comma-separated list of {item_rule}"

    def parse(raw: str) -> list[Any]:
        text = raw.strip()
        parts: list[str]
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except ValueError:
                raise InvalidValue(rule) from None
            if not isinstance(decoded, list):
                raise InvalidValue(rule)
            parts = [str(p) for p in decoded]
        else:
            parts = [p.strip() for p in text.split(",")]
        if not parts or any(not p for p in parts):
            raise InvalidValue(rule)
        out = []
        for part in parts:
            try:
                out.append(item(part))
            except InvalidValue as exc:
                raise InvalidValue(f"{part!r}: {exc}") from None
        return out

    return Hyperparameter(name, parse, rule, **kw)


def custom(name: str, parse: Callable[[str], Any], rule: str, **kw: Any) -> Hyperparameter:
    """A hyperparameter with its own parser (which raises :class:`InvalidValue`)."""
    return Hyperparameter(name, parse, rule, **kw)


@dataclass
class Schema:
    """An algorithm's hyperparameters. ``aliases`` maps another accepted name to the canonical one."""

    algorithm: str
    params: list[Hyperparameter]
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name = {p.name: p for p in self.params}

    def names(self) -> list[str]:
        """Every accepted name (canonical names and aliases), sorted."""
        return sorted([*self._by_name, *self.aliases])

    def get(self, name: str) -> Hyperparameter:
        """The hyperparameter called ``name`` (canonical)."""
        return self._by_name[name]

    def _unknown(self, key: str) -> UserError:
        close = difflib.get_close_matches(key, self.names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return UserError(
            f"hyperparameter '{key}' is not a hyperparameter of built-in {self.algorithm}{hint}; "
            "see docs/algorithms.md for the accepted names"
        )

    def validate(self, raw: Mapping[str, str]) -> dict[str, Any]:
        """Typed values of every given hyperparameter plus the defaults of the others (None defaults are
        left out). Raises :class:`UserError` naming the first bad hyperparameter and its rule."""
        values: dict[str, Any] = {}
        given_as: dict[str, str] = {}
        for key in sorted(raw):
            if key.startswith(PLATFORM_PREFIX):
                continue
            name = self.aliases.get(key, key)
            param = self._by_name.get(name)
            if param is None:
                raise self._unknown(key)
            if name in given_as:
                raise UserError(
                    f"hyperparameter '{key}' and '{given_as[name]}' are the same setting; give only one of them"
                )
            given_as[name] = key
            text = raw[key]
            try:
                values[name] = param.parse(text if isinstance(text, str) else str(text))
            except InvalidValue as exc:
                reason = str(exc)
                detail = f"must be {param.rule}" if reason == param.rule else f"{reason}; must be {param.rule}"
                raise UserError(f"hyperparameter '{key}' = {text!r} is invalid: {detail}") from None
        for param in self.params:
            if param.name in values:
                continue
            if param.required:
                raise UserError(
                    f"hyperparameter '{param.name}' is required by built-in {self.algorithm}: {param.rule}; "
                    f"set it, e.g. estimator.set_hyperparameters({param.name}=...)"
                )
            if param.default is not None:
                values[param.name] = param.default
        return values
