"""Training metrics from log lines: a job's ``MetricDefinitions`` applied to every line of every host.

Each definition is a name and a regex whose first capture group is the value (reference §4.3). A line is
matched as it was printed (with real TABs) and, when that does not match, as CloudWatch renders it, with each
TAB shown as ``#011`` (reference §4.2, §8.4): regexes written for SageMaker's built-in algorithms, such as
``.*\\[[0-9]+\\].*#011validation-rmse:(\\S+)``, work unchanged, and so do regexes with ``\\t``. A capture ends at
the first ``#011``, where a TAB was (``train-rmse:(\\S+)`` takes ``0.25``, not ``0.25#011validation-rmse:0.3``).
A metric gets at most one value per line (the first match); a capture that is not a finite number is skipped.

Matching is bounded so that a long line cannot stall the server: only the first :data:`MAX_MATCH_CHARS`
characters of a line are matched, and a regex that starts with ``.*`` (and has no ``|``) is anchored at the
start of the line, which finds the same match without trying every start position.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainforge.spec.metrics import metric_value
from trainforge.store.records import JobRecord

log = logging.getLogger(__name__)

AWS_TAB = "#011"
MAX_MATCH_CHARS = 16 * 1024
CACHE_SIZE = 256


@dataclass(frozen=True)
class CompiledMetric:
    """One metric definition, compiled: ``anchored`` means it is matched at the start of a line only."""

    name: str
    pattern: re.Pattern[str]
    anchored: bool

    def value(self, text: str) -> float | None:
        """The metric's value in ``text``: the first capture group as a finite float, else None.

        The capture ends at the first ``#011`` (a TAB in AWS's rendering ends a value): ``train-rmse:(\\S+)``
        takes ``0.25`` from ``[3]#011train-rmse:0.25#011validation-rmse:0.3``, as from the line as printed.
        """
        m = self.pattern.match(text) if self.anchored else self.pattern.search(text)
        if m is None:
            return None
        captured = m.group(1)
        if captured is None:
            return None
        return metric_value(captured.split(AWS_TAB, 1)[0])


def compile_definition(name: str, regex: str) -> CompiledMetric | None:
    """Compile one ``{"Name", "Regex"}``; None (and a warning) when Python cannot compile the regex or it has
    no capture group."""
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        log.warning("metric %r: regex %r does not compile (%s); it is ignored", name, regex, exc)
        return None
    if pattern.groups < 1:
        log.warning("metric %r: regex %r has no capture group; it is ignored", name, regex)
        return None
    anchored = regex.startswith(".*") and "|" not in regex
    return CompiledMetric(name, pattern, anchored)


class MetricExtractor:
    """The compiled ``MetricDefinitions`` of one job."""

    def __init__(self, definitions: Sequence[Mapping[str, Any]]) -> None:
        compiled = (compile_definition(str(d.get("Name", "")), str(d.get("Regex", ""))) for d in definitions)
        self.metrics: tuple[CompiledMetric, ...] = tuple(m for m in compiled if m is not None and m.name)

    def __bool__(self) -> bool:
        return bool(self.metrics)

    def extract(self, message: str, timestamp: float) -> list[dict[str, Any]]:
        """The points ``{name, value, timestamp}`` one line yields: at most one per metric, in definition order."""
        text = message[:MAX_MATCH_CHARS]
        aws = text.replace("\t", AWS_TAB) if "\t" in text else None
        points: list[dict[str, Any]] = []
        for metric in self.metrics:
            value = metric.value(text)
            if value is None and aws is not None:
                value = metric.value(aws)
            if value is not None:
                points.append({"name": metric.name, "value": value, "timestamp": timestamp})
        return points

    def extract_lines(self, lines: Sequence[Mapping[str, Any]]) -> dict[int, list[dict[str, Any]]]:
        """Points by line ``seq`` for a batch of lines ``{seq, timestamp, message}`` (lines without points are
        left out); each point is timestamped with its line's timestamp."""
        out: dict[int, list[dict[str, Any]]] = {}
        for line in lines:
            points = self.extract(str(line["message"]), float(line["timestamp"]))
            if points:
                out[int(line["seq"])] = points
        return out


def definitions_of(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``AlgorithmSpecification.MetricDefinitions`` of a stored CreateTrainingJob request (``[]`` when none)."""
    algorithm = spec.get("AlgorithmSpecification") or {}
    definitions = algorithm.get("MetricDefinitions") or []
    return [d for d in definitions if isinstance(d, Mapping)]


class ExtractorCache:
    """Each job's :class:`MetricExtractor`, compiled once per job and kept for the :data:`CACHE_SIZE` most
    recently used jobs. Thread-safe. A job's definitions never change, so entries never go stale."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, MetricExtractor] = OrderedDict()

    def get(self, job: JobRecord) -> MetricExtractor:
        """The extractor of ``job`` (empty, i.e. false, when the job defines no metrics)."""
        with self._lock:
            found = self._entries.get(job.id)
            if found is not None:
                self._entries.move_to_end(job.id)
                return found
        extractor = MetricExtractor(definitions_of(job.spec))
        with self._lock:
            self._entries[job.id] = extractor
            self._entries.move_to_end(job.id)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return extractor

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
