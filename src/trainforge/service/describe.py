"""Render stored jobs in SageMaker's DescribeTrainingJob and ListTrainingJobs shapes (reference §3.3, §3.5)."""

from __future__ import annotations

from typing import Any

from trainforge.service.costs import PriceTable, job_cost
from trainforge.service.masking import mask_record
from trainforge.service.principal import owner_of
from trainforge.spec.metrics import is_system_metric
from trainforge.spec.status import TERMINAL
from trainforge.store.records import JobRecord, MetricRecord

# Spec fields returned by Describe as they were sent.
_ECHO_FIELDS = (
    "HyperParameters",
    "AlgorithmSpecification",
    "RoleArn",
    "InputDataConfig",
    "VpcConfig",
    "StoppingCondition",
    "CheckpointConfig",
    "Environment",
    "RetryStrategy",
    "DebugHookConfig",
    "DebugRuleConfigurations",
    "TensorBoardOutputConfig",
    "ProfilerConfig",
    "ProfilerRuleConfigurations",
    "ExperimentConfig",
    "RemoteDebugConfig",
    "InfraCheckConfig",
    "Tags",
)


def final_metrics(points: list[MetricRecord]) -> list[dict[str, Any]]:
    """``FinalMetricDataList``: the last value of each training metric (at most 40, by name).

    System metrics (``system/...``) are left out: SageMaker lists only the metrics of the job's definitions.
    """
    last: dict[str, MetricRecord] = {}
    for p in points:
        if is_system_metric(p.name):
            continue
        if p.name not in last or p.timestamp >= last[p.name].timestamp:
            last[p.name] = p
    return [{"MetricName": name, "Value": rec.value, "Timestamp": rec.timestamp} for name, rec in sorted(last.items())][
        :40
    ]


def describe(
    job: JobRecord,
    metrics: list[MetricRecord] | None = None,
    *,
    show_secrets: bool = False,
    lineage: dict[str, Any] | None = None,
    prices: PriceTable | None = None,
) -> dict[str, Any]:
    """The DescribeTrainingJob response for ``job``, with ``CreatedBy`` naming its owner and, when its hosts
    reported one, ``Lineage`` (trainforge's own: :func:`trainforge.spec.lineage.job_lineage`).

    ``ModelArtifacts`` names where the model is (or will be) stored; a job that ended Failed or Stopped without
    storing a model (its model directory was empty, or it never ran) has none, as on SageMaker.

    Secret-looking ``Environment`` and ``HyperParameters`` values are ``****`` unless ``show_secrets``.
    """
    spec = job.spec
    out: dict[str, Any] = {"TrainingJobName": job.name, "TrainingJobArn": job.arn}
    if job.model_artifacts:
        out["ModelArtifacts"] = {"S3ModelArtifacts": job.model_artifacts}
    out["TrainingJobStatus"] = job.status.value
    out["SecondaryStatus"] = job.secondary_status.value
    if job.failure_reason:
        out["FailureReason"] = job.failure_reason
    for key in _ECHO_FIELDS:
        if key in spec:
            out[key] = spec[key]
    out["OutputDataConfig"] = {"KmsKeyId": "", **spec["OutputDataConfig"]}
    out["ResourceConfig"] = spec["ResourceConfig"]
    out["StoppingCondition"] = spec.get("StoppingCondition", {"MaxRuntimeInSeconds": 86400})
    out["EnableNetworkIsolation"] = bool(spec.get("EnableNetworkIsolation", False))
    out["EnableInterContainerTrafficEncryption"] = bool(spec.get("EnableInterContainerTrafficEncryption", False))
    out["EnableManagedSpotTraining"] = bool(spec.get("EnableManagedSpotTraining", False))
    out["CreationTime"] = job.creation_time
    if job.training_start_time is not None:
        out["TrainingStartTime"] = job.training_start_time
    if job.training_end_time is not None:
        out["TrainingEndTime"] = job.training_end_time
    out["LastModifiedTime"] = job.last_modified_time
    out["SecondaryStatusTransitions"] = [
        {
            "Status": t.status,
            "StartTime": t.start_time,
            **({"EndTime": t.end_time} if t.end_time is not None else {}),
            "StatusMessage": t.message or "",
            # trainforge's own: the job's last log cursor when this status began, so a reader of a finished (or
            # running) job can print each status after exactly the lines before it (boto3 ignores the key).
            "LogCursor": t.log_cursor,
        }
        for t in job.transitions
    ]
    out["FinalMetricDataList"] = final_metrics(metrics or [])
    if job.secondary_status in TERMINAL and job.training_start_time is not None and job.training_end_time:
        seconds = max(1, round(job.training_end_time - job.training_start_time))
        out["TrainingTimeInSeconds"] = seconds
        out["BillableTimeInSeconds"] = seconds
    if prices is not None and (cost := job_cost(job, prices)) is not None:
        out["Cost"] = cost  # trainforge's own: BillableTimeInSeconds x instances x price (service/costs.py)
    if job.status_message:
        out["StatusMessage"] = job.status_message
    out["ProfilingStatus"] = "Disabled"
    out["CreatedBy"] = {"UserProfileName": owner_of(job)}
    if lineage is not None:
        out["Lineage"] = lineage
    return out if show_secrets else mask_record(out)


def summary(job: JobRecord, prices: PriceTable | None = None) -> dict[str, Any]:
    """One ``TrainingJobSummaries`` entry of ListTrainingJobs; with ``prices``, an ended job's ``Cost`` too."""
    out: dict[str, Any] = {
        "TrainingJobName": job.name,
        "TrainingJobArn": job.arn,
        "CreationTime": job.creation_time,
        "LastModifiedTime": job.last_modified_time,
        "TrainingJobStatus": job.status.value,
        "SecondaryStatus": job.secondary_status.value,
        "InstanceType": job.instance_type,
        "InstanceCount": job.instance_count,
        "CreatedBy": {"UserProfileName": owner_of(job)},
    }
    if job.training_start_time is not None:
        out["TrainingStartTime"] = job.training_start_time
    if job.training_end_time is not None:
        out["TrainingEndTime"] = job.training_end_time
    if prices is not None and (cost := job_cost(job, prices)) is not None:
        out["Cost"] = cost
    return out
