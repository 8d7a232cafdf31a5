"""Training job metrics as pandas DataFrames, as ``sagemaker.analytics`` gives them (reference §4.3, §5.6).

``TrainingJobAnalytics(job_name).dataframe()`` has one row per metric point with the columns ``timestamp``
(seconds since the job's training start, one origin for every metric so they line up), ``metric_name`` and
``value``, metric by
metric in the order asked for, each in time order. SageMaker reads CloudWatch statistics averaged over
``period`` seconds (60 by default); here the points are read from the trainforge server, every point when
``period`` is None and the average of each ``period``-second bucket (counted from the interval's start)
otherwise.

pandas is imported on first use; it comes with ``pip install 'trainforge[sklearn]'``.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from trainforge.errors import ValidationError
from trainforge.session import Session

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

END_MARGIN_S = 60.0
"""How far past ``TrainingEndTime`` (or now) the default interval reaches, as SageMaker's (one minute)."""


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "TrainingJobAnalytics needs pandas, which is not installed: pip install 'trainforge[sklearn]' "
            "(or pip install pandas)"
        ) from None
    return pandas


def epoch_seconds(value: float | int | datetime, field: str) -> float:
    """``value`` as epoch seconds: a number as it is, an aware ``datetime`` exactly, a naive one as UTC
    (CloudWatch's reading of it)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{field}: must be a datetime or epoch seconds (got {value!r})", field=field)
    return float(value)


class AnalyticsMetricsBase(ABC):
    """A DataFrame fetched once and cached; :meth:`export_csv` writes it out."""

    def __init__(self) -> None:
        self._dataframe: pd.DataFrame | None = None

    def export_csv(self, filename: str) -> None:
        """Write :meth:`dataframe` to ``filename`` as CSV (pandas' ``to_csv``, index included, as SageMaker)."""
        self.dataframe().to_csv(filename)

    def dataframe(self, force_refresh: bool = False) -> pd.DataFrame:
        """The metrics as a DataFrame; fetched on the first call (or again with ``force_refresh``)."""
        if force_refresh:
            self.clear_cache()
        if self._dataframe is None:
            self._dataframe = self._fetch_dataframe()
        return self._dataframe

    @abstractmethod
    def _fetch_dataframe(self) -> pd.DataFrame:
        """Read the points and build the DataFrame."""

    def clear_cache(self) -> None:
        """Forget the cached DataFrame; the next :meth:`dataframe` fetches again."""
        self._dataframe = None


class TrainingJobAnalytics(AnalyticsMetricsBase):
    """The metric points of one training job.

    Args:
        training_job_name: The job.
        metric_names: Metrics to fetch; default: the names of the job's ``MetricDefinitions`` (system metrics,
            ``system/...``, can be named explicitly).
        sagemaker_session: Session to use; default ``Session()``.
        start_time: Points before this are left out; default the job's ``CreationTime`` (SageMaker uses
            ``TrainingStartTime``, but points here carry the host's clock, which can run ahead of the server's
            record). A ``datetime`` (naive means UTC) or epoch seconds.
        end_time: Points after this are left out; default ``TrainingEndTime`` (now while it runs) plus a minute.
        period: Seconds per bucket whose points are averaged into one; default None: every point.

    Raises:
        NotFoundError: No job has this name.
    """

    CLOUDWATCH_NAMESPACE = "/aws/sagemaker/TrainingJobs"

    def __init__(
        self,
        training_job_name: str,
        metric_names: Sequence[str] | None = None,
        sagemaker_session: Session | None = None,
        start_time: datetime | float | None = None,
        end_time: datetime | float | None = None,
        period: float | None = None,
    ) -> None:
        if period is not None and (isinstance(period, bool) or not period > 0):
            raise ValidationError(f"period: must be a positive number of seconds (got {period!r})", field="period")
        self._session = sagemaker_session if sagemaker_session is not None else Session()
        self._training_job_name = training_job_name
        self._start_time = None if start_time is None else epoch_seconds(start_time, "start_time")
        self._end_time = None if end_time is None else epoch_seconds(end_time, "end_time")
        self._period = period
        self._metric_names = list(metric_names) if metric_names else self._metric_names_for_training_job()
        super().__init__()
        self.clear_cache()

    @property
    def name(self) -> str:
        """The training job's name."""
        return self._training_job_name

    @property
    def metric_names(self) -> list[str]:
        """The metrics this object fetches."""
        return list(self._metric_names)

    def __repr__(self) -> str:
        return f"<trainforge.TrainingJobAnalytics for {self.name}>"

    def clear_cache(self) -> None:
        """Forget the cached DataFrame and re-read the job's time interval (it grows while the job runs)."""
        super().clear_cache()
        self._data: dict[str, list[Any]] = defaultdict(list)
        self._time_interval = self._determine_timeinterval()

    def _describe(self) -> dict[str, Any]:
        result: dict[str, Any] = self._session.client.describe_training_job(self._training_job_name)
        return result

    def _determine_timeinterval(self) -> dict[str, float]:
        description = self._describe()
        start = self._start_time
        if start is None:
            start = float(description["CreationTime"])
        end = self._end_time
        if end is None:
            end = float(description.get("TrainingEndTime") or time.time()) + END_MARGIN_S
        return {"start_time": start, "end_time": end}

    def _metric_names_for_training_job(self) -> list[str]:
        algorithm = self._describe().get("AlgorithmSpecification") or {}
        return [str(d["Name"]) for d in algorithm.get("MetricDefinitions") or []]

    def _fetch_dataframe(self) -> pd.DataFrame:
        pandas = _pandas()
        by_name: dict[str, list[tuple[float, float]]] = defaultdict(list)
        if self._metric_names:
            reply = self._session.client.metrics(
                self._training_job_name,
                names=self._metric_names,
                start_time=self._time_interval["start_time"],
                end_time=self._time_interval["end_time"],
            )
            for point in reply.get("points", []):
                by_name[str(point["name"])].append((float(point["timestamp"]), float(point["value"])))
        if self._period is not None:
            by_name = {name: self._averaged(points, self._period) for name, points in by_name.items() if points}
        origin = self._origin(by_name)
        for metric_name in self._metric_names:
            self._fetch_metric(metric_name, by_name.get(metric_name, []), origin)
        return pandas.DataFrame(
            {key: self._data[key] for key in ("timestamp", "metric_name", "value")},
            columns=["timestamp", "metric_name", "value"],
        )

    def _origin(self, by_name: dict[str, list[tuple[float, float]]]) -> float:
        """Time zero of every metric: the job's ``TrainingStartTime`` (its ``CreationTime`` before it trains), or
        the earliest point (or bucket) if one lies before it, e.g. by a host's clock, so no timestamp is negative."""
        description = self._describe()
        start = description.get("TrainingStartTime") or description.get("CreationTime")
        times = [t for points in by_name.values() for t, _ in points]
        candidates = ([float(start)] if start is not None else []) + ([min(times)] if times else [])
        return min(candidates) if candidates else 0.0

    def _fetch_metric(self, metric_name: str, points: list[tuple[float, float]], origin: float) -> None:
        if not points:
            logger.warning("Warning: No metrics called %s found", metric_name)
            return
        for t, value in sorted(points, key=lambda p: p[0]):
            self._add_single_metric(t - origin, metric_name, value)

    def _averaged(self, points: list[tuple[float, float]], period: float) -> list[tuple[float, float]]:
        """One point per ``period``-second bucket from the interval's start: its start time and mean value."""
        start = self._time_interval["start_time"]
        buckets: dict[int, list[float]] = defaultdict(list)
        for t, value in points:
            buckets[math.floor((t - start) / period)].append(value)
        return [(start + k * period, sum(vs) / len(vs)) for k, vs in sorted(buckets.items())]

    def _add_single_metric(self, timestamp: float, metric_name: str, value: float) -> None:
        self._data["timestamp"].append(timestamp)
        self._data["metric_name"].append(metric_name)
        self._data["value"].append(value)
