"""Checkpoints (reference §7.2), kept in step with ``CheckpointConfig.S3Uri`` the way SageMaker does it.

- Before the code starts, every object under ``S3Uri`` is copied into the local checkpoint directory
  (:func:`restore`); objects added to the store later are never pulled.
- While the code runs, :class:`CheckpointSync` polls the directory every :data:`POLL_SECONDS` from a thread of
  the supervisor (never in the code's way): a new or changed file is uploaded once its size and modification
  time have stayed the same over one poll (so a file being written is not shipped half-way; a file that keeps
  changing is uploaded again each time it settles), and a file removed locally is deleted from the store.
- At the end (completed, failed, stopped, and when the server ended the job) a final pass uploads every file
  that differs from what was stored, settled or not, and propagates deletions.

Every store call goes through the job's own store (role-scoped, encrypting at rest under the job's key). A
failed upload during training is said once in the job log and retried on the next poll; it never stops the job.
Only regular files count (symbolic links are skipped, as for artifacts); each file is stored whole, so a reader
of the store sees the previous or the new version of a file, never a part.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainforge.errors import StorageError, TrainforgeError
from trainforge.storage import ObjectStore, parse_s3_uri, s3_join

POLL_SECONDS = 1.0
"""How often the directory is scanned while the code runs; a file is uploaded once unchanged over one poll."""

Stamp = tuple[int, int]
"""A file's ``(size, mtime_ns)``: a different stamp means a different file."""

Say = Callable[[str, str], None]
"""Where log lines go: ``say(message, stream)``."""


def _prefix(s3_uri: str) -> str:
    return s3_uri.rstrip("/") + "/"


def restore(store: ObjectStore, s3_uri: str, local: Path) -> int:
    """Copy every object under ``s3_uri`` to ``local`` (relative paths kept); returns how many."""
    prefix = _prefix(s3_uri)
    key_prefix = parse_s3_uri(prefix, field="CheckpointConfig.S3Uri").key
    count = 0
    for obj in store.list(prefix):
        relative = obj.key[len(key_prefix) :]
        if relative and not relative.endswith("/"):
            store.download_file(obj.uri, local / relative)
            count += 1
    return count


def scan(local: Path) -> dict[str, Stamp]:
    """Every regular file under ``local`` (relative POSIX path -> stamp); a file that vanishes meanwhile is left
    out, a missing directory gives nothing."""
    found: dict[str, Stamp] = {}
    if not local.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(local):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if not path.is_symlink() and path.is_file():
                found[path.relative_to(local).as_posix()] = (st.st_size, st.st_mtime_ns)
    return found


@dataclass
class SyncCounts:
    """What one pass (or the whole sync so far) did."""

    uploaded: int = 0
    deleted: int = 0
    failed: int = 0

    def add(self, other: SyncCounts) -> None:
        """Add ``other``'s counts to these."""
        self.uploaded += other.uploaded
        self.deleted += other.deleted
        self.failed += other.failed


class CheckpointSync:
    """Keeps ``<s3_uri>/<relative path>`` equal to the files under ``local`` while a job runs (see module doc).

    Create it after :func:`restore`: the files present then are taken as stored, unless ``stored`` says what
    is (``{}``: nothing). :meth:`start` it when the code starts and :meth:`finish` it when the code has ended.
    Thread-safe: one pass runs at a time.
    """

    def __init__(
        self,
        store: ObjectStore,
        local: Path,
        s3_uri: str,
        *,
        say: Say,
        poll_seconds: float = POLL_SECONDS,
        stored: dict[str, Stamp] | None = None,
    ) -> None:
        self.store = store
        self.local = local
        self.s3_uri = s3_uri.rstrip("/")
        self._say = say
        self._poll = poll_seconds
        # What the store holds, as the local file was when it was stored.
        self._stored: dict[str, Stamp] = scan(local) if stored is None else dict(stored)
        self._seen: dict[str, Stamp] = dict(self._stored)  # the stamps of the previous poll
        self._errors: dict[str, str] = {}  # relative path -> the last error said about it
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished = False
        self.totals = SyncCounts()

    @property
    def running(self) -> bool:
        """Whether the background thread is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """Whether :meth:`finish` has run."""
        return self._finished

    def uri(self, relative: str) -> str:
        """The object a local file is stored at."""
        return s3_join(self.s3_uri, relative)

    def start(self) -> None:
        """Start polling in a daemon thread (at most once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="trainforge-checkpoints", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self._poll):
            try:
                self.sync_once(final=False)
            except Exception as exc:  # never let the thread die: say it and try again at the next poll
                self._report("*", f"checkpoint sync error: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        """Stop the thread (waiting for a pass in progress); no final pass."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def finish(self) -> SyncCounts:
        """Stop the thread, then upload every file that differs from the store and delete what was removed.

        Returns the totals of the whole sync. Raises the first store error of the final pass (after trying every
        file), so a job that completes with unstored checkpoints can fail.
        """
        self.stop()
        self._finished = True
        first: list[TrainforgeError] = []
        self.sync_once(final=True, errors=first)
        if first:
            raise first[0]
        return self.totals

    def sync_once(self, *, final: bool, errors: list[TrainforgeError] | None = None) -> SyncCounts:
        """One pass: upload new and changed files (settled ones only unless ``final``) and delete the objects of
        removed files. Store errors are said in the log (once per file and message) and appended to ``errors``."""
        with self._lock:
            counts = SyncCounts()
            current = scan(self.local)
            for relative in sorted(set(self._stored) - set(current)):
                if self._apply(relative, None, errors):
                    counts.deleted += 1
                else:
                    counts.failed += 1
            for relative, stamp in sorted(current.items()):
                if self._stored.get(relative) == stamp:
                    continue
                if not final and self._seen.get(relative) != stamp:
                    continue  # changed since the previous poll: still being written, perhaps
                if self._apply(relative, stamp, errors):
                    counts.uploaded += 1
                else:
                    counts.failed += 1
            self._seen = current
            self.totals.add(counts)
            return counts

    def _apply(self, relative: str, stamp: Stamp | None, errors: list[TrainforgeError] | None) -> bool:
        """Store (``stamp`` given) or delete one file's object; False when the store refused."""
        uri = self.uri(relative)
        try:
            if stamp is None:
                self.store.delete(uri)
                del self._stored[relative]
            else:
                self.store.put_file(uri, self.local / relative)
                self._stored[relative] = stamp  # as scanned before the put: a later change differs from it
        except (TrainforgeError, OSError) as exc:
            if stamp is not None and not (self.local / relative).is_file():
                return False  # removed between the scan and the put: the next pass deletes its object if stored
            error = exc if isinstance(exc, TrainforgeError) else StorageError(f"could not store {uri}: {exc}")
            if errors is not None:
                errors.append(error)
            message = error.message
            self._report(relative, f"cannot {'delete' if stamp is None else 'store'} checkpoint {uri}: {message}")
            return False
        if self._errors.pop(relative, None) is not None:
            self._say(f"Checkpoints: stored {uri} after an earlier error", "stdout")
        return True

    def _report(self, relative: str, message: str) -> None:
        if self._errors.get(relative) == message:
            return
        self._errors[relative] = message
        self._say(f"Checkpoints: {message} (retried at the next sync)", "stderr")


def save(store: ObjectStore, local: Path, s3_uri: str) -> int:
    """Store every file under ``local`` at ``<s3_uri>/<relative path>`` once (no deletions); returns how many."""
    sync = CheckpointSync(store, local, s3_uri, say=lambda message, stream: None, stored={})
    return sync.finish().uploaded
