"""``sagemaker_xgboost_container.distributed``: :func:`rabit_run` and :func:`wait_hostname_resolution`.

For a single host :func:`rabit_run` behaves as SageMaker's: a host with data runs ``exec_fun(**args)`` (adding
``is_master=True`` when ``update_rabit_args``), a host without data logs a warning and exits 0. Distributed XGBoost
(a rabit ring across hosts) is not available yet: a multi-host call raises ``RuntimeError`` saying so.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from sagemaker_containers.entry_point import resolve_hosts

log = logging.getLogger("sagemaker_xgboost_container.distributed")


def wait_hostname_resolution(sm_hosts: list[str]) -> None:
    """Block until every host in ``sm_hosts`` resolves."""
    resolve_hosts(list(sm_hosts))


def rabit_run(
    exec_fun: Callable[..., Any],
    args: dict[str, Any],
    include_in_training: bool,
    hosts: list[str],
    current_host: str,
    first_port: int | None = None,
    second_port: int | None = None,
    max_connect_attempts: int | None = None,
    connect_retry_timeout: int = 3,
    update_rabit_args: bool = False,
) -> Any:
    """Run ``exec_fun(**args)`` on the hosts that have training data.

    Single host: with ``include_in_training`` the function runs (``args["is_master"] = True`` first when
    ``update_rabit_args``) and its result is returned; without it the process logs a warning and exits 0, as
    in SageMaker's image. The port and connection arguments are accepted for compatibility; they only matter
    across hosts. Raises ``RuntimeError`` for more than one host.
    """
    if len(hosts) > 1:
        raise RuntimeError(
            f"rabit_run: distributed XGBoost across {len(hosts)} hosts is not available in trainforge yet; "
            "train with instance_count=1"
        )
    if not include_in_training:
        log.warning("Host %s not being used for distributed training.", current_host)
        sys.exit(0)
    log.debug("Only 1 host with training data, starting single node training job from: %s", current_host)
    if update_rabit_args:
        args.update({"is_master": True})
    return exec_fun(**args)
