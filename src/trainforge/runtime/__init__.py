"""What runs on a compute node: the supervisor and the pieces of the SageMaker container contract.

The runtime talks to the server over HTTP only (:mod:`trainforge.runtime.agent`); it never imports the
server, the job store or the scheduler. Backends use :mod:`trainforge.runtime.launch` to start it.
"""

from trainforge.runtime.launch import (
    InstanceInfo,
    SupervisorConfig,
    SupervisorResult,
    read_config,
    read_result,
    supervisor_command,
    write_config,
)

__all__ = [
    "InstanceInfo",
    "SupervisorConfig",
    "SupervisorResult",
    "read_config",
    "read_result",
    "supervisor_command",
    "write_config",
]
