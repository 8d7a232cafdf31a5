"""Errors of remote functions (SageMaker's names), all part of trainforge's one error tree."""

from __future__ import annotations

from trainforge.errors import TrainforgeError, ValidationError


class RemoteFunctionError(TrainforgeError):
    """A remote function could not run or its job ended without a result (failed, stopped, killed)."""

    code = "RemoteFunctionError"
    http_status = 500


class ServiceError(RemoteFunctionError):
    """The server or the object store could not be used for a remote function."""

    code = "RemoteFunctionServiceError"


class SerializationError(ValidationError):
    """The function or one of its arguments cannot be sent to a job; nothing was created."""

    code = "SerializationError"


class DeserializationError(RemoteFunctionError):
    """A payload could not be read back: unknown serializer, failed integrity check, or missing types."""

    code = "DeserializationError"


class RuntimeEnvironmentError(RemoteFunctionError):
    """The job's runtime cannot run the caller's payloads (Python or serializer version mismatch, pre-exec)."""

    code = "RuntimeEnvironmentError"
