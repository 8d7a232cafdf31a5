"""Run local Python functions as training jobs: ``@remote`` and ``RemoteExecutor`` (SageMaker's shapes)."""

from trainforge.remote_function.checkpoint_location import CheckpointLocation
from trainforge.remote_function.client import Future, RemoteExecutor, get_future, list_futures, remote
from trainforge.remote_function.errors import (
    DeserializationError,
    RemoteFunctionError,
    RuntimeEnvironmentError,
    SerializationError,
    ServiceError,
)
from trainforge.remote_function.workspace import CustomFileFilter

__all__ = [
    "CheckpointLocation",
    "CustomFileFilter",
    "DeserializationError",
    "Future",
    "RemoteExecutor",
    "RemoteFunctionError",
    "RuntimeEnvironmentError",
    "SerializationError",
    "ServiceError",
    "get_future",
    "list_futures",
    "remote",
]
