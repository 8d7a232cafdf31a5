"""Constants of the SageMaker container contract (reference §1.2, §1.5).

Paths are relative to a job root; on a real container the root is ``/`` and the tree is ``/opt/ml``.
"""

from __future__ import annotations

from pathlib import Path

OPT_ML = Path("opt/ml")
INPUT_DIR = OPT_ML / "input"
INPUT_CONFIG_DIR = INPUT_DIR / "config"
INPUT_DATA_DIR = INPUT_DIR / "data"
HYPERPARAMETERS_FILE = INPUT_CONFIG_DIR / "hyperparameters.json"
INPUT_DATA_CONFIG_FILE = INPUT_CONFIG_DIR / "inputdataconfig.json"
RESOURCE_CONFIG_FILE = INPUT_CONFIG_DIR / "resourceconfig.json"
CHECKPOINT_CONFIG_FILE = INPUT_CONFIG_DIR / "checkpointconfig.json"
CODE_DIR = OPT_ML / "code"
MODEL_DIR = OPT_ML / "model"
OUTPUT_DIR = OPT_ML / "output"
OUTPUT_DATA_DIR = OUTPUT_DIR / "data"
OUTPUT_INTERMEDIATE_DIR = OUTPUT_DIR / "intermediate"
FAILURE_FILE = OUTPUT_DIR / "failure"
# A remote-function job writes results/ or exception/ here; they are published under its S3OutputPath.
REMOTE_FUNCTION_OUTPUT_DIR = OUTPUT_DIR / "remote_function"
SUCCESS_FILE = OUTPUT_DIR / "success"
CHECKPOINTS_DIR = OPT_ML / "checkpoints"

MODEL_ARCHIVE = "model.tar.gz"
OUTPUT_ARCHIVE = "output.tar.gz"
SOURCE_ARCHIVE = "sourcedir.tar.gz"

HOMOGENEOUS_GROUP = "homogeneousCluster"
NETWORK_INTERFACE = "eth0"
FAILURE_REASON_MAX = 1024
DEFAULT_BUCKET = "trainforge-default"
DEFAULT_ROLE_NAME = "TrainforgeExecutionRole"

# Hyperparameters the toolkit treats as its own (never passed to the script as arguments).
SAGEMAKER_HYPERPARAMETERS = frozenset(
    {
        "sagemaker_program",
        "sagemaker_submit_directory",
        "sagemaker_enable_cloudwatch_metrics",
        "sagemaker_region",
        "sagemaker_container_log_level",
        "sagemaker_job_name",
        "default_user_module_name",
        "_tuning_objective_metric",
        "sagemaker_s3_output",
    }
)


def host_name(index: int) -> str:
    """Name of the ``index``-th host (0-based): ``algo-1``, ``algo-2``, ..."""
    return f"algo-{index + 1}"


def job_arn(region: str, account_id: str, name: str) -> str:
    """The ARN SageMaker would give a training job of this name."""
    return f"arn:aws:sagemaker:{region}:{account_id}:training-job/{name.lower()}"


def model_artifacts_uri(output_path: str, job_name: str, archive: str = MODEL_ARCHIVE) -> str:
    """``<output_path>/<job>/output/<archive>``; a trailing ``/`` on the output path makes no difference."""
    return f"{output_path.rstrip('/')}/{job_name}/output/{archive}"
