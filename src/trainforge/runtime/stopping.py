"""Why and when a running job must stop: one latch shared by every supervisor thread."""

from __future__ import annotations

import threading
import time
from enum import StrEnum

from trainforge.errors import TrainforgeError


class StopReason(StrEnum):
    """Why a job is being stopped."""

    USER = "user"
    """StopTrainingJob (the server said ``stop_requested``) or SIGTERM from the backend."""
    MAX_RUNTIME = "max_runtime"
    """``StoppingCondition.MaxRuntimeInSeconds`` elapsed."""
    SERVER = "server"
    """The server says the job is already over (terminal, or deleted): nothing more can be reported."""


class StopRequested(TrainforgeError):
    """Raised at a checkpoint of the run sequence when a stop has been requested."""

    code = "StopRequested"
    http_status = 409

    def __init__(self, reason: StopReason) -> None:
        super().__init__(f"stop requested ({reason})")
        self.reason = reason


class StopSignal:
    """A latch: the first :meth:`request` wins and its reason never changes; safe from any thread.

    Signal handlers may call :meth:`request` (it only sets fields and an ``Event``).
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason: StopReason | None = None
        # Reentrant: a signal handler may run on the main thread while it holds the lock.
        self._lock = threading.RLock()
        self._deadline: float | None = None

    def request(self, reason: StopReason) -> bool:
        """Ask for a stop; return True if this call was the first."""
        if self._event.is_set():
            return False
        with self._lock:
            if self._reason is not None:
                return False
            self._reason = reason
        self._event.set()
        return True

    @property
    def reason(self) -> StopReason | None:
        """The reason of the first request, or None while nobody asked."""
        self._poll_deadline()
        return self._reason

    def is_set(self) -> bool:
        """Whether a stop has been requested (including a passed deadline)."""
        self._poll_deadline()
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`StopRequested` if a stop has been requested."""
        reason = self.reason
        if reason is not None:
            raise StopRequested(reason)

    def set_deadline(self, seconds_from_now: float) -> None:
        """Request a ``MAX_RUNTIME`` stop once ``seconds_from_now`` seconds have passed.

        The deadline is checked whenever the signal is read or waited on, so no timer thread is needed.
        """
        self._deadline = time.monotonic() + seconds_from_now

    def remaining(self) -> float | None:
        """Seconds until the deadline (0 when passed), or None without one."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (less if the deadline comes first); return :meth:`is_set`."""
        remaining = self.remaining()
        if remaining is not None:
            timeout = min(timeout, remaining)
        self._event.wait(max(0.0, timeout))
        return self.is_set()

    def _poll_deadline(self) -> None:
        if self._deadline is not None and not self._event.is_set() and time.monotonic() >= self._deadline:
            self.request(StopReason.MAX_RUNTIME)
