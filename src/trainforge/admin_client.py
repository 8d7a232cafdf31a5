"""Client calls for users, tokens, the audit log, console tickets and owner-only reads.

A thin layer over :class:`~trainforge.client.TrainforgeClient`'s request plumbing (same transport, token, errors):
``AdminClient(client).create_user("alice")``. The admin routes answer ``PermissionDeniedError`` (403) to a user
who is not an admin.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from trainforge.client import TrainforgeClient


class AdminClient:
    """Users, tokens and audit routes of one server, through ``client``."""

    def __init__(self, client: TrainforgeClient) -> None:
        self.client = client

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.request(method, path, **kwargs)
        return result

    # -- any user -----------------------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """``GET /v1/users/me``: ``{"UserName", "Admin", "DefaultRole"}`` of the token's user."""
        return self._call("GET", "/v1/users/me")

    def console_ticket(self) -> dict[str, Any]:
        """``POST /v1/console/ticket``: ``{"Ticket", "ExpiresTime"}``, a one-time console sign-in for the caller."""
        return self._call("POST", "/v1/console/ticket")

    def describe_training_job(self, name: str, *, show_secrets: bool = False) -> dict[str, Any]:
        """DescribeTrainingJob; with ``show_secrets`` the owner gets secret-looking values unmasked.

        Raises:
            NotFoundError: No job has this name, or it is another user's.
        """
        params = {"ShowSecrets": "true"} if show_secrets else None
        return self._call("GET", f"/v1/training-jobs/{quote(name, safe='')}", params=params)

    # -- admins -------------------------------------------------------------------------------------------

    def create_user(self, name: str, *, admin: bool = False) -> dict[str, Any]:
        """``POST /v1/users``: the new user, with their first token in ``Token`` (shown only here)."""
        return self._call("POST", "/v1/users", json_body={"UserName": name, "Admin": admin})

    def list_users(self) -> list[dict[str, Any]]:
        """``GET /v1/users``: every user, by name."""
        return list(self._call("GET", "/v1/users").get("Users", []))

    def disable_user(self, name: str) -> dict[str, Any]:
        """``POST /v1/users/{name}/disable``: their tokens and console sessions stop working at once."""
        return self._call("POST", f"/v1/users/{quote(name, safe='')}/disable")

    def create_token(
        self, user: str, *, expires_in: str | None = None, description: str | None = None
    ) -> dict[str, Any]:
        """``POST /v1/tokens``: a new token of ``user`` in ``Token`` (shown only here); ``expires_in`` like ``30d``."""
        body: dict[str, Any] = {"UserName": user}
        if expires_in is not None:
            body["ExpiresIn"] = expires_in
        if description is not None:
            body["Description"] = description
        return self._call("POST", "/v1/tokens", json_body=body)

    def list_tokens(self, user: str | None = None) -> list[dict[str, Any]]:
        """``GET /v1/tokens``: tokens (of ``user`` only, when given), oldest first, without secrets."""
        params = {"UserName": user} if user else None
        return list(self._call("GET", "/v1/tokens", params=params).get("Tokens", []))

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        """``POST /v1/tokens/{id}/revoke``: refused from the next request on."""
        return self._call("POST", f"/v1/tokens/{quote(token_id, safe='')}/revoke")

    def audit(
        self,
        *,
        user: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        max_results: int = 100,
    ) -> list[dict[str, Any]]:
        """``GET /v1/audit``: events newest first, filtered by user, action, target and time (epoch seconds)."""
        values = {
            "UserName": user,
            "Action": action,
            "Target": target,
            "Since": since,
            "Until": until,
            "MaxResults": max_results,
        }
        params = {k: v for k, v in values.items() if v is not None}
        return list(self._call("GET", "/v1/audit", params=params).get("Events", []))
