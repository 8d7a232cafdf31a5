"""How the statuses of a job's hosts make the job's status (reference §1.4, §1.8, §7.1).

Every host's supervisor reports its own secondary status. The job is as far along as its slowest host: it is
``Training`` once every host runs its code and ``Completed`` once every host completed. One failing host fails
the job at once (its FailureReason names the host); a stop ends the job once every host has ended. A single-host
job's status is its host's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from trainforge.spec.contract import host_name
from trainforge.spec.status import TERMINAL, SecondaryStatus

S = SecondaryStatus

# Progress of a host that is neither failing nor stopping.
_PROGRESS: dict[SecondaryStatus, int] = {
    S.STARTING: 0,
    S.PENDING: 0,
    S.DOWNLOADING: 1,
    S.TRAINING: 2,
    S.UPLOADING: 3,
    S.COMPLETED: 4,
}
_STOP_ENDINGS = frozenset({S.STOPPED, S.MAX_RUNTIME_EXCEEDED, S.MAX_WAIT_TIME_EXCEEDED})


@dataclass(frozen=True)
class JobMove:
    """The job-level status a host report leads to (``status`` None: the report changes nothing for the job)."""

    status: SecondaryStatus | None
    message: str | None = None
    failure_reason: str | None = None


def job_hosts(count: int) -> list[str]:
    """The host names of a job with ``count`` hosts: ``algo-1`` .. ``algo-<count>``."""
    return [host_name(i) for i in range(max(1, count))]


def name_host(reason: str, host: str) -> str:
    """A FailureReason that names the host it came from: ``AlgorithmError: host algo-2: <rest>``."""
    prefix, sep, rest = reason.partition(": ")
    if not sep or " " in prefix:
        return f"host {host}: {reason}"
    return f"{prefix}: host {host}: {rest}"


def job_move(
    *,
    host: str,
    reported: SecondaryStatus,
    message: str | None,
    failure_reason: str | None,
    hosts: Mapping[str, SecondaryStatus],
    count: int,
    current: SecondaryStatus,
) -> JobMove:
    """What the job's status becomes after ``host`` reported ``reported``.

    ``hosts`` holds every reporting host's own status, this report included; hosts that never reported count as
    ``Starting``. ``current`` is the job's status now.
    """
    if count <= 1:
        return JobMove(reported, message, failure_reason)
    if reported is S.FAILED:
        return JobMove(S.FAILED, message, name_host(failure_reason or "InternalServerError: failed", host))
    if reported is S.STOPPING:
        return JobMove(None if current is S.STOPPING else S.STOPPING, message)
    states = [hosts.get(h, S.STARTING) for h in job_hosts(count)]
    if reported in _STOP_ENDINGS:
        if all(s in TERMINAL for s in states):
            return JobMove(reported, message)
        return JobMove(None if current is S.STOPPING else S.STOPPING, message)
    if reported not in _PROGRESS or current not in _PROGRESS:
        return JobMove(None)
    slowest = min(_PROGRESS.get(s, 0) for s in states)
    target = next(s for s, rank in _PROGRESS.items() if rank == slowest and s is not S.PENDING)
    if _PROGRESS[reported] != slowest:
        # A host ahead of the slowest one: the job stays where the slowest host is (it may move up to it).
        return JobMove(target if _PROGRESS[current] < slowest else None, None if target is reported else message)
    if target is S.STARTING and current is not S.STARTING:
        return JobMove(None)
    return JobMove(target, message)
