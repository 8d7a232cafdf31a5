"""Taking over from a supervisor of the same launch that died: what ``python -m trainforge.runtime.supervisor
--resume <root>/supervisor.json`` does (:func:`resume`)."""

from __future__ import annotations

import logging
from pathlib import Path

from trainforge.runtime.agent import AgentClient, ServerLocator
from trainforge.runtime.container_executor import remove_leftover_container
from trainforge.runtime.failure import truncate
from trainforge.runtime.launch import SupervisorConfig, SupervisorResult, read_result, write_result
from trainforge.runtime.layout import JobPaths
from trainforge.runtime.reporter import Reporter, spool_owner
from trainforge.runtime.spool import SPOOL_DIR
from trainforge.runtime.supervisor import MSG_FAILED, TERMINAL_PRIMARY, TERMINAL_SECONDARY
from trainforge.spec.status import SecondaryStatus as S

log = logging.getLogger("trainforge.supervisor")


def resume(cfg: SupervisorConfig, root: Path) -> int:
    """Take over from a supervisor of this launch that died (its user code died with it): deliver what its spool
    still holds, in order, from the acknowledged position, then, unless it had ended (``result.json``) or the
    server already has a final status for this host, report the host ``Failed`` naming it. Leaves
    ``result.json``; returns 0."""
    paths = JobPaths.at(root)
    finished = read_result(paths.root)
    locator = ServerLocator(cfg.server_url, cfg.server_file, ca_bundle_pem=cfg.ca_bundle_pem)
    client = AgentClient(locator=locator, token=cfg.agent_token, job_name=cfg.job_name, host=cfg.host)
    reporter = Reporter(
        client, spool_dir=paths.root / SPOOL_DIR, spool_owner=spool_owner(cfg.agent_token), mirror=paths.job_log
    )
    log.info("resuming %s/%s: %s", cfg.job_name, cfg.host, "spool pending" if reporter.resumed else "spool empty")
    remove_leftover_container(cfg)
    reporter.start()
    status, reason, delivered = "Unknown", None, False
    if finished is not None:
        status, reason, delivered = finished.status, finished.failure_reason, finished.delivered
    try:
        if finished is None and not reporter.gone:
            reply = client.deliver("heartbeat", {"host": cfg.host})
            host_state = (reply.field("hosts") or {}).get(cfg.host)
            ended = reply.field("TrainingJobStatus") in TERMINAL_PRIMARY or host_state in TERMINAL_SECONDARY
            final = [s for s, _ in reporter.statuses_sent if s in TERMINAL_SECONDARY]
            if reply.ok and not ended and not final:
                reason = truncate(
                    f"InternalServerError: the supervisor of host {cfg.host} ended unexpectedly (killed, or its "
                    "machine restarted); its user code ended with it"
                )
                ticket = reporter.status(S.FAILED.value, MSG_FAILED, reason)
                ticket.wait()
                status, delivered = S.FAILED.value, ticket.delivered
            else:
                status = final[-1] if final else str(host_state or reply.field("SecondaryStatus") or "Unknown")
    finally:
        reporter.close()
        client.close()
    result = SupervisorResult(
        job_name=cfg.job_name, host=cfg.host, status=status, failure_reason=reason, delivered=delivered
    )
    write_result(paths.root, result)
    return 0
