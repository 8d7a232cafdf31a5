"""Job names from a base name and a timestamp (reference §2.4)."""

from __future__ import annotations

import re
import threading
import time

_TS_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{3}$|-\d{6}-\d{4}$")


def timestamp(now: float | None = None) -> str:
    """``YYYY-MM-DD-HH-MM-SS-mmm`` in UTC, as SageMaker's ``sagemaker_timestamp``."""
    t = time.time() if now is None else now
    seconds, ms = divmod(round(t * 1000), 1000)
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(seconds)) + f"-{ms:03d}"


_last_ms = 0
_names_lock = threading.Lock()


def _unique_now() -> float:
    """The time now, at least one millisecond after the previous call in this process, so two names made in the
    same millisecond (``RemoteExecutor`` submitting from several threads, a loop of estimators) still differ."""
    global _last_ms
    with _names_lock:
        _last_ms = max(int(time.time() * 1000), _last_ms + 1)
        return _last_ms / 1000


def name_from_base(base: str, now: float | None = None) -> str:
    """``base[:63-len(ts)-1] + "-" + ts``: a valid job name for a base name, never the same twice in a process
    (unless ``now`` is given)."""
    ts = timestamp(_unique_now() if now is None else now)
    trimmed = base[: 63 - len(ts) - 1].rstrip("-") or "job"
    return f"{trimmed}-{ts}"


def base_from_name(name: str) -> str:
    """The base a job name was made from (its timestamp suffix removed)."""
    return _TS_SUFFIX.sub("", name)


def base_name_from_image(image: str) -> str:
    """The repository part of an image URI: ``acct.dkr.ecr.../sagemaker-xgboost:1.7-1`` -> ``sagemaker-xgboost``."""
    repo = image.rsplit("/", 1)[-1]
    repo = repo.split("@", 1)[0].split(":", 1)[0]
    cleaned = re.sub(r"[^a-zA-Z0-9-]", "-", repo).strip("-")
    return cleaned or "trainforge"
