"""The container contract as a built-in algorithm sees it: config files, channels, directories, failure.

:meth:`AlgorithmJob.from_environment` reads the ``SM_*`` variables the supervisor sets (falling back to the
``/opt/ml`` layout), :func:`run` wraps an algorithm's ``main`` so that a :class:`UserError` becomes the job's
failure file and exit code 1, and :func:`metric_line` / :func:`score_line` print the metric lines that the
algorithms' metric definitions match.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

OPT_ML = "/opt/ml"
FAILURE_FILE = "failure"
EXIT_FAILED = 1

log = logging.getLogger("trainforge_algorithms")


class UserError(Exception):
    """Bad input (hyperparameters, channels, data): the message is the job's FailureReason, so it names what
    is wrong and how to fix it."""


@dataclass(frozen=True)
class Channel:
    """One input channel: its name, its directory and its declared content type (None when not set)."""

    name: str
    path: Path
    content_type: str | None
    input_mode: str


@dataclass(frozen=True)
class AlgorithmJob:
    """Everything an algorithm reads from the contract."""

    name: str
    hyperparameters: dict[str, str]
    channels: dict[str, Channel]
    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    hosts: list[str]
    current_host: str
    num_cpus: int

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> AlgorithmJob:
        """The job as the supervisor set it up; ``SM_*`` variables win over the default ``/opt/ml`` paths."""
        env = os.environ if environ is None else environ
        input_dir = Path(env.get("SM_INPUT_DIR", f"{OPT_ML}/input"))
        config_dir = Path(env.get("SM_INPUT_CONFIG_DIR", str(input_dir / "config")))
        raw_hps = _read_json(config_dir / "hyperparameters.json")
        data_config = _read_json(config_dir / "inputdataconfig.json")
        resources = _read_json(config_dir / "resourceconfig.json")
        channels: dict[str, Channel] = {}
        for name, entry in sorted(data_config.items()):
            entry = entry if isinstance(entry, dict) else {}
            path = env.get(f"SM_CHANNEL_{name.upper()}", str(input_dir / "data" / name))
            content_type = entry.get("ContentType")
            channels[name] = Channel(
                name=name,
                path=Path(path),
                content_type=content_type if isinstance(content_type, str) else None,
                input_mode=str(entry.get("TrainingInputMode", "File")),
            )
        hosts = _json_list(env.get("SM_HOSTS")) or [str(h) for h in resources.get("hosts", [])] or ["algo-1"]
        current = env.get("SM_CURRENT_HOST") or str(resources.get("current_host", hosts[0]))
        try:
            cpus = int(env.get("SM_NUM_CPUS", "") or os.cpu_count() or 1)
        except ValueError:
            cpus = os.cpu_count() or 1
        output_dir = Path(env.get("SM_OUTPUT_DIR", f"{OPT_ML}/output"))
        return cls(
            name=env.get("TRAINING_JOB_NAME", ""),
            hyperparameters={str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw_hps.items()},
            channels=channels,
            model_dir=Path(env.get("SM_MODEL_DIR", f"{OPT_ML}/model")),
            output_dir=output_dir,
            output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR", str(output_dir / "data"))),
            hosts=hosts,
            current_host=current,
            num_cpus=max(1, cpus),
        )

    def check_channels(self, *, algorithm: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
        """Raise :class:`UserError` for a missing required channel or a channel the algorithm does not read."""
        allowed = (*required, *optional)
        for name in required:
            if name not in self.channels:
                given = ", ".join(sorted(self.channels)) or "none"
                raise UserError(
                    f"channel '{name}' is required: built-in {algorithm} trains on the '{name}' channel "
                    f"(channels given: {given}); pass it to fit(), e.g. fit({{'{name}': TrainingInput(...)}})"
                )
        for name in self.channels:
            if name not in allowed:
                raise UserError(
                    f"channel '{name}' is not read by built-in {algorithm}: its channels are "
                    f"{', '.join(allowed)}; rename or remove the channel"
                )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path.name}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _json_list(raw: str | None) -> list[str]:
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def write_failure(output_dir: Path, message: str) -> None:
    """Write ``message`` to ``<output_dir>/failure`` unless a failure was already recorded (first one wins)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(output_dir / FAILURE_FILE, "x", encoding="utf-8") as handle:
            handle.write(message)
    except FileExistsError:
        return
    except OSError as exc:
        print(f"cannot write the failure file in {output_dir}: {exc}", file=sys.stderr, flush=True)


def setup_logging() -> None:
    """INFO logs on stdout, one line each, prefixed with time and level (never ``[<digits>]``, which the
    XGBoost metric definitions reserve for per-round lines)."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="[%(asctime)s %(levelname)s %(name)s] %(message)s",
        force=True,
    )


def run(main: Callable[[AlgorithmJob], None], *, algorithm: str) -> NoReturn:
    """Run ``main`` on the job and exit: 0 on success; on a :class:`UserError` (or any other exception) write
    the failure file and exit 1."""
    setup_logging()
    output_dir = Path(os.environ.get("SM_OUTPUT_DIR", f"{OPT_ML}/output"))
    try:
        job = AlgorithmJob.from_environment()
        output_dir = job.output_dir
        main(job)
    except UserError as exc:
        message = str(exc)
        log.error("%s", message)
        write_failure(output_dir, message)
        sys.exit(EXIT_FAILED)
    except Exception as exc:
        traceback.print_exc()
        write_failure(output_dir, f"built-in {algorithm} failed: {type(exc).__name__}: {exc}")
        sys.exit(EXIT_FAILED)
    sys.exit(0)


def format_value(value: float) -> str:
    """A metric value as printed in metric lines (``repr`` of the float: ``0.25``, ``nan``, ``inf``)."""
    return repr(float(value))


def metric_line(host: str, epoch: int, channel: str, metric: str, value: float) -> str:
    """A per-epoch metric line: ``#quality_metric: host=algo-1, epoch=3, train objective_loss <loss>=0.25``."""
    return f"#quality_metric: host={host}, epoch={epoch}, {channel} {metric} <loss>={format_value(value)}"


def score_line(host: str, channel: str, metric: str, value: float) -> str:
    """A final score line: ``#test_score (algo-1) : ('mse', 0.25)`` (``channel`` is train, validation or test)."""
    return f"#{channel}_score ({host}) : ('{metric}', {format_value(value)})"


def emit(line: str) -> None:
    """Print one output line now."""
    print(line, flush=True)
