"""The per-host job root: the ``opt/ml`` tree of reference §1.2 and the config files of §1.3.

A job root ``<root>`` holds ``opt/ml/...`` exactly as a SageMaker container sees ``/opt/ml/...``, plus the
supervisor's own files next to it (``supervisor.json``, ``job.log``, ``venv/``, ``tmp/``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainforge.spec import contract
from trainforge.spec.job import CreateTrainingJobRequest

CONTAINER_OPT_ML = "/opt/ml"


@dataclass(frozen=True)
class JobPaths:
    """Absolute paths of one job root; every ``opt/ml`` path comes from :mod:`trainforge.spec.contract`."""

    root: Path

    @classmethod
    def at(cls, root: Path) -> JobPaths:
        """The paths of the job root ``root`` (made absolute)."""
        return cls(Path(root).resolve())

    @property
    def opt_ml(self) -> Path:
        return self.root / contract.OPT_ML

    @property
    def input_config(self) -> Path:
        return self.root / contract.INPUT_CONFIG_DIR

    @property
    def input_data(self) -> Path:
        return self.root / contract.INPUT_DATA_DIR

    @property
    def code(self) -> Path:
        return self.root / contract.CODE_DIR

    @property
    def model(self) -> Path:
        return self.root / contract.MODEL_DIR

    @property
    def output(self) -> Path:
        return self.root / contract.OUTPUT_DIR

    @property
    def output_data(self) -> Path:
        return self.root / contract.OUTPUT_DATA_DIR

    @property
    def output_intermediate(self) -> Path:
        return self.root / contract.OUTPUT_INTERMEDIATE_DIR

    @property
    def failure_file(self) -> Path:
        return self.root / contract.FAILURE_FILE

    @property
    def success_file(self) -> Path:
        return self.root / contract.SUCCESS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / contract.CHECKPOINTS_DIR

    @property
    def venv(self) -> Path:
        """The per-job virtual environment (created only when the job needs one)."""
        return self.root / "venv"

    @property
    def tmp(self) -> Path:
        """Scratch space of the supervisor (downloaded archives, archives being built)."""
        return self.root / "tmp"

    @property
    def sandbox_tmp(self) -> Path:
        """The sandboxed code's private ``/tmp``."""
        return self.root / "sandbox-tmp"

    @property
    def job_log(self) -> Path:
        """Every line of the job's output, mirrored as it is forwarded."""
        return self.root / "job.log"

    def channel(self, name: str) -> Path:
        """``opt/ml/input/data/<name>``."""
        return self.input_data / name

    def map_container_path(self, value: str) -> str:
        """``/opt/ml`` or ``/opt/ml/...`` rewritten to the same place under this root; other values unchanged."""
        if value == CONTAINER_OPT_ML or value.startswith(CONTAINER_OPT_ML + "/"):
            return str(self.opt_ml) + value[len(CONTAINER_OPT_ML) :]
        return value


def host_groups(spec: CreateTrainingJobRequest, hosts: list[str]) -> list[dict[str, Any]]:
    """The ``instance_groups`` of ``resourceconfig.json``.

    A homogeneous job is one group ``homogeneousCluster`` with every host; with ``InstanceGroups`` the sorted
    hosts are dealt out to the groups in order, ``InstanceCount`` each.
    """
    ordered = sorted(hosts, key=host_sort_key)
    rc = spec.ResourceConfig
    if not rc.InstanceGroups:
        return [
            {
                "instance_group_name": contract.HOMOGENEOUS_GROUP,
                "instance_type": spec.instance_type,
                "hosts": sorted(hosts),
            }
        ]
    groups: list[dict[str, Any]] = []
    start = 0
    for group in rc.InstanceGroups:
        members = ordered[start : start + group.InstanceCount]
        start += group.InstanceCount
        groups.append(
            {
                "instance_group_name": group.InstanceGroupName,
                "instance_type": group.InstanceType,
                "hosts": sorted(members),
            }
        )
    return groups


def host_sort_key(host: str) -> tuple[int, str]:
    """Orders host names by their number (``algo-2`` before ``algo-10``)."""
    prefix, _, number = host.rpartition("-")
    if prefix and number.isdigit():
        return int(number), host
    return 1 << 30, host


def resource_config(spec: CreateTrainingJobRequest, host: str, hosts: list[str]) -> dict[str, Any]:
    """The content of ``resourceconfig.json`` for ``host`` (hosts sorted, group of the current host)."""
    groups = host_groups(spec, hosts)
    current = next((g for g in groups if host in g["hosts"]), groups[0])
    return {
        "current_host": host,
        "current_instance_type": current["instance_type"],
        "current_group_name": current["instance_group_name"],
        "hosts": sorted(hosts),
        "instance_groups": groups,
        "network_interface_name": contract.NETWORK_INTERFACE,
    }


def input_mode(spec: CreateTrainingJobRequest, channel_mode: str | None) -> str:
    """A channel's effective input mode: its own ``InputMode`` or the job's ``TrainingInputMode``."""
    return channel_mode or spec.AlgorithmSpecification.TrainingInputMode


def input_data_config(spec: CreateTrainingJobRequest) -> dict[str, dict[str, Any]]:
    """The content of ``inputdataconfig.json``: per channel ``ContentType`` (if set), ``TrainingInputMode``,
    ``S3DistributionType`` and ``RecordWrapperType``."""
    out: dict[str, dict[str, Any]] = {}
    for channel in spec.InputDataConfig or []:
        entry: dict[str, Any] = {}
        if channel.ContentType is not None:
            entry["ContentType"] = channel.ContentType
        entry["TrainingInputMode"] = input_mode(spec, channel.InputMode)
        source = channel.DataSource.S3DataSource
        entry["S3DistributionType"] = source.S3DataDistributionType if source else "FullyReplicated"
        entry["RecordWrapperType"] = channel.RecordWrapperType or "None"
        if channel.CompressionType is not None:
            entry["CompressionType"] = channel.CompressionType
        out[channel.ChannelName] = entry
    return out


def checkpoint_local_path(spec: CreateTrainingJobRequest, paths: JobPaths) -> Path:
    """Where checkpoints live for this job: ``CheckpointConfig.LocalPath`` mapped under the root."""
    local = spec.CheckpointConfig.LocalPath if spec.CheckpointConfig else None
    if not local:
        return paths.checkpoints
    mapped = paths.map_container_path(local)
    if mapped == local:
        return paths.root / local.lstrip("/")
    return Path(mapped)


def checkpoint_container_path(spec: CreateTrainingJobRequest) -> str:
    """Where the sandboxed code sees its checkpoints: ``CheckpointConfig.LocalPath`` or ``/opt/ml/checkpoints``."""
    local = spec.CheckpointConfig.LocalPath if spec.CheckpointConfig else None
    return local or CONTAINER_OPT_ML + "/checkpoints"


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


def build_tree(
    paths: JobPaths, spec: CreateTrainingJobRequest, host: str, hosts: list[str], *, sandboxed: bool = False
) -> None:
    """Create the ``opt/ml`` tree (one empty directory per channel) and write the config files.

    ``hyperparameters.json`` is the stored ``HyperParameters`` map exactly (``{}`` when there is none);
    ``checkpointconfig.json`` is written only when the job has a ``CheckpointConfig``; its ``LocalPath`` is the
    path the code sees (the container path when ``sandboxed``, else the host path).
    """
    for directory in (
        paths.input_config,
        paths.input_data,
        paths.code,
        paths.model,
        paths.output_data,
        paths.output_intermediate,
        paths.checkpoints,
        paths.tmp,
        *([paths.sandbox_tmp] if sandboxed else []),
    ):
        directory.mkdir(parents=True, exist_ok=True)
    for channel in spec.InputDataConfig or []:
        paths.channel(channel.ChannelName).mkdir(parents=True, exist_ok=True)
    _write_json(paths.root / contract.HYPERPARAMETERS_FILE, dict(spec.HyperParameters or {}))
    _write_json(paths.root / contract.INPUT_DATA_CONFIG_FILE, input_data_config(spec))
    _write_json(paths.root / contract.RESOURCE_CONFIG_FILE, resource_config(spec, host, hosts))
    if spec.CheckpointConfig is not None:
        local = checkpoint_local_path(spec, paths)
        local.mkdir(parents=True, exist_ok=True)
        _write_json(
            paths.root / contract.CHECKPOINT_CONFIG_FILE,
            {
                "LocalPath": checkpoint_container_path(spec) if sandboxed else str(local),
                "S3Uri": spec.CheckpointConfig.S3Uri,
            },
        )
