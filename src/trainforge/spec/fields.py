"""Field rules shared by every request: names, role ARNs, tags, environments, URIs, and turning pydantic's errors
into one :class:`~trainforge.errors.ValidationError` (pure).

The training-job (:mod:`trainforge.spec.job`), endpoint (:mod:`trainforge.spec.endpoints`) and transform-job
(:mod:`trainforge.spec.transforms`) requests all build on these, so one rule reads the same everywhere.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, field_validator

from trainforge.errors import ValidationError

NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
NAME_RULE = (
    "must be 1-63 characters of letters, digits and hyphens, start and end with a letter or digit "
    "(pattern ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$)"
)
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
ROLE_ARN_RULE = (
    "must be an IAM role ARN like arn:aws:iam::000000000000:role/Name (trainforge.get_execution_role() returns one)"
)
ENV_KEY_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TAG_RE = re.compile(r"^[\w\s.:/=+\-@]*$")
S3_PREFIX_RULE = "must be an s3://bucket/prefix URI"
BODY_NOT_OBJECT = "the request body must be a JSON object"

_M = TypeVar("_M", bound=BaseModel)


def check_name(value: str) -> str:
    """``value`` if it is a valid SageMaker resource name (job, model, endpoint...); else ``ValueError``."""
    if not NAME_RE.match(value):
        raise ValueError(NAME_RULE)
    return value


def check_role_arn(value: str) -> str:
    """``value`` if it is an IAM role ARN; else ``ValueError`` showing one."""
    if not ROLE_ARN_RE.match(value):
        raise ValueError(ROLE_ARN_RULE)
    return value


def check_s3_prefix(value: str, pattern: re.Pattern[str]) -> str:
    """``value`` if ``pattern`` (the caller's accepted URI forms) matches it; else ``ValueError``."""
    if not pattern.match(value):
        raise ValueError(S3_PREFIX_RULE)
    return value


def check_environment(
    value: dict[str, str] | None, *, max_entries: int, max_key: int, max_value: int | None
) -> dict[str, str] | None:
    """``value`` if it has at most ``max_entries`` variables, each key a valid name of at most ``max_key``
    characters and (unless ``max_value`` is None) each value at most ``max_value`` characters; else
    ``ValueError`` naming the first bad key."""
    if value is None:
        return value
    if len(value) > max_entries:
        raise ValueError(f"has {len(value)} entries; at most {max_entries} are allowed")
    for key, item in value.items():
        if len(key) > max_key or not ENV_KEY_RE.match(key):
            raise ValueError(f"key {key[:40]!r} must match [a-zA-Z_][a-zA-Z0-9_]* (at most {max_key} characters)")
        if max_value is not None and len(item) > max_value:
            raise ValueError(f"value of {key!r} is longer than {max_value} characters")
    return value


ResourceName = Annotated[StrictStr, AfterValidator(check_name)]
"""A job, model, endpoint config or endpoint name (:func:`check_name`)."""

IamRoleArn = Annotated[StrictStr, Field(min_length=20, max_length=2048), AfterValidator(check_role_arn)]
"""An IAM role ARN (:func:`check_role_arn`)."""

KmsKey = Annotated[StrictStr | None, Field(max_length=2048)]
"""An optional KMS key id, alias or ARN."""


class SpecModel(BaseModel):
    """A request part with SageMaker's field names: unknown fields are refused, names or aliases accepted."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TagSpec(SpecModel):
    """A key/value label."""

    Key: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    Value: Annotated[StrictStr, Field(max_length=256)] = ""

    @field_validator("Key", "Value")
    @classmethod
    def _chars(cls, value: str) -> str:
        if not TAG_RE.match(value):
            raise ValueError("may contain only letters, numbers, spaces and _ . : / = + - @")
        return value


TagList = Annotated[list[TagSpec] | None, Field(max_length=50)]
"""A request's optional ``Tags`` (at most 50)."""


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "literal[")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_error_from_pydantic(exc: pydantic.ValidationError, prefix: str = "") -> ValidationError:
    """One :class:`ValidationError` naming the first failing field and listing all of them in details."""
    problems = []
    for err in exc.errors():
        field = _field_path(tuple(err["loc"]))
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "is not a known field (check its spelling; names are SageMaker's, e.g. 'HyperParameters')"
        problems.append({"field": field or "(body)", "message": msg})
    first = problems[0]
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return ValidationError(
        f"{first['field']}: {first['message']}{more}", field=first["field"], details={"problems": problems}
    )


def parse_body(model: type[_M], body: Any, *, not_object: str = BODY_NOT_OBJECT) -> _M:
    """``body`` validated as ``model``.

    Raises:
        ValidationError: ``body`` is not a JSON object (message ``not_object``), or the first broken field, named
            (``details["problems"]`` lists every one).
    """
    if not isinstance(body, dict):
        raise ValidationError(not_object, field="(body)")
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise validation_error_from_pydantic(exc) from None
