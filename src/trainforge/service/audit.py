"""Appending to the audit log without ever losing the request it describes.

A failed audit write is logged (``trainforge.audit`` at ERROR, with the event) and swallowed: the request it
describes has been carried out, so its answer must still reach the caller.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from trainforge.store.users import UserStore

log = logging.getLogger("trainforge.audit")
_WORD = re.compile(r"[A-Za-z0-9]+")


def action_name(route_name: str) -> str:
    """An action name from a route's name: ``stop_training_job`` -> ``StopTrainingJob``; CamelCase stays."""
    if "_" not in route_name and route_name[:1].isupper():
        return route_name
    return "".join(w[:1].upper() + w[1:] for w in _WORD.findall(route_name)) or "Unknown"


@dataclass
class AuditLog:
    """The server's audit log over the user store."""

    store: UserStore

    def record(
        self,
        *,
        action: str,
        outcome: str,
        user: str | None,
        target: str | None,
        source: str | None,
        detail: str | None = None,
    ) -> bool:
        """Append one event; ``False`` (and an ERROR log line naming the event) when it could not be written."""
        try:
            self.store.append_audit(
                action=action, outcome=outcome, user=user, target=target, source=source, detail=detail
            )
        except Exception:
            log.exception(
                "could not write audit event action=%s user=%s target=%s source=%s outcome=%s",
                action,
                user,
                target,
                source,
                outcome,
            )
            return False
        return True
