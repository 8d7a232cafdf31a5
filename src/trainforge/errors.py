"""The one exception tree of trainforge.

Every error that crosses a module boundary is a ``TrainforgeError``. Each class carries the HTTP status it
maps to and a stable ``code`` used on the wire: ``{"error": {"code", "message", "details"}}``. The client
maps a code back to its class with :func:`error_from_body`, so a caller catches the same class whether the
error was raised in-process or on the server.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TrainforgeError(Exception):
    """Base of every trainforge error."""

    code: ClassVar[str] = "InternalError"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_body(self) -> dict[str, Any]:
        """Return the JSON error body of DESIGN §6."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationError(TrainforgeError):
    """A request or a value broke a rule; ``details["field"]`` names the field when there is one."""

    code = "ValidationException"
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None) -> None:
        merged = dict(details or {})
        if field is not None:
            merged.setdefault("field", field)
        super().__init__(message, details=merged)
        self.field = field


class NotFoundError(TrainforgeError):
    """The named resource does not exist."""

    code = "ResourceNotFound"
    http_status = 404


class ConflictError(TrainforgeError):
    """The request conflicts with current state: a taken name, or an illegal status transition."""

    code = "ResourceInUse"
    http_status = 409


class AuthError(TrainforgeError):
    """Missing, wrong or insufficient credentials."""

    code = "AccessDenied"
    http_status = 401


class PermissionDeniedError(TrainforgeError):
    """Valid credentials, but the user may not do this (e.g. an admin-only action, a role not granted)."""

    code = "PermissionDenied"
    http_status = 403


class CapacityError(TrainforgeError):
    """The requested resources can never be provided by this deployment."""

    code = "CapacityError"
    http_status = 400


class StorageError(TrainforgeError):
    """The object store could not read or write an object."""

    code = "StorageError"
    http_status = 500


class BackendError(TrainforgeError):
    """A backend could not launch, poll or cancel a job."""

    code = "BackendError"
    http_status = 500


class ServerUnavailableError(TrainforgeError):
    """The client could not reach the trainforge server."""

    code = "ServerUnavailable"
    http_status = 503


class UnexpectedStatusError(TrainforgeError):
    """A job ended in a status the caller did not want (``fit()``/``wait()`` on a Failed job)."""

    code = "UnexpectedStatus"
    http_status = 500

    def __init__(
        self,
        message: str,
        *,
        job_name: str = "",
        status: str = "",
        failure_reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        merged = {"job_name": job_name, "status": status, "failure_reason": failure_reason, **(details or {})}
        super().__init__(message, details=merged)
        self.job_name = job_name
        self.status = status
        self.failure_reason = failure_reason


class ModelError(TrainforgeError):
    """An endpoint's model answered an invocation with an error (SageMaker's ``ModelError``).

    ``details`` carries ``OriginalStatusCode`` (what the serving process answered) and ``OriginalMessage``.
    """

    code = "ModelError"
    http_status = 424


_BY_CODE: dict[str, type[TrainforgeError]] = {
    cls.code: cls
    for cls in (
        TrainforgeError,
        ValidationError,
        NotFoundError,
        ConflictError,
        AuthError,
        PermissionDeniedError,
        CapacityError,
        StorageError,
        BackendError,
        ServerUnavailableError,
        UnexpectedStatusError,
        ModelError,
    )
}


def error_from_body(body: Any, http_status: int) -> TrainforgeError:
    """Rebuild the error a server sent; unknown shapes become a plain ``TrainforgeError``."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        cls = _BY_CODE.get(str(err.get("code")), TrainforgeError)
        message = str(err.get("message", ""))
        details = err.get("details") or {}
        if cls is ValidationError:
            return ValidationError(message, field=details.get("field"), details=details)
        if cls is UnexpectedStatusError:
            return UnexpectedStatusError(message, details=details)
        return cls(message, details=details)
    return TrainforgeError(f"server answered HTTP {http_status}: {str(body)[:500]}")
