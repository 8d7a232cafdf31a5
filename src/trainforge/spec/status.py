"""The status model of reference §3.4 and its one table of allowed transitions.

A job's state is its ``SecondaryStatus``; the primary ``TrainingJobStatus`` follows from it. A transition
to the same status with a new message is allowed while the job is not terminal (SageMaker lists such
steps, e.g. ``Starting - Launching requested ML instances``). Terminal states never change.
"""

from __future__ import annotations

from enum import StrEnum


class TrainingJobStatus(StrEnum):
    """SageMaker's ``TrainingJobStatus``."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


class SecondaryStatus(StrEnum):
    """SageMaker's ``SecondaryStatus``."""

    STARTING = "Starting"
    PENDING = "Pending"
    DOWNLOADING = "Downloading"
    TRAINING = "Training"
    UPLOADING = "Uploading"
    INTERRUPTED = "Interrupted"
    RESTARTING = "Restarting"
    STOPPING = "Stopping"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"
    MAX_RUNTIME_EXCEEDED = "MaxRuntimeExceeded"
    MAX_WAIT_TIME_EXCEEDED = "MaxWaitTimeExceeded"


S = SecondaryStatus

PRIMARY_OF: dict[SecondaryStatus, TrainingJobStatus] = {
    S.STARTING: TrainingJobStatus.IN_PROGRESS,
    S.PENDING: TrainingJobStatus.IN_PROGRESS,
    S.DOWNLOADING: TrainingJobStatus.IN_PROGRESS,
    S.TRAINING: TrainingJobStatus.IN_PROGRESS,
    S.UPLOADING: TrainingJobStatus.IN_PROGRESS,
    S.INTERRUPTED: TrainingJobStatus.IN_PROGRESS,
    S.RESTARTING: TrainingJobStatus.IN_PROGRESS,
    S.STOPPING: TrainingJobStatus.STOPPING,
    S.COMPLETED: TrainingJobStatus.COMPLETED,
    S.FAILED: TrainingJobStatus.FAILED,
    S.STOPPED: TrainingJobStatus.STOPPED,
    S.MAX_RUNTIME_EXCEEDED: TrainingJobStatus.STOPPED,
    S.MAX_WAIT_TIME_EXCEEDED: TrainingJobStatus.STOPPED,
}

TERMINAL: frozenset[SecondaryStatus] = frozenset(
    {S.COMPLETED, S.FAILED, S.STOPPED, S.MAX_RUNTIME_EXCEEDED, S.MAX_WAIT_TIME_EXCEEDED}
)

_ENDINGS = {S.FAILED, S.STOPPING, S.STOPPED}

# from -> the statuses it may move to (self-transitions are listed explicitly). A launched job whose host is lost
# goes ``Interrupted`` from any running status; a retry goes ``Restarting`` -> (``Pending`` ->) ``Starting``.
ALLOWED: dict[SecondaryStatus, frozenset[SecondaryStatus]] = {
    S.STARTING: frozenset({S.STARTING, S.PENDING, S.DOWNLOADING, S.TRAINING, S.INTERRUPTED, *_ENDINGS}),
    S.PENDING: frozenset({S.PENDING, S.STARTING, S.DOWNLOADING, S.TRAINING, *_ENDINGS}),
    S.DOWNLOADING: frozenset({S.DOWNLOADING, S.TRAINING, S.UPLOADING, S.INTERRUPTED, *_ENDINGS}),
    S.TRAINING: frozenset({S.TRAINING, S.UPLOADING, S.INTERRUPTED, *_ENDINGS}),
    S.UPLOADING: frozenset({S.UPLOADING, S.COMPLETED, S.INTERRUPTED, *_ENDINGS}),
    S.INTERRUPTED: frozenset({S.INTERRUPTED, S.RESTARTING, S.STARTING, *_ENDINGS}),
    S.RESTARTING: frozenset({S.RESTARTING, S.STARTING, S.PENDING, *_ENDINGS}),
    S.STOPPING: frozenset({S.STOPPING, S.STOPPED, S.MAX_RUNTIME_EXCEEDED, S.MAX_WAIT_TIME_EXCEEDED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.STOPPED: frozenset(),
    S.MAX_RUNTIME_EXCEEDED: frozenset(),
    S.MAX_WAIT_TIME_EXCEEDED: frozenset(),
}


def allowed_predecessors(target: SecondaryStatus) -> frozenset[SecondaryStatus]:
    """Every status from which ``target`` may be reached."""
    return frozenset(src for src, dests in ALLOWED.items() if target in dests)


def can_transition(src: SecondaryStatus, dst: SecondaryStatus) -> bool:
    """Whether the table allows ``src`` -> ``dst``."""
    return dst in ALLOWED[src]


def is_terminal(status: SecondaryStatus | str) -> bool:
    """Whether a job in this secondary status can never change again."""
    return SecondaryStatus(status) in TERMINAL
