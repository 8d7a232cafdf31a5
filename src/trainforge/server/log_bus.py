"""Wake-ups for log followers: "something new was stored for this name", within one server process.

The agent routes :meth:`LogBus.publish` a job's name after they stored its lines or a status report; a follow
stream holds a :meth:`LogBus.subscribe` subscription and waits on it between two reads of the store instead of
polling. A wake-up carries no data: the follower reads the store, which stays the only source of truth. Lines
stored by another server process sharing the database publish nothing here, so followers also wake on a
timeout of their choosing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class Subscription:
    """One follower's wake-up flag for one name; made by :meth:`LogBus.subscribe`, used on its event loop.

    The follower calls :meth:`clear` before it reads the store and :meth:`wait` after: a publish that happens
    anywhere in between is never missed, so it never sleeps past a line that was stored.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def clear(self) -> None:
        """Forget earlier wake-ups (call it before reading the store)."""
        self._event.clear()

    async def wait(self, timeout: float) -> bool:
        """Wait until a publish since the last :meth:`clear`, or ``timeout`` seconds; return whether woken."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def notify(self) -> None:
        """Set the flag; callable from any thread (it is set on the subscription's own loop)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._event.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._event.set)


class LogBus:
    """Per-name subscriptions of followers; :meth:`publish` is safe from any thread or event loop.

    Only names with a follower take memory: a subscription is dropped when its ``with`` block ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Subscription]] = {}

    @contextlib.contextmanager
    def subscribe(self, name: str) -> Iterator[Subscription]:
        """Follow ``name`` for the ``with`` block; must be entered on the event loop that will wait on it."""
        sub = Subscription(asyncio.get_running_loop())
        with self._lock:
            self._subscribers.setdefault(name, set()).add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                subs = self._subscribers.get(name)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._subscribers[name]

    def publish(self, name: str) -> None:
        """Wake every follower of ``name`` (none: nothing happens)."""
        with self._lock:
            subs = list(self._subscribers.get(name, ()))
        for sub in subs:
            sub.notify()

    def followers(self, name: str) -> int:
        """How many subscriptions ``name`` has now."""
        with self._lock:
            return len(self._subscribers.get(name, ()))
