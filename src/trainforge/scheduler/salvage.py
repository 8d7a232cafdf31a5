"""Salvage of a lost host's spool: the lines its dead supervisor wrote down but never delivered.

A supervisor appends every line to its spool on the node's disk before sending it
(:mod:`trainforge.runtime.spool`). When it dies (SIGKILL, OOM killer) while the server is away, lines it had
spooled are on disk only. For hosts of the local backend (the same machine as the server) the scheduler reads
those spools before it records the host as lost, so every line the code printed before its supervisor died is
stored, once, before the job's final status. A backend whose hosts run elsewhere (Ray) keeps them on its nodes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from trainforge.errors import TrainforgeError
from trainforge.runtime.spool import SPOOL_DIR, drain
from trainforge.service.metric_extraction import MetricExtractor, definitions_of
from trainforge.store.jobs import JobStore
from trainforge.store.records import JobRecord

log = logging.getLogger("trainforge.scheduler")


def salvage_spools(store: JobStore, job: JobRecord, handle: dict[str, Any], hosts: list[str]) -> int:
    """Store the undelivered lines (with their ``MetricDefinitions`` points) and metric points of ``hosts``'
    spools, under the job's current attempt; return how many lines were handed over (already stored ones are
    skipped by the store's keys). Does nothing for a backend other than ``local``. Never raises: a spool that
    cannot be read is logged and left as it is."""
    if handle.get("backend") != "local":
        return 0
    extractor = MetricExtractor(definitions_of(job.spec))
    total = 0
    for entry in handle.get("hosts", []):
        host, root = str(entry.get("host", "")), entry.get("root")
        if host not in hosts or not isinstance(root, str):
            continue
        directory = Path(root) / SPOOL_DIR
        if not directory.is_dir():
            continue

        def lines(batch: list[dict[str, Any]], host: str = host) -> None:
            metrics = extractor.extract_lines(batch) if extractor else None
            store.append_logs(job.id, host, batch, line_metrics=metrics, attempt=job.attempt)

        def points(batch: list[dict[str, Any]], host: str = host) -> None:
            store.append_metrics(job.id, host, batch, attempt=job.attempt)

        try:
            count = drain(directory, on_lines=lines, on_metrics=points)
        except (OSError, ValueError, KeyError, TypeError, TrainforgeError) as exc:
            log.error("job %s: cannot salvage the spool of %s at %s: %s", job.name, host, directory, exc)
            continue
        if count:
            log.info("job %s: stored %d line(s) that the lost supervisor of %s had spooled", job.name, count, host)
        total += count
    return total
