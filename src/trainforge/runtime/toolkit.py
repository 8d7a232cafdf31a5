"""The SageMaker training toolkit's rules as pure functions (reference §1.4-§1.6).

Given the job's config files (already parsed) and where the ``/opt/ml`` tree lives, this module computes
exactly what ``sagemaker-training`` would: the training environment (``SM_TRAINING_ENV``), every ``SM_*``
variable, the command-line arguments made from hyperparameters, and the command for an entry point.
Nothing here touches the filesystem except :func:`entry_point_type`, which looks for ``setup.py``.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from trainforge.spec import contract

SAGEMAKER_PREFIX = "sagemaker_"
PROGRAM_HP = "sagemaker_program"
SUBMIT_DIR_HP = "sagemaker_submit_directory"
LOG_LEVEL_HP = "sagemaker_container_log_level"
REGION_HP = "sagemaker_region"
# Framework parameters that put the current instance group into ``distribution_instance_groups``.
DISTRIBUTION_FLAGS = (
    "sagemaker_mpi_enabled",
    "sagemaker_parameter_server_enabled",
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    "sagemaker_torch_distributed_enabled",
)


def decode_value(raw: str) -> Any:
    """One hyperparameter value as the toolkit sees it: JSON-decoded, or the raw string if that fails.

    Both encodings of reference §2.3 work: ``"10"`` -> 10, ``"\\"abc\\""`` -> ``"abc"``, ``"abc"`` -> ``"abc"``,
    ``"true"`` -> True but ``"True"`` stays the string ``"True"``.
    """
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return raw


def decode_hyperparameters(raw: Mapping[str, str] | None) -> dict[str, Any]:
    """Every value of a stored ``HyperParameters`` map decoded with :func:`decode_value`."""
    return {key: decode_value(value) for key, value in (raw or {}).items()}


def is_sagemaker_hyperparameter(key: str) -> bool:
    """Whether the toolkit keeps ``key`` for itself (reserved list or ``sagemaker_`` prefix)."""
    return key in contract.SAGEMAKER_HYPERPARAMETERS or key.startswith(SAGEMAKER_PREFIX)


def split_hyperparameters(decoded: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split decoded hyperparameters into ``(user, sagemaker, additional_framework_parameters)``.

    ``user`` ones become script arguments and ``SM_HPS``; ``sagemaker`` ones are every reserved key;
    ``additional_framework_parameters`` are the ``sagemaker_*`` keys outside the reserved list
    (``SM_FRAMEWORK_PARAMS``, e.g. ``sagemaker_mpi_enabled``).
    """
    user: dict[str, Any] = {}
    reserved: dict[str, Any] = {}
    for key, value in decoded.items():
        (reserved if is_sagemaker_hyperparameter(key) else user)[key] = value
    extra = {k: v for k, v in reserved.items() if k not in contract.SAGEMAKER_HYPERPARAMETERS}
    return user, reserved, extra


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def to_cmd_args(user_hyperparameters: Mapping[str, Any]) -> list[str]:
    """Script arguments from decoded user hyperparameters (reference §1.6).

    Keys sorted; ``--key`` (``-k`` for one-character keys); dict values become ``k1=v1,k2=v2`` with sorted
    keys; None becomes ``""``; everything else ``str(value)`` (True -> ``"True"``, lists -> ``"[1, 2]"``).
    """
    args: list[str] = []
    for key in sorted(user_hyperparameters):
        name = _as_text(key)
        if name:
            args.append(f"--{name}" if len(name) > 1 else f"-{name}")
        else:
            args.append("")
        value = user_hyperparameters[key]
        if isinstance(value, Mapping):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append(_as_text(value))
    return args


def env_value(value: Any) -> str:
    """An environment variable's value: strings as they are, None as ``""``, anything else compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def module_name(entry_point: str | None) -> str | None:
    """The toolkit's ``module_name``: the program without a trailing ``.py``."""
    if entry_point is None:
        return None
    return entry_point[:-3] if entry_point.endswith(".py") else entry_point


def training_env(
    *,
    job_name: str,
    base_dir: Path,
    hyperparameters: Mapping[str, str] | None,
    input_data_config: Mapping[str, Any],
    resource_config: Mapping[str, Any],
    num_cpus: int,
    num_gpus: int,
    framework_module: str | None = None,
) -> dict[str, Any]:
    """The toolkit's training environment: the object serialised into ``SM_TRAINING_ENV``.

    ``base_dir`` is the absolute ``opt/ml`` directory; every path in the result is under it.
    ``hyperparameters`` is the stored (string) map; ``input_data_config`` and ``resource_config`` are the
    contents of ``inputdataconfig.json`` and ``resourceconfig.json``.
    """
    base = Path(base_dir)
    decoded = decode_hyperparameters(hyperparameters)
    user_hps, reserved, extra = split_hyperparameters(decoded)
    program = reserved.get(PROGRAM_HP)
    program_text = None if program is None else str(program)
    hosts = sorted(resource_config.get("hosts", []))
    current_host = str(resource_config.get("current_host", hosts[0] if hosts else "algo-1"))
    group = str(resource_config.get("current_group_name", contract.HOMOGENEOUS_GROUP))
    instance_type = str(resource_config.get("current_instance_type", "local"))
    groups = list(resource_config.get("instance_groups") or [])
    groups_dict = {g["instance_group_name"]: g for g in groups}
    group_hosts = list(groups_dict.get(group, {}).get("hosts", []))
    distribution_groups = extra.get("sagemaker_distribution_instance_groups")
    if distribution_groups is None:
        distribution_groups = [group] if any(extra.get(flag) for flag in DISTRIBUTION_FLAGS) else []
    if groups:
        distribution_hosts = [h for g in groups if g["instance_group_name"] in distribution_groups for h in g["hosts"]]
    else:
        distribution_hosts = list(hosts)
    master = distribution_hosts[0] if distribution_hosts else (hosts[0] if hosts else current_host)
    mp_parameters = user_hps.get("mp_parameters")
    model_parallel = None if mp_parameters is None else env_value(mp_parameters) not in ("", "{}")
    channels = sorted(input_data_config)
    env: dict[str, Any] = {
        "additional_framework_parameters": extra,
        "channel_input_dirs": {name: str(base / "input" / "data" / name) for name in channels},
        "current_host": current_host,
        "current_instance_group": group,
        "current_instance_group_hosts": group_hosts,
        "current_instance_type": instance_type,
        "distribution_hosts": distribution_hosts,
        "distribution_instance_groups": distribution_groups,
        "framework_module": framework_module,
        "hosts": hosts,
        "hyperparameters": user_hps,
        "input_config_dir": str(base / "input" / "config"),
        "input_data_config": dict(input_data_config),
        "input_dir": str(base / "input"),
        "instance_groups": list(groups_dict),
        "instance_groups_dict": groups_dict,
        "is_hetero": len(groups) > 1,
        "is_master": current_host == master,
        "is_modelparallel_enabled": model_parallel,
        "is_smddpmprun_installed": False,
        "is_smddprun_installed": False,
        "job_name": job_name,
        "log_level": reserved.get(LOG_LEVEL_HP, logging.INFO),
        "master_hostname": master,
        "model_dir": str(base / "model"),
        "module_dir": str(reserved.get(SUBMIT_DIR_HP, base / "code")),
        "module_name": module_name(program_text),
        "network_interface_name": str(resource_config.get("network_interface_name", contract.NETWORK_INTERFACE)),
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "num_neurons": 0,
        "output_data_dir": str(base / "output" / "data"),
        "output_dir": str(base / "output"),
        "output_intermediate_dir": str(base / "output" / "intermediate"),
        "resource_config": dict(resource_config),
        "topology": resource_config.get("topology"),
        "user_entry_point": program_text,
    }
    return env


def env_vars(env: Mapping[str, Any]) -> dict[str, str]:
    """Every ``SM_*`` variable the toolkit exports for a training environment (reference §1.5).

    ``SM_HP_<KEY>`` keeps the key's characters (``SM_HP_BATCH-SIZE``); ``SM_CHANNEL_<NAME>`` upper-cases the
    channel name verbatim; ``SM_TOPOLOGY`` is present only when the resource config has a topology.
    """
    channel_dirs: Mapping[str, str] = env["channel_input_dirs"]
    hps: Mapping[str, Any] = env["hyperparameters"]
    values: dict[str, Any] = {
        "hosts": env["hosts"],
        "network_interface_name": env["network_interface_name"],
        "hps": hps,
        "user_entry_point": env["user_entry_point"],
        "framework_params": env["additional_framework_parameters"],
        "resource_config": env["resource_config"],
        "input_data_config": env["input_data_config"],
        "output_data_dir": env["output_data_dir"],
        "channels": sorted(channel_dirs),
        "current_host": env["current_host"],
        "current_instance_type": env["current_instance_type"],
        "current_instance_group": env["current_instance_group"],
        "current_instance_group_hosts": env["current_instance_group_hosts"],
        "instance_groups": env["instance_groups"],
        "instance_groups_dict": env["instance_groups_dict"],
        "distribution_instance_groups": env["distribution_instance_groups"],
        "is_hetero": env["is_hetero"],
        "module_name": env["module_name"],
        "log_level": env["log_level"],
        "framework_module": env["framework_module"],
        "input_dir": env["input_dir"],
        "input_config_dir": env["input_config_dir"],
        "output_dir": env["output_dir"],
        "num_cpus": env["num_cpus"],
        "num_gpus": env["num_gpus"],
        "num_neurons": env["num_neurons"],
        "model_dir": env["model_dir"],
        "module_dir": env["module_dir"],
        "training_env": dict(env),
        "user_args": to_cmd_args(hps),
        "output_intermediate_dir": env["output_intermediate_dir"],
    }
    if env.get("topology") is not None:
        values["topology"] = env["topology"]
    for name, path in channel_dirs.items():
        values[f"channel_{name}"] = path
    for key, value in hps.items():
        values[f"hp_{key}"] = value
    return {f"SM_{key.upper()}": env_value(value) for key, value in values.items()}


class EntryPointType(StrEnum):
    """How the toolkit runs an entry point (reference §1.4 step 6)."""

    PYTHON_PACKAGE = "PYTHON_PACKAGE"
    PYTHON_PROGRAM = "PYTHON_PROGRAM"
    COMMAND = "COMMAND"


def entry_point_type(code_dir: Path, entry_point: str) -> EntryPointType:
    """``.sh`` -> COMMAND; else ``setup.py`` in ``code_dir`` -> PYTHON_PACKAGE; else ``.py`` -> PROGRAM."""
    if entry_point.endswith(".sh"):
        return EntryPointType.COMMAND
    if (Path(code_dir) / "setup.py").is_file():
        return EntryPointType.PYTHON_PACKAGE
    if entry_point.endswith(".py"):
        return EntryPointType.PYTHON_PROGRAM
    return EntryPointType.COMMAND


def entry_point_command(kind: EntryPointType, entry_point: str, args: list[str], python: str) -> list[str]:
    """The argv that runs ``entry_point`` (relative to the code directory, which is the cwd).

    PYTHON_PACKAGE: ``python -m <module>``; PYTHON_PROGRAM: ``python <entry_point>``; COMMAND:
    ``/bin/sh -c "./<entry_point> <shell-quoted args>"``.
    """
    if kind is EntryPointType.PYTHON_PACKAGE:
        module = entry_point.removesuffix(".py").replace("/", ".")
        return [python, "-m", module, *args]
    if kind is EntryPointType.PYTHON_PROGRAM:
        return [python, entry_point, *args]
    quoted = " ".join(shlex.quote(arg) for arg in args)
    return ["/bin/sh", "-c", f"./{entry_point} {quoted}".rstrip()]


def format_command(cmd: list[str]) -> str:
    """A command as one shell-quoted line, as the toolkit logs it."""
    return shlex.join(cmd)
