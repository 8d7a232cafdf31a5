"""Errors a request can end with, each carrying the HTTP status it is answered with.

A user handler may raise any exception carrying an integer ``status_code`` (the inference toolkit's
``BaseInferenceToolkitError`` and its subclasses do): the request is answered with that status. Any other
exception is a 500 whose body is ``"<message>\\n<traceback>"``, as the toolkit answers.
"""

from __future__ import annotations


class InferenceError(Exception):
    """An error answered with ``status_code`` and ``message`` (no traceback: the message says it all)."""

    def __init__(self, status_code: int, message: str, phrase: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.phrase = phrase or message.split("\n", 1)[0][:100]


class UnsupportedContentType(InferenceError):
    """415: a request (or answer) content type no decoder (encoder) handles."""

    def __init__(self, content_type: str | None, supported: list[str], *, what: str = "content type") -> None:
        shown = content_type if content_type else "(none given)"
        super().__init__(
            415,
            f"Unsupported {what} {shown}; supported: {', '.join(supported)}. Send one of those, or define "
            "input_fn/output_fn in the inference script to handle it.",
        )
        self.content_type = content_type
        self.supported = list(supported)


class PayloadTooLarge(InferenceError):
    """413: a request body over ``SAGEMAKER_MAX_PAYLOAD_IN_MB``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            413,
            f"Request payload of {size} bytes is over the limit of {limit} bytes (SAGEMAKER_MAX_PAYLOAD_IN_MB); "
            "send smaller requests",
        )


class HandlerConfigError(Exception):
    """The inference script's handlers cannot be used together (e.g. ``transform_fn`` beside ``input_fn``), or a
    required one is missing; raised when the server starts, so the model never reports healthy."""


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (an integer ``status_code`` between 400 and 599), else None."""
    code = getattr(exc, "status_code", None)
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    return None
